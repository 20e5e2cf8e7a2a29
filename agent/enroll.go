package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// enrollment fingerprint: what the server knows about the device that
// only enrollment changes.
func (a *Agent) enrollFingerprint() string {
	keys := make([]string, 0, len(a.cfg.Labels))
	for k := range a.cfg.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(a.cfg.DeviceType)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, a.cfg.Labels[k])
	}
	return b.String()
}

func (a *Agent) ensureEnrolled(ctx context.Context) error {
	if a.state.Token != "" && a.state.Enrolled == a.enrollFingerprint() {
		return nil
	}
	return a.enroll(ctx)
}

// enroll registers the device key (or rotates the token of a known
// device) and saves the token.
func (a *Agent) enroll(ctx context.Context) error {
	version, err := a.runningVersion(ctx)
	if err != nil {
		return err
	}
	req := protov1.EnrollRequest{
		DeviceID: a.cfg.DeviceID, BootstrapToken: a.cfg.BootstrapToken, KEM: a.state.KEM,
		PublicKey:  base64.StdEncoding.EncodeToString(a.key.PublicKey().Bytes()),
		DeviceType: a.cfg.DeviceType, Labels: a.cfg.Labels, Version: version, SecurityFloor: a.state.SecurityFloor,
	}
	r, err := a.call(ctx, http.MethodPost, protov1.PathEnroll, req, false)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	var er protov1.EnrollResponse
	if err := json.Unmarshal(r.Body, &er); err != nil {
		return fmt.Errorf("enroll: %w: malformed answer: %w", ErrEnrollAnswer, err)
	}
	if er.DeviceID != a.cfg.DeviceID {
		return fmt.Errorf("enroll: %w: the answer is for device %q, not %q", ErrEnrollAnswer, er.DeviceID, a.cfg.DeviceID)
	}
	tok, err := a.enrollToken(er)
	if err != nil {
		a.cfg.Log.Error(err, "enrollment answer unusable; not retried before the next poll")
		return err
	}
	// The key ID is not authenticated: one the device does not trust only
	// makes it look at the server's signed key set (keys.go).
	a.keysHint(er.AssignmentKeyID)
	a.state.Token, a.state.Enrolled = tok, a.enrollFingerprint()
	if err := a.save(); err != nil {
		return err
	}
	a.cfg.Log.Info("enrolled", "device", a.cfg.DeviceID, "status", r.Status)
	return nil
}

// authed runs an authenticated call, enrolling again once when the server
// answers 401 unauthenticated (token rotated or device removed).
func (a *Agent) authed(ctx context.Context, method, path string, body any) (response, error) {
	r, err := a.call(ctx, method, path, body, true)
	if !isCode(err, http.StatusUnauthorized, "") {
		return r, err
	}
	a.cfg.Log.Info("token refused; enrolling again")
	a.state.Token = ""
	if err := a.enroll(ctx); err != nil {
		return response{}, err
	}
	return a.call(ctx, method, path, body, true)
}

// ErrEnrollAnswer reports a 2xx enrollment answer the device cannot use:
// malformed, for another device, or without a token it can open with its
// own key. Such an error is not retried before the next poll: enrolling
// again rotates the token, and a server that answered so once answers so
// again.
var ErrEnrollAnswer = errors.New("unusable enrollment answer")

// enrollToken returns the bearer token of an enrollment answer: its sealed
// token opened with the device key, bound to this device and the answer's
// assignment key ID. Only an answer without sealedToken, as servers before
// protocol revision 4 send, may carry the token in clear: such a server
// gives every enrollment its token, and accepting it costs the device
// nothing a server it trusts could not do anyway.
func (a *Agent) enrollToken(er protov1.EnrollResponse) (string, error) {
	if er.SealedToken == "" && er.LegacyToken != "" {
		if !tokenseal.ValidToken(er.LegacyToken) {
			return "", fmt.Errorf("enroll: %w: the answer's token is not a bearer token (1 to %d characters of RFC 6750's token68)", ErrEnrollAnswer, protov1.MaxTokenLen)
		}
		a.cfg.Log.Info("the server sent the token in clear (protocol revision 3 or older)")
		return er.LegacyToken, nil
	}
	tok, err := tokenseal.OpenResponse(keywrap.KEM(a.state.KEM), a.key, a.cfg.DeviceID, er)
	if err != nil {
		return "", fmt.Errorf("enroll: %w: no token this device can open (sealed to another key, device or server key ID %q, or tampered): %w", ErrEnrollAnswer, er.AssignmentKeyID, err)
	}
	return tok, nil
}
