package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
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
		return fmt.Errorf("enroll: malformed answer: %w", err)
	}
	if er.DeviceID != a.cfg.DeviceID {
		return fmt.Errorf("enroll: the answer is for device %q, not %q", er.DeviceID, a.cfg.DeviceID)
	}
	if !bearerToken(er.Token) {
		return fmt.Errorf("enroll: the answer's token is not a bearer token (1 to %d characters of RFC 6750's token68)", protov1.MaxTokenLen)
	}
	if er.AssignmentKeyID != "" && er.AssignmentKeyID != a.verifier.KeyID() {
		// Not fatal (the key ID is not authenticated), but every
		// assignment will be refused: say so once, loudly.
		a.cfg.Log.Error(nil, "the server signs assignments with a key this device does not trust", "serverKeyID", er.AssignmentKeyID, "trustedKeyID", a.verifier.KeyID())
	}
	a.state.Token, a.state.Enrolled = er.Token, a.enrollFingerprint()
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

// bearerToken reports whether t can be sent as "Authorization: Bearer t"
// (RFC 6750 b64token) within the protocol's length limit.
func bearerToken(t string) bool {
	if t == "" || len(t) > protov1.MaxTokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return false
		}
	}
	return true
}
