package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// pageSize is how many devices one fleet-sync transaction handles.
const pageSize = 2000

// syncFleet adds devices enrolled (or re-enrolled) since the last pass to
// the rollout's fleet, or removes them when they no longer match. A new
// selector or device-type list starts over from the first device. Then the
// count-wave cutoffs are recomputed from the ordered rank index, and
// unpinned members move to their new waves if the cutoffs moved.
//
// A frozen fleet (see frozen) is not synced; its cutoffs are computed once
// (after a restart), since its stragglers may still be offered the release.
func (r *Reporter) syncFleet(ctx context.Context, ro *catalog.Rollout, frozen bool) error {
	st := r.fleets[ro.UID]
	if st == nil {
		// First pass since this replica became the leader: resume from
		// the state the last leader stored.
		var err error
		if st, err = r.loadState(ctx, ro); err != nil {
			return err
		}
		r.fleets[ro.UID] = st
	}
	if st.selectorKey != ro.SelectorKey {
		st = &fleetState{key: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, selectorKey: ro.SelectorKey, cutoffs: st.cutoffs}
		r.fleets[ro.UID] = st
	}
	if frozen && st.cutoffs != nil {
		return nil
	}
	startSeq := st.seq
	cut := st.cutoffs
	if cut == nil {
		cut = rollout.Cutoffs(ro.Waves, nil) // provisional; fixed below
	}
	for !frozen {
		devs, err := r.cfg.Store.DevicesSince(ctx, st.seq, pageSize)
		if err != nil {
			return err
		}
		var up []devicestore.FleetMember
		var rm []string
		for _, d := range devs {
			if ro.Matches(d.Namespace, d.Type, d.Labels) {
				rank := rollout.Rank(ro.UID, d.ID)
				up = append(up, devicestore.FleetMember{DeviceID: d.ID, Rank: rank, Wave: rollout.WaveOf(rank, cut)})
			} else {
				rm = append(rm, d.ID)
			}
		}
		if err := r.cfg.Store.SyncFleet(ctx, ro.UID, up, rm); err != nil {
			return err
		}
		if len(devs) > 0 {
			st.seq = devs[len(devs)-1].Seq
		}
		if len(devs) < pageSize {
			break
		}
	}
	nth := map[int64]uint64{}
	for _, n := range rollout.CountRanks(ro.Waves) {
		rank, ok, err := r.cfg.Store.NthRank(ctx, ro.UID, n)
		if err != nil {
			return err
		}
		if ok {
			nth[n] = rank
		}
	}
	next := rollout.Cutoffs(ro.Waves, nth)
	changed := !slices.Equal(next, st.cutoffs)
	if changed {
		if err := r.cfg.Store.AssignWaves(ctx, ro.UID, next); err != nil {
			return fmt.Errorf("assign waves of %s: %w", ro.Key(), err)
		}
		st.cutoffs = next
	}
	if changed || st.seq != startSeq || !st.stored {
		// Stored after the waves are assigned: replicas serving these
		// cutoffs find every member in the wave they say.
		err := r.cfg.Store.PutRolloutState(ctx, ro.UID, devicestore.RolloutState{
			SelectorKey: st.selectorKey, FleetSeq: st.seq, Cutoffs: st.cutoffs, UpdatedAt: r.cfg.Now(),
		})
		if err != nil {
			return fmt.Errorf("store state of %s: %w", ro.Key(), err)
		}
		st.stored = true
	}
	r.publish(ro.UID, st.cutoffs)
	return nil
}

// loadState returns the rollout's fleet state as stored, or a fresh one.
func (r *Reporter) loadState(ctx context.Context, ro *catalog.Rollout) (*fleetState, error) {
	st := &fleetState{key: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, selectorKey: ro.SelectorKey}
	saved, err := r.cfg.Store.RolloutState(ctx, ro.UID)
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("load state of %s: %w", ro.Key(), err)
	}
	// Under another selector the cursor does not apply (the sync starts
	// over), but the cutoffs stand until recomputed.
	st.selectorKey, st.seq, st.cutoffs, st.stored = saved.SelectorKey, saved.FleetSeq, saved.Cutoffs, true
	r.publish(ro.UID, st.cutoffs)
	return st, nil
}

// publish makes cutoffs the ones the request path sees.
func (r *Reporter) publish(uid string, cutoffs []uint64) {
	if cutoffs == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.cutoffs[uid], cutoffs) {
		r.cutoffs[uid] = cutoffs
	}
}
