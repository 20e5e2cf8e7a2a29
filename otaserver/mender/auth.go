package mender

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/menderkey"
	"github.com/otaflow/otaflow/otaserver"
)

// Grant is what an auth request is admitted as: a registration into a
// tenant through one DeviceEnrollment.
type Grant struct {
	Namespace, Enrollment string
	MaxDevices            int64
	DeviceType            string
	Labels                map[string]string
	// RegisterRefused, when not "", says why the device may not be
	// registered now (expired, not on the allowlist).
	RegisterRefused string
}

// Authenticator decides which DeviceEnrollment admits a new device: by
// its tenant token, or, without one, by its preauthorized key.
type Authenticator interface {
	AcceptMender(tenantToken string, key menderkey.Key, now time.Time) (Grant, error)
	// EnrollmentLabels are the labels a DeviceEnrollment gives its Mender
	// devices now (nil when it has none, or is gone).
	EnrollmentLabels(namespace, name string) map[string]string
}

// Refusals of AcceptMender; each is answered 401, as Mender answers
// rejected and pending devices.
var (
	// ErrUnknownTenant: no DeviceEnrollment with spec.mender has the
	// tenant token.
	ErrUnknownTenant = errors.New("unknown tenant token")
	// ErrNotAccepted: the tenant is known, but it neither auto-accepts
	// nor preauthorizes the key (a pending device, in Mender's terms).
	ErrNotAccepted = errors.New("key not accepted")
)

// Credentials admits devices through the DeviceEnrollments' spec.mender.
func Credentials(c *otaserver.CredentialSet) Authenticator { return credentialAuth{c} }

type credentialAuth struct{ c *otaserver.CredentialSet }

func (a credentialAuth) EnrollmentLabels(namespace, name string) map[string]string {
	cr, err := a.c.Credential(namespace, name)
	if err != nil || cr.Mender == nil {
		return nil
	}
	return cr.Mender.Labels
}

func (a credentialAuth) AcceptMender(tenantToken string, key menderkey.Key, now time.Time) (Grant, error) {
	cr, ok := a.c.MenderCredential(tenantToken, key.DER)
	switch {
	case !ok && tenantToken == "":
		return Grant{}, fmt.Errorf("%w: no tenant token, and no single DeviceEnrollment preauthorizes the key", ErrNotAccepted)
	case !ok:
		return Grant{}, ErrUnknownTenant
	case cr.Mender == nil:
		return Grant{}, fmt.Errorf("%w: DeviceEnrollment %s has no spec.mender", ErrUnknownTenant, cr.Key())
	case !cr.Mender.AutoAccept && !cr.Mender.Preauthorized(key.DER):
		return Grant{}, fmt.Errorf("%w: DeviceEnrollment %s does not auto-accept and does not preauthorize the key", ErrNotAccepted, cr.Key())
	}
	return Grant{
		Namespace: cr.Namespace, Enrollment: cr.Name, MaxDevices: cr.MaxDevices,
		DeviceType: cr.Mender.DeviceType, Labels: cr.Mender.Labels,
		RegisterRefused: cr.Refuses(key.DeviceID(), now),
	}, nil
}

// serveAuth answers an auth request: the signature (X-MEN-Signature, over
// the exact body) proves the key; a device registered with the key gets a
// token whatever its tenant token says (as natively enrolled devices keep
// working after their enrollment expires or is suspended); a new one is
// registered if a DeviceEnrollment admits it. The token is the raw body.
func (h *Handler) serveAuth(w http.ResponseWriter, r *http.Request) {
	if wait, blocked := h.core.AuthFailureBlocked(r); blocked {
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeErr(w, http.StatusTooManyRequests, "too many failed authentications from this address")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := ParseAuthRequest(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	key, err := menderkey.Parse([]byte(req.Pubkey))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "pubkey: "+err.Error())
		return
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get("X-MEN-Signature")))
	if err != nil || len(sig) == 0 {
		h.core.AuthFailed(r)
		h.unauthorized(w, "missing or malformed X-MEN-Signature")
		return
	}
	if err := key.Verify(body, sig); err != nil {
		h.core.AuthFailed(r)
		h.unauthorized(w, "X-MEN-Signature does not verify with the request's pubkey")
		return
	}
	id := key.DeviceID()
	if wait, ok := h.core.AllowDevice("auth:" + id); !ok {
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeErr(w, http.StatusTooManyRequests, "too many authentication requests for this device")
		return
	}
	now := h.core.Now()
	ctx := r.Context()
	d, err := h.store.Device(ctx, id)
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		d, ok = h.register(w, r, req.TenantToken, key, now)
		if !ok {
			return
		}
	case err != nil:
		h.fail(w, r, "read device", err)
		return
	case !strings.HasPrefix(d.KEM, KEMPrefix) || !bytes.Equal(d.PublicKey, key.DER):
		// A hash clash of 160 bits, or a native device ID that looks like
		// ours: refused either way.
		h.unauthorized(w, "this device ID belongs to another device")
		return
	}
	tok, err := h.cfg.Keys.IssueDevice(d.ID, d.Namespace, now, h.cfg.TokenTTL)
	if errors.Is(err, ErrNoTokenKey) {
		h.log.Error(err, "cannot issue device tokens: create the token key Secret (docs/mender.md)")
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusServiceUnavailable, "the server cannot issue tokens yet")
		return
	}
	if err != nil {
		h.fail(w, r, "issue token", err)
		return
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(tok))
}

// register admits a new device through the DeviceEnrollment its tenant
// token or key names, within its limits; ok false means it answered.
func (h *Handler) register(w http.ResponseWriter, r *http.Request, tenantToken string, key menderkey.Key, now time.Time) (devicestore.Device, bool) {
	g, err := h.cfg.Auth.AcceptMender(tenantToken, key, now)
	switch {
	case errors.Is(err, ErrUnknownTenant):
		h.core.AuthFailed(r)
		h.log.V(1).Info("auth request refused", "device", key.DeviceID(), "err", err.Error())
		h.unauthorized(w, "unknown tenant token")
		return devicestore.Device{}, false
	case err != nil:
		// Pending: the client asks again at its retry interval.
		h.log.Info("auth request pending", "device", key.DeviceID(), "reason", err.Error())
		h.unauthorized(w, "the device is not accepted (pending)")
		return devicestore.Device{}, false
	case g.RegisterRefused != "":
		h.log.Info("auth request refused", "device", key.DeviceID(), "enrollment", g.Namespace+"/"+g.Enrollment, "reason", g.RegisterRefused)
		h.unauthorized(w, "the device is not accepted: "+g.RegisterRefused)
		return devicestore.Device{}, false
	}
	d, created, err := h.enroll(r.Context(), g, key, now)
	switch {
	case errors.Is(err, devicestore.ErrQuotaExceeded):
		h.core.Metrics().Enrollments.WithLabelValues("quota").Inc()
		h.unauthorized(w, "the tenant's enrollment has registered its maximum number of devices")
		return d, false
	case errors.Is(err, devicestore.ErrTenantMismatch), errors.Is(err, devicestore.ErrKeyMismatch):
		h.unauthorized(w, "this device ID belongs to another device")
		return d, false
	case err != nil:
		h.fail(w, r, "register device", err)
		return d, false
	}
	if created {
		h.core.Metrics().Enrollments.WithLabelValues("new").Inc()
		h.log.V(1).Info("device registered", "device", d.ID, "tenant", d.Namespace, "key", key.Kind)
	}
	return d, true
}

// enroll stores the device. Its token hash is random: Mender devices
// authenticate with JWTs, never with a native bearer token, and the
// column is unique.
func (h *Handler) enroll(ctx context.Context, g Grant, key menderkey.Key, now time.Time) (devicestore.Device, bool, error) {
	th := make([]byte, 32)
	if _, err := rand.Read(th); err != nil {
		return devicestore.Device{}, false, err
	}
	return h.store.EnrollWithin(ctx, devicestore.Device{
		ID: key.DeviceID(), Type: g.DeviceType, Labels: g.Labels, KEM: KEMPrefix + key.Kind, PublicKey: key.DER, TokenHash: th,
		EnrolledAt: now, LastSeen: now, Namespace: g.Namespace, Enrollment: g.Enrollment,
	}, g.MaxDevices)
}
