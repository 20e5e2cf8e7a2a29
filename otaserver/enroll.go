package otaserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

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
	var req protov1.EnrollRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	pub, err := req.Validate()
	if err != nil {
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, err.Error())
		return
	}
	if wait, ok := s.limits.allow("enroll:" + req.DeviceID); !ok {
		writeRetry(w, wait, protov1.CodeRateLimited, "too many enrollments for this device")
		return
	}
	if !s.cfg.Tokens.Valid(req.BootstrapToken) {
		s.cfg.Metrics.Enrollments.WithLabelValues("refused").Inc()
		writeError(w, http.StatusUnauthorized, protov1.CodeBadBootstrap, "bootstrap token not valid")
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
		writeError(w, http.StatusConflict, protov1.CodeKeyMismatch, "this device ID is enrolled with another public key")
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
	writeJSON(w, status, protov1.EnrollResponse{DeviceID: d.ID, Token: tok, AssignmentKeyID: s.cfg.Signer.KeyID()})
}
