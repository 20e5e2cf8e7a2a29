package otaserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// StatusReport is the body of POST /v1/status.
type StatusReport struct {
	// ReportID makes retries idempotent: 1–64 of [A-Za-z0-9._:-], unique
	// per device.
	ReportID string `json:"reportID"`
	// Rollout is the assignment's rollout, "namespace/name".
	Rollout string `json:"rollout"`
	// DeviceID is optional; when given it must be the caller's.
	DeviceID string `json:"deviceID,omitempty"`
	// State is downloading, downloaded, installing, installed, succeeded,
	// failed or rolledback.
	State rollout.State `json:"state"`
	// Progress is an optional percentage (0–100), informational.
	Progress *int `json:"progress,omitempty"`
	// Reason explains a failure (required for failed).
	Reason string `json:"reason,omitempty"`
}

// StatusResponse acknowledges a stored report.
type StatusResponse struct {
	// State is the device's state in the rollout after the report.
	State rollout.State `json:"state,omitempty"`
	// Duplicate is true when the report ID was already processed; nothing
	// changed.
	Duplicate bool `json:"duplicate"`
}

// Validate checks the report's fields.
func (s *StatusReport) Validate() error {
	if err := validID(s.ReportID, maxReportID); err != nil {
		return fmt.Errorf("reportID: %w", err)
	}
	if s.Rollout == "" || len(s.Rollout) > 317 {
		return errors.New("rollout: must be namespace/name")
	}
	if !slices.Contains(rollout.Reportable, s.State) {
		return fmt.Errorf("state: %q is not one of %v", s.State, rollout.Reportable)
	}
	if s.Progress != nil && (*s.Progress < 0 || *s.Progress > 100) {
		return errors.New("progress: must be 0 to 100")
	}
	if len(s.Reason) > maxReasonLen || !printable(s.Reason) {
		return fmt.Errorf("reason: at most %d printable characters", maxReasonLen)
	}
	if s.State == rollout.StateFailed && s.Reason == "" {
		return errors.New("reason: required when state is failed")
	}
	return nil
}

// status stores a report durably, then acknowledges it.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := deviceFrom(ctx)
	var rep StatusReport
	if !decodeJSON(w, r, &rep) {
		return
	}
	if err := rep.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if rep.DeviceID != "" && rep.DeviceID != d.ID {
		writeError(w, http.StatusForbidden, codeForbidden, "a device may only report for itself")
		return
	}
	ro := s.cfg.Catalog.Snapshot().Rollout(rep.Rollout)
	if ro == nil {
		writeError(w, http.StatusNotFound, codeUnknownRollout, "no such rollout")
		return
	}
	now := s.cfg.Now()
	rec, err := s.store.ApplyReport(ctx, devicestore.Report{DeviceID: d.ID, ReportID: rep.ReportID, RolloutUID: ro.UID, At: now},
		func(cur devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
			next, failure, err := rollout.ApplyReport(*pureRecord(&cur), rep.State, rep.Reason)
			if err != nil {
				return cur, nil, err
			}
			var f *devicestore.Failure
			if failure {
				f = &devicestore.Failure{DeviceID: d.ID, Wave: cur.Wave, Reason: next.Reason, At: now}
			}
			cur.State, cur.Reason, cur.UpdatedAt = next.State, next.Reason, now
			return cur, f, nil
		})
	switch {
	case err == nil:
		s.cfg.Metrics.Reports.WithLabelValues(string(rep.State)).Inc()
		writeJSON(w, http.StatusOK, StatusResponse{State: rec.State})
	case errors.Is(err, devicestore.ErrDuplicateReport):
		writeJSON(w, http.StatusOK, StatusResponse{Duplicate: true})
	case errors.Is(err, devicestore.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotAssigned, "this device was not offered anything in the rollout")
	case errors.Is(err, rollout.ErrCanceled):
		writeError(w, http.StatusConflict, codeCanceled, err.Error())
	case errors.Is(err, rollout.ErrFinal):
		writeError(w, http.StatusConflict, codeFinal, err.Error())
	case errors.Is(err, rollout.ErrTransition):
		writeError(w, http.StatusConflict, codeInvalidState, err.Error())
	default:
		s.internal(w, r, "store report", err)
	}
}
