package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/bits"
)

// MaxRank is the highest rank; a cutoff of MaxRank opens every device.
const MaxRank = math.MaxUint64

// Rank is the device's stable position in a rollout: the first 8 bytes of
// SHA-256(rollout UID ‖ device ID), big-endian. Read as rank/2^64 it is a
// uniform fraction, the same on every replica and after every restart.
func Rank(rolloutUID, deviceID string) uint64 {
	h := sha256.New()
	h.Write([]byte(rolloutUID))
	h.Write([]byte(deviceID))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// PercentCutoff is the inclusive highest rank a p% wave opens: ranks below
// floor(p·2^64/100). p is clamped to 0..100; 0 opens nothing (ok false).
func PercentCutoff(p int) (cutoff uint64, ok bool) {
	switch {
	case p <= 0:
		return 0, false
	case p >= 100:
		return MaxRank, true
	}
	// p·2^64 is the 128-bit number (hi=p, lo=0); divide by 100 exactly.
	q, _ := bits.Div64(uint64(p), 0, 100)
	return q - 1, true
}

// WaveSize is a wave's cumulative size: Count devices, or Percent of the fleet.
type WaveSize struct {
	Count   int64 // > 0 for a count wave
	Percent int   // 1..100 for a percentage wave
}

// CountRanks lists the n (1-based) whose n-th lowest fleet rank the count
// waves need, so the caller can look them up in its ordered index.
func CountRanks(waves []WaveSize) []int64 {
	var ns []int64
	for _, w := range waves {
		if w.Count > 0 {
			ns = append(ns, w.Count)
		}
	}
	return ns
}

// Cutoffs returns each wave's inclusive highest rank. A count wave N opens
// the N lowest ranks of the fleet: its cutoff is nthRank[N], or MaxRank
// when the fleet has N devices or fewer (nthRank has no entry for N).
// Cutoffs never decrease from one wave to the next: waves are cumulative.
func Cutoffs(waves []WaveSize, nthRank map[int64]uint64) []uint64 {
	out := make([]uint64, len(waves))
	var prev uint64
	for i, w := range waves {
		var c uint64
		if w.Count > 0 {
			r, ok := nthRank[w.Count]
			c = MaxRank
			if ok {
				c = r
			}
		} else if pc, ok := PercentCutoff(w.Percent); ok {
			c = pc
		}
		if i > 0 && c < prev {
			c = prev
		}
		out[i], prev = c, c
	}
	return out
}

// WaveOf is the first wave whose cutoff is at or above rank; -1 when none
// is (only possible if the last wave is not 100%).
func WaveOf(rank uint64, cutoffs []uint64) int {
	for i, c := range cutoffs {
		if rank <= c {
			return i
		}
	}
	return -1
}
