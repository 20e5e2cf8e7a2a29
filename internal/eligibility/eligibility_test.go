package eligibility

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"testing"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func TestRankIsStableAndSpread(t *testing.T) {
	if Rank("uid", "dev") != Rank("uid", "dev") {
		t.Fatal("rank not stable")
	}
	if Rank("uid", "dev") == Rank("uid2", "dev") {
		t.Fatal("rank ignores the rollout")
	}
	// The definition: first 8 bytes of SHA-256(uid ‖ device ID), big-endian.
	sum := sha256.Sum256([]byte("uid-1dev-1"))
	if got, want := Rank("uid-1", "dev-1"), binary.BigEndian.Uint64(sum[:8]); got != want {
		t.Fatalf("rank %#x, want %#x", got, want)
	}
}

func TestPercentCutoffExact(t *testing.T) {
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	for p := 1; p <= 100; p++ {
		want := new(big.Int).Div(new(big.Int).Mul(big.NewInt(int64(p)), two64), big.NewInt(100))
		want.Sub(want, big.NewInt(1))
		got, ok := PercentCutoff(p)
		if !ok || new(big.Int).SetUint64(got).Cmp(want) != 0 {
			t.Fatalf("p=%d: got %d, want %s", p, got, want)
		}
	}
	if _, ok := PercentCutoff(0); ok {
		t.Fatal("0% opens something")
	}
	if c, _ := PercentCutoff(100); c != math.MaxUint64 {
		t.Fatal("100% does not open every rank")
	}
}

// fleetRanks returns the ranks of n devices in a rollout, with their IDs.
func fleetRanks(uid string, ids []string) map[string]uint64 {
	m := map[string]uint64{}
	for _, id := range ids {
		m[id] = Rank(uid, id)
	}
	return m
}

// nthRanks computes what the store's ordered index returns.
func nthRanks(ranks map[string]uint64, ns []int64) map[int64]uint64 {
	var sorted []uint64
	for _, r := range ranks {
		sorted = append(sorted, r)
	}
	slices.Sort(sorted)
	out := map[int64]uint64{}
	for _, n := range ns {
		if int(n) <= len(sorted) {
			out[n] = sorted[n-1]
		}
	}
	return out
}

func ids(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%03d", prefix, i))
	}
	return out
}

func TestCountWaves(t *testing.T) {
	tests := []struct {
		name      string
		waves     []WaveSize
		fleet     int
		wantSizes []int // devices per wave
	}{
		{"canary of 10 in 100", []WaveSize{{Count: 10}, {Percent: 100}}, 100, []int{10, 90}},
		{"count waves then all", []WaveSize{{Count: 1}, {Count: 5}, {Percent: 100}}, 50, []int{1, 4, 45}},
		{"fleet smaller than the count", []WaveSize{{Count: 10}, {Percent: 100}}, 4, []int{4, 0}},
		{"fleet equal to the count", []WaveSize{{Count: 10}, {Percent: 100}}, 10, []int{10, 0}},
		{"empty fleet", []WaveSize{{Count: 3}, {Percent: 100}}, 0, []int{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ranks := fleetRanks("uid-count", ids("d", tc.fleet))
			cut := Cutoffs(tc.waves, nthRanks(ranks, CountRanks(tc.waves)))
			got := make([]int, len(tc.waves))
			for _, r := range ranks {
				got[WaveOf(r, cut)]++
			}
			if !slices.Equal(got, tc.wantSizes) {
				t.Fatalf("wave sizes %v, want %v", got, tc.wantSizes)
			}
		})
	}
}

func TestCountWaveIsTheLowestRanks(t *testing.T) {
	ranks := fleetRanks("uid-x", ids("d", 40))
	waves := []WaveSize{{Count: 7}, {Percent: 100}}
	cut := Cutoffs(waves, nthRanks(ranks, CountRanks(waves)))
	var all []string
	for id := range ranks {
		all = append(all, id)
	}
	sort.Slice(all, func(i, j int) bool { return ranks[all[i]] < ranks[all[j]] })
	for i, id := range all {
		want := 1
		if i < 7 {
			want = 0
		}
		if got := WaveOf(ranks[id], cut); got != want {
			t.Fatalf("device %s (rank #%d) in wave %d, want %d", id, i+1, got, want)
		}
	}
}

func TestPercentWaves(t *testing.T) {
	waves := []WaveSize{{Percent: 10}, {Percent: 50}, {Percent: 100}}
	cut := Cutoffs(waves, nil)
	ranks := fleetRanks("uid-pct", ids("d", 10000))
	got := make([]int, 3)
	for _, r := range ranks {
		got[WaveOf(r, cut)]++
	}
	// Uniform ranks: ~10%, ~40%, ~50%, within 2 points.
	for i, want := range []int{1000, 4000, 5000} {
		if d := got[i] - want; d < -200 || d > 200 {
			t.Fatalf("wave %d has %d devices, want about %d (all: %v)", i, got[i], want, got)
		}
	}
	// Boundaries are exact.
	tests := []struct {
		rank uint64
		want int
	}{
		{0, 0},
		{cut[0], 0},
		{cut[0] + 1, 1},
		{cut[1], 1},
		{cut[1] + 1, 2},
		{math.MaxUint64, 2},
	}
	for _, tc := range tests {
		if got := WaveOf(tc.rank, cut); got != tc.want {
			t.Errorf("rank %d: wave %d, want %d", tc.rank, got, tc.want)
		}
	}
}

// TestLateEnrollment: percentage cutoffs never move, so a late device lands
// by rank alone; a count wave's cutoff moves down when a lower-ranked device
// joins, so the newcomer joins the count wave and the device pushed out (if
// not offered yet) moves to the next wave. Offered devices are pinned by
// the store, not by these functions.
func TestLateEnrollment(t *testing.T) {
	uid := "uid-late"
	base := ids("early", 30)
	ranks := fleetRanks(uid, base)
	t.Run("percentage", func(t *testing.T) {
		waves := []WaveSize{{Percent: 20}, {Percent: 100}}
		before := Cutoffs(waves, nil)
		after := Cutoffs(waves, nil)
		if !slices.Equal(before, after) {
			t.Fatal("percentage cutoffs moved")
		}
		for _, id := range ids("late", 50) {
			r := Rank(uid, id)
			want := 1
			if c, _ := PercentCutoff(20); r <= c {
				want = 0
			}
			if got := WaveOf(r, after); got != want {
				t.Fatalf("late device %s: wave %d, want %d", id, got, want)
			}
		}
	})
	t.Run("count", func(t *testing.T) {
		waves := []WaveSize{{Count: 5}, {Percent: 100}}
		before := Cutoffs(waves, nthRanks(ranks, CountRanks(waves)))
		// Find a late device ranked below the current 5th.
		var late string
		for _, id := range ids("late", 1000) {
			if Rank(uid, id) < before[0] {
				late = id
				break
			}
		}
		if late == "" {
			t.Fatal("no late device below the cutoff")
		}
		grown := fleetRanks(uid, append(slices.Clone(base), late))
		after := Cutoffs(waves, nthRanks(grown, CountRanks(waves)))
		if after[0] >= before[0] {
			t.Fatalf("count cutoff did not move down: %d → %d", before[0], after[0])
		}
		if WaveOf(grown[late], after) != 0 {
			t.Fatal("late low-ranked device not in the count wave")
		}
		n := 0
		for _, r := range grown {
			if WaveOf(r, after) == 0 {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("count wave has %d unpinned devices, want 5", n)
		}
		// Before the wave's cutoff is recomputed, the newcomer still falls
		// in the lowest open wave its rank allows (the count wave).
		if WaveOf(grown[late], before) != 0 {
			t.Fatal("newcomer outside the count wave under the old cutoff")
		}
	})
}

func TestCutoffsAreCumulative(t *testing.T) {
	// A count wave larger than the fleet opens all; later waves never go back.
	cut := Cutoffs([]WaveSize{{Count: 100}, {Percent: 50}, {Percent: 100}}, map[int64]uint64{})
	if cut[0] != MaxRank || cut[1] != MaxRank || cut[2] != MaxRank {
		t.Fatalf("cutoffs %v", cut)
	}
}

func view(phase otav1.RolloutPhase, wave int) RolloutView {
	return RolloutView{Phase: phase, CurrentWave: wave, ReleaseReady: true, Version: "2.0.0", SecurityVersion: 5,
		Cutoffs: Cutoffs([]WaveSize{{Percent: 50}, {Percent: 100}}, nil)}
}

func TestDecideNewDevice(t *testing.T) {
	low, high := uint64(1), uint64(math.MaxUint64) // wave 0, wave 1
	dev := DeviceView{Version: "1.0.0", Floor: 3}
	mod := func(f func(*RolloutView)) RolloutView { v := view(otav1.RolloutProgressing, 0); f(&v); return v }
	tests := []struct {
		name string
		r    RolloutView
		d    DeviceView
		rank uint64
		want Decision
	}{
		{"open wave", view(otav1.RolloutProgressing, 0), dev, low, Decision{Action: Offer, Wave: 0}},
		{"wave not open yet", view(otav1.RolloutProgressing, 0), dev, high, Decision{Reason: ReasonWaveNotOpen}},
		{"later wave open", view(otav1.RolloutProgressing, 1), dev, high, Decision{Action: Offer, Wave: 1}},
		{"gate pause still offers", view(otav1.RolloutPaused, 0), dev, low, Decision{Action: Offer, Wave: 0}},
		{"succeeded still offers late devices", view(otav1.RolloutSucceeded, 1), dev, high, Decision{Action: Offer, Wave: 1}},
		{"pending", view(otav1.RolloutPending, 1), dev, low, Decision{Reason: ReasonNotOffering}},
		{"phase unset", view("", 1), dev, low, Decision{Reason: ReasonNotOffering}},
		{"aborted", view(otav1.RolloutAborted, 1), dev, low, Decision{Reason: ReasonNotOffering}},
		{"spec.paused", mod(func(v *RolloutView) { v.Paused = true }), dev, low, Decision{Reason: ReasonNotOffering}},
		{"spec.abort", mod(func(v *RolloutView) { v.Abort = true }), dev, low, Decision{Reason: ReasonNotOffering}},
		{"release not ready", mod(func(v *RolloutView) { v.ReleaseReady = false }), dev, low, Decision{Reason: ReasonNotOffering}},
		{"cutoffs unknown", mod(func(v *RolloutView) { v.Cutoffs = nil }), dev, low, Decision{Reason: ReasonCutoffsPending}},
		{"below security floor", view(otav1.RolloutProgressing, 0), DeviceView{Version: "1.0.0", Floor: 6}, low, Decision{Reason: ReasonSecurityFloor}},
		{"floor equal is fine", view(otav1.RolloutProgressing, 0), DeviceView{Version: "1.0.0", Floor: 5}, low, Decision{Action: Offer}},
		{"already running it", view(otav1.RolloutProgressing, 0), DeviceView{Version: "2.0.0"}, low, Decision{Action: AlreadyCurrent}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.r, tc.d, tc.rank, nil, RollbackTarget{}); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecideExisting(t *testing.T) {
	dev := DeviceView{Version: "2.0.0", Floor: 3}
	aborted := view(otav1.RolloutAborted, 1)
	rollback := aborted
	rollback.RollbackRequested = true
	rec := func(s State) *RecordView {
		return &RecordView{State: s, Wave: 1, Version: "2.0.0", PreviousVersion: "1.0.0"}
	}
	prev := RollbackTarget{Found: true, SecurityVersion: 4}
	tests := []struct {
		name string
		r    RolloutView
		rec  *RecordView
		prev RollbackTarget
		want Action
		why  string
	}{
		{"offered resends", view(otav1.RolloutProgressing, 1), rec(StateOffered), prev, Resend, ""},
		{"downloading resends even when paused", func() RolloutView { v := view(otav1.RolloutProgressing, 1); v.Paused = true; return v }(), rec(StateDownloading), prev, Resend, ""},
		{"installing resends", view(otav1.RolloutProgressing, 1), rec(StateInstalling), prev, Resend, ""},
		{"installed waits", view(otav1.RolloutProgressing, 1), rec(StateInstalled), prev, Nothing, ""},
		{"succeeded waits", view(otav1.RolloutProgressing, 1), rec(StateSucceeded), prev, Nothing, ""},
		{"abort cancels offered", aborted, rec(StateOffered), prev, Cancel, ""},
		{"abort cancels downloaded", aborted, rec(StateDownloaded), prev, Cancel, ""},
		{"abort lets installing finish", aborted, rec(StateInstalling), prev, Nothing, ""},
		{"no rollback without request", aborted, rec(StateSucceeded), prev, Nothing, ""},
		{"rollback of succeeded", rollback, rec(StateSucceeded), prev, Rollback, ""},
		{"rollback of installed", rollback, rec(StateInstalled), prev, Rollback, ""},
		{"no rollback of failed", rollback, rec(StateFailed), prev, Nothing, ""},
		{"no previous release", rollback, rec(StateSucceeded), RollbackTarget{}, Nothing, ReasonNoPrevious},
		{"previous below floor", rollback, rec(StateSucceeded), RollbackTarget{Found: true, SecurityVersion: 2}, Nothing, ReasonRollbackFloor},
		{"rolled back is done", rollback, &RecordView{State: StateRolledBack, RollbackOffered: true}, prev, Nothing, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.r, dev, 0, tc.rec, tc.prev)
			if got.Action != tc.want || got.Reason != tc.why {
				t.Fatalf("got %+v, want action %d reason %q", got, tc.want, tc.why)
			}
		})
	}
}

func TestHolds(t *testing.T) {
	open := view(otav1.RolloutProgressing, 0)
	aborted := view(otav1.RolloutAborted, 0)
	rb := aborted
	rb.RollbackRequested = true
	tests := []struct {
		name string
		r    RolloutView
		rec  *RecordView
		want bool
	}{
		{"open rollout, no record", open, nil, true},
		{"pending rollout holds its fleet", view(otav1.RolloutPending, 0), nil, true},
		{"aborted, no record", aborted, nil, false},
		{"in progress", aborted, &RecordView{State: StateDownloading}, true},
		{"final releases the device", open, &RecordView{State: StateSucceeded}, false},
		{"failed releases the device", open, &RecordView{State: StateFailed}, false},
		{"rollback due", rb, &RecordView{State: StateSucceeded}, true},
		{"rollback offered", rb, &RecordView{State: StateSucceeded, RollbackOffered: true}, true},
		{"rolled back", rb, &RecordView{State: StateRolledBack, RollbackOffered: true}, false},
	}
	for _, tc := range tests {
		if got := Holds(tc.r, tc.rec); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestApplyReport(t *testing.T) {
	tests := []struct {
		cur      State
		rollback bool
		rep      State
		want     State
		err      error
	}{
		{StateOffered, false, StateDownloading, StateDownloading, nil},
		{StateDownloading, false, StateDownloading, StateDownloading, nil},
		{StateOffered, false, StateInstalled, StateInstalled, nil},
		{StateInstalled, false, StateSucceeded, StateConfirmed, nil},
		{StateConfirmed, false, StateSucceeded, StateConfirmed, nil},
		{StateInstalling, false, StateFailed, StateFailed, nil},
		{StateInstalled, false, StateDownloading, StateInstalled, ErrTransition},
		{StateOffered, false, StateOffered, StateOffered, ErrTransition},
		{StateOffered, false, StateRolledBack, StateOffered, ErrTransition},
		{StateOffered, false, "bogus", StateOffered, ErrTransition},
		{StateSucceeded, false, StateFailed, StateSucceeded, ErrFinal},
		{StateTimedOut, false, StateInstalled, StateTimedOut, ErrFinal},
		{StateCanceled, false, StateDownloaded, StateCanceled, ErrCanceled},
		{StateSucceeded, true, StateDownloading, StateSucceeded, nil},
		{StateSucceeded, true, StateRolledBack, StateRolledBack, nil},
		{StateRolledBack, true, StateDownloading, StateRolledBack, ErrFinal},
	}
	for _, tc := range tests {
		got, err := ApplyReport(tc.cur, tc.rollback, tc.rep)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s(rollback=%v) + %s: got %s, %v; want %s, %v", tc.cur, tc.rollback, tc.rep, got, err, tc.want, tc.err)
		}
	}
}

func TestCheckIn(t *testing.T) {
	rec := func(s State) RecordView { return RecordView{State: s, Version: "2.0.0", PreviousVersion: "1.0.0"} }
	offeredIn := func(s State, boot string) RecordView { r := rec(s); r.OfferBoot = boot; return r }
	tests := []struct {
		name    string
		r       RecordView
		running string
		boot    string // the check-in's boot
		want    State
		reason  string
		changed bool
	}{
		{"confirmed and new version", rec(StateConfirmed), "2.0.0", "", StateSucceeded, "", true},
		{"installed and new version needs the success report", rec(StateInstalled), "2.0.0", "", StateInstalled, "", false},
		{"installed then old version", rec(StateInstalled), "1.0.0", "", StateFailed, ReasonReverted, true},
		{"confirmed then old version", rec(StateConfirmed), "1.0.0", "", StateFailed, ReasonReverted, true},
		{"downloading on old version", rec(StateDownloading), "1.0.0", "", StateDownloading, "", false},
		{"other version", rec(StateConfirmed), "1.5.0", "", StateConfirmed, "", false},
		{"rollback landed", RecordView{State: StateSucceeded, Version: "2.0.0", PreviousVersion: "1.0.0", RollbackOffered: true}, "1.0.0", "", StateRolledBack, "", true},
		{"rollback pending", RecordView{State: StateSucceeded, Version: "2.0.0", PreviousVersion: "1.0.0", RollbackOffered: true}, "2.0.0", "", StateSucceeded, "", false},
		{"installed, old version from the offer's boot: a delayed check-in", offeredIn(StateInstalled, "b1"), "1.0.0", "b1", StateInstalled, "", false},
		{"confirmed, old version from the offer's boot", offeredIn(StateConfirmed, "b1"), "1.0.0", "b1", StateConfirmed, "", false},
		{"installed, old version from a later boot", offeredIn(StateInstalled, "b1"), "1.0.0", "b2", StateFailed, ReasonReverted, true},
		{"installed, old version, check-in without boot", offeredIn(StateInstalled, "b1"), "1.0.0", "", StateFailed, ReasonReverted, true},
		{"installed, old version, offer's boot unknown", offeredIn(StateInstalled, ""), "1.0.0", "b1", StateFailed, ReasonReverted, true},
		{"confirmed, new version from the offer's boot", offeredIn(StateConfirmed, "b1"), "2.0.0", "b1", StateSucceeded, "", true},
	}
	for _, tc := range tests {
		got, reason, changed := CheckIn(tc.r, tc.running, tc.boot)
		if got != tc.want || reason != tc.reason || changed != tc.changed {
			t.Errorf("%s: got %s %q %v", tc.name, got, reason, changed)
		}
	}
}
