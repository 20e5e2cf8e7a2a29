package otaserver

import (
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
	now := s.cfg.Now()
	rec, err := s.store.ApplyReport(ctx, devicestore.Report{DeviceID: d.ID, ReportID: rep.ReportID, RolloutUID: ro.UID, At: now},
		func(cur devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
			next, failure, err := rollout.ApplyReport(*pureRecord(&cur), rollout.State(rep.State), rep.Reason)
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
