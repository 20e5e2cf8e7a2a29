package otaserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/keywrap"
)

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	DeviceID       string            `json:"deviceID"`
	BootstrapToken string            `json:"bootstrapToken"`
	KEM            string            `json:"kem"`
	PublicKey      string            `json:"publicKey"` // standard base64
	DeviceType     string            `json:"deviceType"`
	Labels         map[string]string `json:"labels,omitempty"`
	Version        string            `json:"version"`
	SecurityFloor  int64             `json:"securityFloor"`
}

// EnrollResponse answers an enrollment.
type EnrollResponse struct {
	DeviceID string `json:"deviceID"`
	// Token is the device's bearer token; only its hash is stored, so it
	// cannot be shown again.
	Token string `json:"token"`
	// AssignmentKeyID identifies the key assignments are signed with.
	AssignmentKeyID string `json:"assignmentKeyID"`
}

// Validate checks the request; the public key is returned decoded.
func (e *EnrollRequest) Validate() ([]byte, error) {
	if err := validID(e.DeviceID, maxIDLen); err != nil {
		return nil, fmt.Errorf("deviceID: %w", err)
	}
	if e.BootstrapToken == "" || len(e.BootstrapToken) > 512 {
		return nil, errors.New("bootstrapToken: must be 1 to 512 characters")
	}
	kem, err := keywrap.ParseKEM(e.KEM)
	if err != nil {
		return nil, fmt.Errorf("kem: want %q or %q", keywrap.X25519, keywrap.P256)
	}
	pub, err := base64.StdEncoding.Strict().DecodeString(e.PublicKey)
	if err != nil {
		return nil, errors.New("publicKey: not standard base64")
	}
	if _, err := keywrap.ParsePublicKey(kem, pub); err != nil {
		return nil, fmt.Errorf("publicKey: %w", err)
	}
	if err := validDeviceType(e.DeviceType); err != nil {
		return nil, fmt.Errorf("deviceType: %w", err)
	}
	if err := validLabels(e.Labels); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	if err := validVersion(e.Version); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	if e.SecurityFloor < 0 || e.SecurityFloor > 1<<32-1 {
		return nil, errors.New("securityFloor: must be 0 to 4294967295")
	}
	return pub, nil
}

func newToken() (string, error) {
	var b [tokenSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	pub, err := req.Validate()
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if wait, ok := s.limits.allow("enroll:" + req.DeviceID); !ok {
		writeRetry(w, wait, codeRateLimited, "too many enrollments for this device")
		return
	}
	if !s.cfg.Tokens.Valid(req.BootstrapToken) {
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusUnauthorized, codeBadBootstrap, "bootstrap token not valid")
		return
	}
	tok, err := newToken()
	if err != nil {
		s.internal(w, r, "enroll", err)
		return
	}
	now := s.cfg.Now()
	d, created, err := s.store.Enroll(r.Context(), devicestore.Device{
		ID: req.DeviceID, Type: req.DeviceType, Labels: req.Labels, KEM: req.KEM,
		PublicKey: pub, TokenHash: hashToken(tok), Version: req.Version,
		SecurityFloor: req.SecurityFloor, EnrolledAt: now, LastSeen: now,
	})
	if errors.Is(err, devicestore.ErrKeyMismatch) {
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusConflict, codeKeyMismatch, "this device ID is enrolled with another public key")
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
	writeJSON(w, status, EnrollResponse{DeviceID: d.ID, Token: tok, AssignmentKeyID: s.cfg.Signer.KeyID()})
}
