package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"testing"
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
