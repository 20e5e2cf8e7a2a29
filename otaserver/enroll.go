package otaserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
)

func newToken() (string, error) {
	var b [tokenSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	// An address that keeps presenting unknown tokens is turned away before
	// its body is read.
	addr := sourceKey(r)
	if wait, blocked := s.enrollFails.blocked(addr); blocked {
		s.cfg.Metrics.Enrollments.WithLabelValues("throttled").Inc()
		writeRetry(w, wait, protov1.CodeRateLimited, "too many failed enrollments from this address")
		return
	}
	var req protov1.EnrollRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	// The token first: nothing else (key validation included) is done for
	// a request without a valid one.
	cred, ok := s.credential(req.BootstrapToken)
	if !ok {
		s.enrollFails.allow(addr)
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusUnauthorized, protov1.CodeBadBootstrap, "bootstrap token not valid")
		return
	}
	pub, err := req.Validate()
	if err != nil {
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, err.Error())
		return
	}
	if why := cred.refuses(req.DeviceID, s.cfg.Now()); why != "" {
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusForbidden, protov1.CodeForbidden, why)
		return
	}
	if wait, ok := s.limits.allow("enroll:" + req.DeviceID); !ok {
		writeRetry(w, wait, protov1.CodeRateLimited, "too many enrollments for this device")
		return
	}
	tok, err := newToken()
	if err != nil {
		s.internal(w, r, "enroll", err)
		return
	}
	now := s.cfg.Now()
	d, created, err := s.store.EnrollWithin(r.Context(), devicestore.Device{
		ID: req.DeviceID, Type: req.DeviceType, Labels: req.Labels, KEM: req.KEM,
		PublicKey: pub, TokenHash: hashToken(tok), Version: req.Version,
		SecurityFloor: req.SecurityFloor, EnrolledAt: now, LastSeen: now,
		Namespace: cred.Namespace, Enrollment: cred.Name,
	}, cred.MaxDevices)
	switch {
	case errors.Is(err, devicestore.ErrKeyMismatch):
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusConflict, protov1.CodeKeyMismatch, "this device ID is enrolled with another public key")
		return
	case errors.Is(err, devicestore.ErrTenantMismatch):
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusConflict, protov1.CodeTenantMismatch, "this device ID is enrolled through another namespace's credential")
		return
	case errors.Is(err, devicestore.ErrQuotaExceeded):
		s.cfg.Metrics.Enrollments.WithLabelValues("quota").Inc()
		writeError(w, http.StatusForbidden, protov1.CodeEnrollmentQuota, "this bootstrap credential has enrolled its maximum number of devices")
		return
	}
	if err != nil {
		s.internal(w, r, "enroll", err)
		return
	}
	status, result := http.StatusCreated, "new"
	if !created {
		status, result = http.StatusOK, "rotated"
	}
	s.cfg.Metrics.Enrollments.WithLabelValues(result).Inc()
	s.cfg.Log.V(1).Info("device enrolled", "device", d.ID, "type", d.Type, "result", result)
	resp, err := sealedEnrollResponse(d, tok, s.cfg.Signer.KeyID())
	if err != nil {
		s.internal(w, r, "enroll", err)
		return
	}
	writeJSON(w, status, resp)
}

// credential finds what the bootstrap token admits: a DeviceEnrollment's
// token, or one of the cluster-wide enrollment Secret (cluster-wide
// devices). Both are looked up by SHA-256, never compared byte by byte.
func (s *Server) credential(tok string) (*Credential, bool) {
	if tok == "" || len(tok) > otav1.MaxEnrollmentTokenLength {
		return nil, false
	}
	h := sha256.Sum256([]byte(tok))
	if s.cfg.Credentials != nil {
		if c, ok := s.cfg.Credentials.lookup(h); ok {
			return c, true
		}
	}
	if s.cfg.Tokens != nil && s.cfg.Tokens.Valid(tok) {
		return &Credential{}, true
	}
	return nil, false
}

// sourceKey is the client address failed enrollments are counted by: the
// IP (an IPv6 client by its /64, which one host usually owns whole).
func sourceKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "addr:" + host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + ip.String()
}
