package otaserver

import (
	"encoding/base64"
	"fmt"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// sealedEnrollResponse answers an enrollment with the bearer token sealed
// to the device's enrolled key (d as the store returned it), bound to the
// server's assignment key ID and the device ID. Public keys are not
// secret: whoever replays one with a bootstrap token rotates the token but
// cannot read it, so the answer proves nothing to anyone but the key's
// holder. The clear token is never sent.
func sealedEnrollResponse(d devicestore.Device, token, keyID string) (protov1.EnrollResponse, error) {
	kem, err := keywrap.ParseKEM(d.KEM)
	if err != nil {
		return protov1.EnrollResponse{}, fmt.Errorf("seal token for device %q: %w", d.ID, err)
	}
	sealed, err := tokenseal.Seal(kem, d.PublicKey, token, keyID, d.ID)
	if err != nil {
		return protov1.EnrollResponse{}, fmt.Errorf("seal token for device %q: %w", d.ID, err)
	}
	return protov1.EnrollResponse{DeviceID: d.ID, SealedToken: base64.StdEncoding.EncodeToString(sealed), AssignmentKeyID: keyID}, nil
}
