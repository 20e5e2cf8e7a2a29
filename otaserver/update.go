package otaserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// candidate is a rollout that may act on the device, with its record; the
// rules see it as the rollout.Candidate at the same index.
type candidate struct {
	ro   *catalog.Rollout
	rec  *devicestore.Record
	prev *catalog.Release // rollback target, nil when none is usable
}

func pureRecord(r *devicestore.Record) *rollout.Record {
	if r == nil {
		return nil
	}
	return &rollout.Record{
		State: r.State, Wave: r.Wave, Version: r.Version, PreviousVersion: r.PreviousVersion,
		RollbackOffered: r.RollbackRelease != "", OfferBoot: r.OfferBoot, Reason: r.Reason,
	}
}

// update answers GET /v1/update: 204, or an install, rollback or commit
// assignment, or a cancel, as Decide decides.
func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := deviceFrom(ctx)
	ci, err := protov1.ParseCheckIn(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, err.Error())
		return
	}
	dec, err := s.Decide(ctx, d, DeviceCheckIn{Version: ci.Version, SecurityFloor: ci.SecurityFloor, Boot: ci.Boot})
	if err != nil {
		s.internal(w, r, "check-in", err)
		return
	}
	s.answer(w, r, d, ci, dec)
}

// DeviceCheckIn is what a device says when it asks for work, whatever
// protocol it speaks.
type DeviceCheckIn struct {
	Version       string
	SecurityFloor int64
	// Boot identifies the device's current boot ("" when unknown).
	Boot string
	// Deliverable, when set, says for each candidate rollout's release
	// whether it can reach the device through its protocol: ok false with
	// a reason lets the rollout go of the device (recorded as skipped);
	// ok false with reason "" leaves the rollout out of this check-in
	// (a transient gap, such as hashes not yet computed).
	Deliverable func(rel *catalog.Release) (reason string, ok bool)
}

// Decision is the rules' answer to one check-in.
type Decision struct {
	Action rollout.Action
	// Rollout the action is for; nil for Nothing.
	Rollout *catalog.Rollout
	// Release to install: the rollout's, or for a rollback the previous
	// release; nil for Nothing and Cancel.
	Release *catalog.Release
	// Read is the device's record in Rollout as read before this check-in
	// (nil when it had none).
	Read *devicestore.Record
	// Records are the device's records in its candidate rollouts after
	// this check-in's writes, in catalog order.
	Records []DecidedRecord
	// Retry is the longest wait an offer rate limit asked for.
	Retry time.Duration
	// Reason explains Nothing.
	Reason string
}

// DecidedRecord is a candidate rollout with the device's record in it
// (nil when the device has none).
type DecidedRecord struct {
	Rollout *catalog.Rollout
	Record  *devicestore.Record
	// Previous is the rollback target (nil when none is usable).
	Previous *catalog.Release
}

// Decide records the running version the device reports and decides its
// check-in with the rollout rules (rollout.CheckIn), which every device
// protocol shares. When the decision writes anything, it is made again
// inside the store's write transaction on the records as they are then,
// and that decision is the answer.
func (s *Server) Decide(ctx context.Context, d devicestore.Device, ci DeviceCheckIn) (Decision, error) {
	now := s.cfg.Now()
	snap := s.cfg.Catalog.Snapshot()
	if ci.Version != d.Version || ci.SecurityFloor != d.SecurityFloor {
		if err := s.store.SetRunning(ctx, d.ID, ci.Version, ci.SecurityFloor, now); err != nil {
			return Decision{}, fmt.Errorf("record running version: %w", err)
		}
		d.Version, d.SecurityFloor = ci.Version, ci.SecurityFloor
	} else if now.Sub(d.LastSeen) >= snap.SeenResolution() {
		s.seen.add(d.ID, now)
	}
	dv := rollout.DeviceView{Version: s.vers.parse(d.Version), Floor: d.SecurityFloor, Boot: ci.Boot, EnrolledAt: d.EnrolledAt}

	recs, err := s.store.Records(ctx, d.ID)
	if err != nil {
		return Decision{}, fmt.Errorf("read records: %w", err)
	}
	cands, pure := s.candidates(snap, d, recs, nil, ci.Deliverable)
	out, throttled, retry := s.decideWithLimits(dv, cands, pure)
	var writes []devicestore.RecordWrite
	if len(out.Writes) > 0 {
		err := s.store.UpdateRecords(ctx, d.ID, func(fresh []devicestore.Record) ([]devicestore.RecordWrite, error) {
			cands, pure = s.candidates(snap, d, fresh, throttled, ci.Deliverable)
			out = rollout.CheckIn(dv, pure)
			writes = recordWrites(cands, out, d.ID, now)
			return writes, nil
		})
		if err != nil {
			return Decision{}, fmt.Errorf("write records: %w", err)
		}
		s.logWrites(cands, out, d)
	}
	for _, i := range out.Conflicts {
		s.markConflict(ctx, cands[i].ro, d)
	}
	return decision(cands, out, writes, retry), nil
}

// decision assembles the Decision from the rules' outcome.
func decision(cands []candidate, out rollout.Outcome, writes []devicestore.RecordWrite, retry time.Duration) Decision {
	dec := Decision{Action: out.Answer.Action, Retry: retry, Reason: out.Answer.Reason}
	dec.Records = make([]DecidedRecord, len(cands))
	for i, c := range cands {
		dec.Records[i] = DecidedRecord{Rollout: c.ro, Record: c.rec, Previous: c.prev}
	}
	for i, w := range out.Writes {
		rec := writes[i].Record
		dec.Records[w.Candidate].Record = &rec
	}
	if out.Answer.Action == rollout.Nothing {
		return dec
	}
	c := cands[out.Answer.Candidate]
	dec.Rollout, dec.Read = c.ro, c.rec
	switch out.Answer.Action {
	case rollout.Offer, rollout.Resend, rollout.Commit:
		dec.Release = c.ro.Release
	case rollout.Rollback:
		dec.Release = c.prev
	}
	return dec
}

// candidates are the rollouts whose fleet includes the device plus those it
// has a record in (its labels may have changed since), in catalog order,
// with their views for the rules at the same indexes.
func (s *Server) candidates(snap *catalog.Snapshot, d devicestore.Device, recs []devicestore.Record, throttled map[string]bool, deliverable func(*catalog.Release) (string, bool)) ([]candidate, []rollout.Candidate) {
	var cands []candidate
	var pure []rollout.Candidate
	for _, ro := range snap.Rollouts {
		var rec *devicestore.Record
		for i := range recs {
			if recs[i].RolloutUID == ro.UID {
				rec = &recs[i]
				break
			}
		}
		matches := ro.Matches(d.Namespace, d.Type, d.Labels)
		if rec == nil && !matches {
			continue
		}
		var undeliverable string
		if deliverable != nil && ro.Release != nil {
			reason, ok := deliverable(ro.Release)
			if !ok && reason == "" {
				continue
			}
			undeliverable = reason
		}
		c := candidate{ro: ro, rec: rec}
		p := rollout.Candidate{View: ro.View, Rank: rollout.Rank(ro.UID, d.ID), Matches: matches, Record: pureRecord(rec), Throttled: throttled[ro.UID], Undeliverable: undeliverable}
		if cut, ok := s.cfg.Cutoffs.Cutoffs(ro.UID); ok {
			p.View.Cutoffs = cut
		}
		if rec != nil && rec.PreviousVersion != "" {
			if c.prev = snap.PreviousRelease(ro.Namespace, rec.PreviousVersion, d.Type); c.prev != nil {
				p.Previous = rollout.RollbackTarget{Found: true, SecurityVersion: c.prev.SecurityVersion}
			}
		}
		cands = append(cands, c)
		pure = append(pure, p)
	}
	return cands, pure
}

// decideWithLimits decides, and while the decision is an offer its
// rollout's rate limit refuses, decides again with that rollout throttled.
// throttled names the rollouts whose limit refused (nil when none did);
// retry is the longest wait a refusing limit asked for.
func (s *Server) decideWithLimits(dv rollout.DeviceView, cands []candidate, pure []rollout.Candidate) (out rollout.Outcome, throttled map[string]bool, retry time.Duration) {
	for {
		out = rollout.CheckIn(dv, pure)
		if out.Answer.Action != rollout.Offer {
			return out, throttled, retry
		}
		c := &cands[out.Answer.Candidate]
		wait, ok := s.offers.allow(c.ro.UID, c.ro.MaxOffersPerMinute)
		if ok {
			return out, throttled, retry
		}
		if throttled == nil {
			throttled = map[string]bool{}
		}
		retry = max(retry, wait)
		throttled[c.ro.UID] = true
		pure[out.Answer.Candidate].Throttled = true
	}
}

// recordWrites turns the rules' writes into store records.
func recordWrites(cands []candidate, out rollout.Outcome, deviceID string, now time.Time) []devicestore.RecordWrite {
	var ws []devicestore.RecordWrite
	for _, w := range out.Writes {
		c := cands[w.Candidate]
		var rec devicestore.Record
		if c.rec != nil && !w.New {
			rec = *c.rec
		} else {
			rec = devicestore.Record{RolloutUID: c.ro.UID, DeviceID: deviceID, OfferedAt: now}
			if rel := c.ro.Release; rel != nil {
				rec.Release, rec.Blob = rel.Key(), rel.Artifact.EncryptedSHA256
			}
		}
		p := w.Record
		rec.Wave, rec.State, rec.Version, rec.PreviousVersion, rec.OfferBoot, rec.Reason = p.Wave, p.State, p.Version, p.PreviousVersion, p.OfferBoot, p.Reason
		rec.UpdatedAt = now
		if p.RollbackOffered && rec.RollbackRelease == "" && c.prev != nil {
			rec.RollbackRelease, rec.RollbackBlob = c.prev.Key(), c.prev.Artifact.EncryptedSHA256
		}
		var f *devicestore.Failure
		if w.Failure {
			f = &devicestore.Failure{DeviceID: deviceID, Wave: rec.Wave, Reason: rec.Reason, At: now}
		}
		ws = append(ws, devicestore.RecordWrite{Record: rec, Failure: f})
	}
	return ws
}

func (s *Server) logWrites(cands []candidate, out rollout.Outcome, d devicestore.Device) {
	for _, w := range out.Writes {
		s.cfg.Log.V(1).Info("device record", "device", d.ID, "rollout", cands[w.Candidate].ro.Key(), "state", w.Record.State, "reason", w.Record.Reason, "running", d.Version)
	}
}

// markConflict records that another rollout acts on a device this one
// would otherwise offer its release to (written once per device and
// rollout).
func (s *Server) markConflict(ctx context.Context, ro *catalog.Rollout, d devicestore.Device) {
	if !s.marks.first(ro.UID + "/" + d.ID) {
		return
	}
	if err := s.store.SetConflict(ctx, ro.UID, d.ID, true); err != nil {
		s.cfg.Log.Error(err, "record conflict", "rollout", ro.Key(), "device", d.ID)
	}
}

func (s *Server) nothing(w http.ResponseWriter, answer string) {
	s.cfg.Metrics.CheckIns.WithLabelValues(answer).Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// answer sends the decision's answer.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, d devicestore.Device, ci protov1.CheckIn, dec Decision) {
	ctx := r.Context()
	if dec.Action == rollout.Nothing {
		if dec.Retry > 0 {
			w.Header().Set("Retry-After", retrySeconds(dec.Retry))
		}
		s.nothing(w, "none")
		return
	}
	ro := dec.Rollout
	switch dec.Action {
	case rollout.Offer, rollout.Resend:
		signed, err := s.sign(ctx, r, d, ro, dec.Release, ci.Nonce, assignInstall)
		if err != nil {
			s.internal(w, r, "sign assignment", err)
			return
		}
		if dec.Action == rollout.Offer {
			s.cfg.Metrics.Offers.WithLabelValues("release").Inc()
			s.cfg.Log.V(1).Info("offered", "device", d.ID, "rollout", ro.Key())
		}
		s.send(w, protov1.ActionInstall, ro, signed)
	case rollout.Rollback:
		signed, err := s.sign(ctx, r, d, ro, dec.Release, ci.Nonce, assignRollback)
		if err != nil {
			s.internal(w, r, "sign rollback", err)
			return
		}
		if dec.Read == nil || dec.Read.RollbackRelease == "" {
			s.cfg.Metrics.Offers.WithLabelValues("rollback").Inc()
		}
		s.send(w, protov1.ActionRollback, ro, signed)
	case rollout.Commit:
		signed, err := s.sign(ctx, r, d, ro, dec.Release, ci.Nonce, assignCommit)
		if err != nil {
			s.internal(w, r, "sign commit", err)
			return
		}
		s.send(w, protov1.ActionCommit, ro, signed)
	case rollout.Cancel:
		s.cfg.Metrics.CheckIns.WithLabelValues(protov1.ActionCancel).Inc()
		writeJSON(w, http.StatusOK, protov1.UpdateResponse{Action: protov1.ActionCancel, Rollout: ro.Key(), Reason: rollout.ReasonAborted})
	}
}

func (s *Server) send(w http.ResponseWriter, action string, ro *catalog.Rollout, signed *assignment.Signed) {
	s.cfg.Metrics.CheckIns.WithLabelValues(action).Inc()
	writeJSON(w, http.StatusOK, protov1.UpdateResponse{Action: action, Rollout: ro.Key(), Assignment: signed})
}
