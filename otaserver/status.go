package otaserver

import (
	"context"
	"errors"
	"net/http"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// status stores a report durably, then acknowledges it.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := deviceFrom(ctx)
	var rep protov1.StatusReport
	if !decodeJSON(w, r, &rep) {
		return
	}
	if err := rep.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, err.Error())
		return
	}
	if rep.DeviceID != "" && rep.DeviceID != d.ID {
		writeError(w, http.StatusForbidden, protov1.CodeForbidden, "a device may only report for itself")
		return
	}
	ro := s.cfg.Catalog.Snapshot().Rollout(rep.Rollout)
	if ro == nil {
		writeError(w, http.StatusNotFound, protov1.CodeUnknownRollout, "no such rollout")
		return
	}
	rec, err := s.Report(ctx, d.ID, ro.UID, rep.ReportID, rollout.State(rep.State), rep.Reason)
	switch {
	case err == nil:
		s.cfg.Metrics.Reports.WithLabelValues(string(rep.State)).Inc()
		writeJSON(w, http.StatusOK, protov1.StatusResponse{State: protov1.State(rec.State)})
	case errors.Is(err, devicestore.ErrDuplicateReport):
		writeJSON(w, http.StatusOK, protov1.StatusResponse{Duplicate: true})
	case errors.Is(err, devicestore.ErrNotFound):
		writeError(w, http.StatusNotFound, protov1.CodeNotAssigned, "this device was not offered anything in the rollout")
	case errors.Is(err, rollout.ErrCanceled):
		writeError(w, http.StatusConflict, protov1.CodeCanceled, err.Error())
	case errors.Is(err, rollout.ErrFinal):
		writeError(w, http.StatusConflict, protov1.CodeFinal, err.Error())
	case errors.Is(err, rollout.ErrTransition):
		writeError(w, http.StatusConflict, protov1.CodeInvalidState, err.Error())
	default:
		s.internal(w, r, "store report", err)
	}
}

// Report applies a device's report of a state (with its reason) to the
// device's record in a rollout by the rollout rules (rollout.ApplyReport),
// at most once per report ID (devicestore.ErrDuplicateReport after).
func (s *Server) Report(ctx context.Context, deviceID, rolloutUID, reportID string, state rollout.State, reason string) (devicestore.Record, error) {
	return s.ReportWith(ctx, deviceID, rolloutUID, reportID, func(cur rollout.Record) (rollout.Record, bool, error) {
		return rollout.ApplyReport(cur, state, reason)
	})
}

// ReportWith is Report with the rule given: it returns the record's next
// state and reason, whether that is a failure for the rollout's failure
// log, or an error that refuses the report (nothing is stored then).
func (s *Server) ReportWith(ctx context.Context, deviceID, rolloutUID, reportID string, rule func(cur rollout.Record) (next rollout.Record, failure bool, err error)) (devicestore.Record, error) {
	now := s.cfg.Now()
	return s.store.ApplyReport(ctx, devicestore.Report{DeviceID: deviceID, ReportID: reportID, RolloutUID: rolloutUID, At: now},
		func(cur devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
			next, failure, err := rule(*pureRecord(&cur))
			if err != nil {
				return cur, nil, err
			}
			var f *devicestore.Failure
			if failure {
				f = &devicestore.Failure{DeviceID: deviceID, Wave: cur.Wave, Reason: next.Reason, At: now}
			}
			cur.State, cur.Reason, cur.UpdatedAt = next.State, next.Reason, now
			return cur, f, nil
		})
}

// ReportSettled reports whether a Report or ReportWith error leaves the
// record right as it is, so a front answers the report as applied: a
// duplicate, or a report the rules refuse (after a final state, after a
// cancel, going backwards), or a record gone with its rollout. Device
// clients retry a report until it is accepted (SWUpdate's post-reboot
// feedback blocks its start; mender-client retries a status), so such an
// error must not be answered as a failure.
func ReportSettled(err error) bool {
	return errors.Is(err, devicestore.ErrDuplicateReport) || errors.Is(err, rollout.ErrFinal) ||
		errors.Is(err, rollout.ErrCanceled) || errors.Is(err, rollout.ErrTransition) || errors.Is(err, devicestore.ErrNotFound)
}
