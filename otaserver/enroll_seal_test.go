package otaserver

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// TestSealedEnrollResponse: the answer carries the token only sealed to
// the stored key, for the stored device ID and the given key ID; a record
// whose key cannot be sealed to is an error, not a clear token.
func TestSealedEnrollResponse(t *testing.T) {
	keyID := strings.Repeat("5f", 32)
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, kem := range []keywrap.KEM{keywrap.X25519, keywrap.P256} {
		priv, err := keywrap.GenerateKey(kem)
		if err != nil {
			t.Fatal(err)
		}
		d := devicestore.Device{ID: "dev-1", KEM: string(kem), PublicKey: priv.PublicKey().Bytes()}
		r, err := sealedEnrollResponse(d, tok, keyID)
		if err != nil {
			t.Fatal(err)
		}
		if r.LegacyToken != "" || r.DeviceID != "dev-1" || r.AssignmentKeyID != keyID || strings.Contains(r.SealedToken, tok) {
			t.Fatalf("%s: answer %+v", kem, r)
		}
		if got, err := tokenseal.OpenResponse(kem, priv, "dev-1", r); err != nil || got != tok {
			t.Fatalf("%s: OpenResponse = %q, %v", kem, got, err)
		}
		if _, err := tokenseal.OpenResponse(kem, priv, "dev-2", r); !errors.Is(err, tokenseal.ErrOpen) {
			t.Fatalf("%s: opened for another device: %v", kem, err)
		}
	}
	small, _ := hex.DecodeString(strings.Repeat("00", 32))
	for name, d := range map[string]devicestore.Device{
		"unknown KEM":     {ID: "dev-1", KEM: "p384", PublicKey: make([]byte, 97)},
		"small-order key": {ID: "dev-1", KEM: "x25519", PublicKey: small},
		"truncated P-256": {ID: "dev-1", KEM: "p256", PublicKey: make([]byte, 64)},
		"no public key":   {ID: "dev-1", KEM: "x25519", PublicKey: nil},
	} {
		if r, err := sealedEnrollResponse(d, tok, keyID); err == nil || r.SealedToken != "" || r.LegacyToken != "" {
			t.Errorf("%s: %+v, %v; want an error", name, r, err)
		}
	}
	good, _ := keywrap.GenerateKey(keywrap.X25519)
	d := devicestore.Device{ID: "dev-1", KEM: "x25519", PublicKey: good.PublicKey().Bytes()}
	if r, err := sealedEnrollResponse(d, tok, "5F1C"); !errors.Is(err, tokenseal.ErrBadKeyID) || r.SealedToken != "" {
		t.Errorf("bad server key ID: %+v, %v", r, err)
	}
}
