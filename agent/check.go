package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// runningVersion asks the installer, falling back to (and updating) the
// persisted version.
func (a *Agent) runningVersion(ctx context.Context) (string, error) {
	v, err := a.cfg.Installer.Running(ctx)
	if err != nil {
		return "", err
	}
	if v == "" {
		v = a.state.Version
	}
	if v != a.state.Version {
		a.state.Version = v
		if err := a.save(); err != nil {
			return "", err
		}
	}
	if v == "" {
		v = "unknown"
	}
	return v, nil
}

// check polls GET /v1/update with a fresh nonce. A nil answer means 204;
// retryAfter is its Retry-After.
func (a *Agent) check(ctx context.Context) (*checked, time.Duration, error) {
	version, err := a.runningVersion(ctx)
	if err != nil {
		return nil, 0, err
	}
	var n [16]byte
	_, _ = rand.Read(n[:])
	nonce := hex.EncodeToString(n[:])
	// The boot lets the server tell a delayed check-in from before an
	// install (same boot as the offer) from a revert (a later boot).
	q := url.Values{protov1.ParamVersion: {version}, protov1.ParamSecurityFloor: {strconv.FormatInt(a.state.SecurityFloor, 10)}, protov1.ParamNonce: {nonce},
		protov1.ParamBoot: {bootTag(a.cfg.BootID())}}
	r, err := a.authed(ctx, http.MethodGet, protov1.PathUpdate+"?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	if r.Status == http.StatusNoContent {
		return nil, parseRetryAfter(r.Header.Get("Retry-After")), nil
	}
	u, err := ParseUpdateResponse(r.Body)
	return &checked{UpdateResponse: u, nonce: nonce, version: version, err: err}, 0, nil
}

// checked is a 200 answer with the nonce and running version its check
// sent. err is set when the body did not parse.
type checked struct {
	protov1.UpdateResponse
	nonce   string
	version string
	err     error
}
