package otaserver

import (
	"context"
	"fmt"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Explanation is the answer a device would get if it checked in now, with
// every rollout of its namespace and how it stands with the device.
type Explanation struct {
	Action rollout.Action
	// Rollout acts on the device; nil for Nothing.
	Rollout *catalog.Rollout
	// Reason explains Nothing.
	Reason   string
	Verdicts []RolloutVerdict
}

// RolloutVerdict is one rollout's stand with the device.
type RolloutVerdict struct {
	Rollout *catalog.Rollout
	Kind    rollout.VerdictKind
	Reason  string
	// InFleet: the rollout selects the device now.
	InFleet bool
	// Wave is the device's wave in the rollout, -1 when not known.
	Wave int
	// Record is the device's record after the check-in, nil if none.
	Record *rollout.Record
}

// Explain decides a check-in of d as Decide would, on the same catalog
// snapshot, records, wave cutoffs and offer rate limits, and writes
// nothing: no record, no running version, no last-seen time, no rate-limit
// token. deliverable is the device's protocol's filter (nil for otaflow
// agents). Rollouts of the device's namespace that do not select it are
// listed as NotInFleet with the reason.
func (s *Server) Explain(ctx context.Context, d devicestore.Device, deliverable func(*catalog.Release) (string, bool)) (Explanation, error) {
	snap := s.cfg.Catalog.Snapshot()
	recs, err := s.store.Records(ctx, d.ID)
	if err != nil {
		return Explanation{}, fmt.Errorf("read records: %w", err)
	}
	throttled := map[string]bool{}
	for _, ro := range snap.Rollouts {
		if !s.offers.wouldAllow(ro.UID, ro.MaxOffersPerMinute) {
			throttled[ro.UID] = true
		}
	}
	cands, pure := s.candidates(snap, d, recs, throttled, deliverable)
	dv := rollout.DeviceView{Version: s.vers.parse(d.Version), Floor: d.SecurityFloor, EnrolledAt: d.EnrolledAt}
	ex := rollout.Explain(dv, pure)
	out := Explanation{Action: ex.Outcome.Answer.Action, Reason: ex.Outcome.Answer.Reason}
	if i := ex.Outcome.Answer.Candidate; i >= 0 && out.Action != rollout.Nothing {
		out.Rollout = cands[i].ro
	}
	in := map[string]bool{}
	for i, c := range cands {
		in[c.ro.UID] = true
		v := ex.Verdicts[i]
		out.Verdicts = append(out.Verdicts, RolloutVerdict{
			Rollout: c.ro, Kind: v.Kind, Reason: v.Reason, InFleet: pure[i].Matches, Wave: v.Wave, Record: v.Record,
		})
	}
	for _, ro := range snap.Rollouts {
		if in[ro.UID] || !ro.Admits(d.Namespace) {
			continue
		}
		why := ro.Mismatch(d.Namespace, d.Type, d.Labels)
		if why == "" {
			// Selected, but the device's protocol cannot take the release
			// and the release is not ready to say so yet.
			why = "the release cannot be delivered to this device's protocol yet"
		}
		out.Verdicts = append(out.Verdicts, RolloutVerdict{Rollout: ro, Kind: rollout.VerdictNotInFleet, Reason: why, Wave: -1})
	}
	return out, nil
}
