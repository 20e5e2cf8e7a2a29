package otaserver

import (
	"context"
	"errors"
	"net/http"

	"github.com/otaflow/otaflow/internal/assignment"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/eligibility"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// candidate is a rollout that may decide for the device, with its record.
type candidate struct {
	ro  *catalog.Rollout
	rec *devicestore.Record
}

func recordView(r *devicestore.Record) *eligibility.RecordView {
	if r == nil {
		return nil
	}
	return &eligibility.RecordView{
		State: r.State, Wave: r.Wave, Version: r.Version,
		PreviousVersion: r.PreviousVersion, RollbackOffered: r.RollbackRelease != "",
		OfferBoot: r.OfferBoot,
	}
}

// update answers GET /v1/update: 204, or an install/rollback assignment,
// or a cancel.
func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := deviceFrom(ctx)
	ci, err := ParseCheckIn(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	now := s.cfg.Now()
	if ci.Version != d.Version || ci.SecurityFloor != d.SecurityFloor {
		if err := s.store.SetRunning(ctx, d.ID, ci.Version, ci.SecurityFloor, now); err != nil {
			s.internal(w, r, "record running version", err)
			return
		}
		d.Version, d.SecurityFloor = ci.Version, ci.SecurityFloor
	} else {
		s.seen.add(d.ID, now)
	}

	snap := s.cfg.Catalog.Snapshot()
	cands, err := s.candidates(ctx, snap, d, ci.Boot)
	if err != nil {
		s.internal(w, r, "read records", err)
		return
	}
	var holder *candidate
	for i := range cands {
		c := &cands[i]
		if holder != nil {
			s.markConflict(ctx, c, d)
			continue
		}
		if eligibility.Holds(c.ro.View, recordView(c.rec)) {
			holder = c
		}
	}
	if holder == nil {
		s.nothing(w, "none")
		return
	}
	s.answer(w, r, snap, d, ci, holder)
}

// candidates are the rollouts matching the device plus those it has a
// record in (its labels may have changed since), oldest first, after the
// check-in's version has been applied to the records.
func (s *Server) candidates(ctx context.Context, snap *catalog.Snapshot, d devicestore.Device, boot string) ([]candidate, error) {
	recs, err := s.store.Records(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	byUID := map[string]*devicestore.Record{}
	for i := range recs {
		rec := &recs[i]
		ro := snap.RolloutByUID(rec.RolloutUID)
		if ro == nil {
			continue
		}
		if err := s.applyCheckIn(ctx, ro, rec, d.Version, boot); err != nil {
			return nil, err
		}
		byUID[rec.RolloutUID] = rec
	}
	var out []candidate
	for _, ro := range snap.Rollouts {
		rec := byUID[ro.UID]
		if rec != nil || ro.Matches(d.Type, d.Labels) {
			out = append(out, candidate{ro: ro, rec: rec})
		}
	}
	return out, nil
}

// applyCheckIn moves the record on from what the running version says
// (succeeded, reverted, rolled back).
func (s *Server) applyCheckIn(ctx context.Context, ro *catalog.Rollout, rec *devicestore.Record, running, boot string) error {
	next, reason, changed := eligibility.CheckIn(*recordView(rec), running, boot)
	if !changed {
		return nil
	}
	rec.State, rec.UpdatedAt = next, s.cfg.Now()
	var f *devicestore.Failure
	if next == eligibility.StateFailed {
		rec.Reason = reason
		f = &devicestore.Failure{DeviceID: rec.DeviceID, Wave: rec.Wave, Reason: reason, At: rec.UpdatedAt}
	}
	s.cfg.Log.V(1).Info("device outcome", "device", rec.DeviceID, "rollout", ro.Key(), "state", next, "running", running)
	return s.store.PutRecord(ctx, *rec, f)
}

// markConflict records that an older rollout holds a device this one
// would otherwise serve (written once per device and rollout).
func (s *Server) markConflict(ctx context.Context, c *candidate, d devicestore.Device) {
	if c.rec != nil || !c.ro.Matches(d.Type, d.Labels) || !s.marks.first(c.ro.UID+"/"+d.ID) {
		return
	}
	if err := s.store.SetConflict(ctx, c.ro.UID, d.ID, true); err != nil {
		s.cfg.Log.Error(err, "record conflict", "rollout", c.ro.Key(), "device", d.ID)
	}
}

func (s *Server) nothing(w http.ResponseWriter, answer string) {
	s.cfg.Metrics.CheckIns.WithLabelValues(answer).Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// answer applies the holding rollout's decision.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, snap *catalog.Snapshot, d devicestore.Device, ci CheckIn, c *candidate) {
	ctx := r.Context()
	ro := c.ro
	view := ro.View
	if cut, ok := s.cfg.Cutoffs.Cutoffs(ro.UID); ok {
		view.Cutoffs = cut
	}
	var prev eligibility.RollbackTarget
	var prevRel *catalog.Release
	if c.rec != nil && c.rec.PreviousVersion != "" {
		if prevRel = snap.PreviousRelease(ro.Namespace, c.rec.PreviousVersion, d.Type); prevRel != nil {
			prev = eligibility.RollbackTarget{Found: true, SecurityVersion: prevRel.SecurityVersion}
		}
	}
	dec := eligibility.Decide(view, eligibility.DeviceView{Version: d.Version, Floor: d.SecurityFloor}, eligibility.Rank(ro.UID, d.ID), recordView(c.rec), prev)
	now := s.cfg.Now()
	switch dec.Action {
	case eligibility.Nothing:
		if c.rec != nil && dec.Reason != "" && c.rec.Reason != dec.Reason {
			// Make a blocked rollback visible on the record.
			c.rec.Reason, c.rec.UpdatedAt = dec.Reason, now
			if err := s.store.PutRecord(ctx, *c.rec, nil); err != nil {
				s.internal(w, r, "record reason", err)
				return
			}
		}
		s.nothing(w, "none")

	case eligibility.AlreadyCurrent:
		rec := devicestore.Record{
			RolloutUID: ro.UID, DeviceID: d.ID, Wave: dec.Wave, State: eligibility.StateSucceeded,
			Release: ro.Release.Key(), Version: ro.Release.Version, Blob: ro.Release.Artifact.EncryptedSHA256,
			OfferedAt: now, UpdatedAt: now, Reason: "already running the release",
		}
		if err := s.store.PutRecord(ctx, rec, nil); err != nil {
			s.internal(w, r, "record current device", err)
			return
		}
		s.nothing(w, "none")

	case eligibility.Offer:
		if wait, ok := s.offers.allow(ro.UID, ro.MaxOffersPerMinute); !ok {
			w.Header().Set("Retry-After", retrySeconds(wait))
			s.nothing(w, "none")
			return
		}
		rec := devicestore.Record{
			RolloutUID: ro.UID, DeviceID: d.ID, Wave: dec.Wave, State: eligibility.StateOffered,
			Release: ro.Release.Key(), Version: ro.Release.Version, Blob: ro.Release.Artifact.EncryptedSHA256,
			PreviousVersion: d.Version, OfferedAt: now, UpdatedAt: now, OfferBoot: ci.Boot,
		}
		// Sign first: a wrapping failure must not leave an offer behind.
		signed, err := s.sign(ctx, r, d, ro, ro.Release, ci.Nonce, false)
		if err != nil {
			s.internal(w, r, "sign assignment", err)
			return
		}
		if err := s.store.PutRecord(ctx, rec, nil); err != nil {
			s.internal(w, r, "record offer", err)
			return
		}
		s.cfg.Metrics.Offers.WithLabelValues("release").Inc()
		s.cfg.Log.V(1).Info("offered", "device", d.ID, "rollout", ro.Key(), "wave", dec.Wave)
		s.send(w, actionInstall, ro, signed)

	case eligibility.Resend:
		if ro.Release.SecurityVersion < d.SecurityFloor {
			// The device's floor rose past the release while it was
			// offered: never sign an assignment below the floor (the
			// device would refuse it); fail the update visibly instead.
			rec := *c.rec
			rec.State, rec.Reason, rec.UpdatedAt = eligibility.StateFailed, eligibility.ReasonSecurityFloor, now
			f := &devicestore.Failure{DeviceID: d.ID, Wave: rec.Wave, Reason: rec.Reason, At: now}
			if err := s.store.PutRecord(ctx, rec, f); err != nil {
				s.internal(w, r, "record floor failure", err)
				return
			}
			s.nothing(w, "none")
			return
		}
		signed, err := s.sign(ctx, r, d, ro, ro.Release, ci.Nonce, false)
		if err != nil {
			s.internal(w, r, "sign assignment", err)
			return
		}
		s.send(w, actionInstall, ro, signed)

	case eligibility.Cancel:
		rec := *c.rec
		rec.State, rec.Reason, rec.UpdatedAt = eligibility.StateCanceled, "rollout aborted", now
		if err := s.store.PutRecord(ctx, rec, nil); err != nil {
			s.internal(w, r, "record cancel", err)
			return
		}
		s.cfg.Metrics.CheckIns.WithLabelValues(actionCancel).Inc()
		writeJSON(w, http.StatusOK, UpdateResponse{Action: actionCancel, Rollout: ro.Key(), Reason: "rollout aborted"})

	case eligibility.Rollback:
		signed, err := s.sign(ctx, r, d, ro, prevRel, ci.Nonce, true)
		if err != nil {
			s.internal(w, r, "sign rollback", err)
			return
		}
		if c.rec.RollbackRelease != prevRel.Key() || c.rec.RollbackBlob != prevRel.Artifact.EncryptedSHA256 {
			rec := *c.rec
			rec.RollbackRelease, rec.RollbackBlob, rec.UpdatedAt, rec.Reason = prevRel.Key(), prevRel.Artifact.EncryptedSHA256, now, ""
			if err := s.store.PutRecord(ctx, rec, nil); err != nil {
				s.internal(w, r, "record rollback", err)
				return
			}
			s.cfg.Metrics.Offers.WithLabelValues("rollback").Inc()
		}
		s.send(w, actionRollback, ro, signed)

	default:
		s.internal(w, r, "decide", errors.New("unknown decision"))
	}
}

func (s *Server) send(w http.ResponseWriter, action string, ro *catalog.Rollout, signed *assignment.Signed) {
	s.cfg.Metrics.CheckIns.WithLabelValues(action).Inc()
	writeJSON(w, http.StatusOK, UpdateResponse{Action: action, Rollout: ro.Key(), Assignment: signed})
}
