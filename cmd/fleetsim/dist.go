package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// labelChoice is one key=value with its weight.
type labelChoice struct {
	Key, Value string
	Weight     float64
}

// labelGroup is a set of alternatives for one label key.
type labelGroup []labelChoice

// parseLabels parses 'k=v:w,k=v:w;k2=v:w,…'. Groups are separated by ';',
// alternatives by ','. Weights are relative (need not add up to 100).
func parseLabels(s string) ([]labelGroup, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var groups []labelGroup
	for gi, g := range strings.Split(s, ";") {
		var grp labelGroup
		var key string
		for _, item := range strings.Split(g, ",") {
			item = strings.TrimSpace(item)
			kv, w, ok := strings.Cut(item, ":")
			if !ok {
				w = "1"
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("labels: %q is not key=value:weight", item)
			}
			if key != "" && k != key {
				return nil, fmt.Errorf("labels: group %d mixes keys %q and %q (separate keys with ';')", gi+1, key, k)
			}
			key = k
			weight, err := strconv.ParseFloat(w, 64)
			if err != nil || weight < 0 {
				return nil, fmt.Errorf("labels: weight %q of %s is not a non-negative number", w, kv)
			}
			grp = append(grp, labelChoice{Key: k, Value: v, Weight: weight})
		}
		total := 0.0
		for _, c := range grp {
			total += c.Weight
		}
		if total <= 0 {
			return nil, fmt.Errorf("labels: group %d has no positive weight", gi+1)
		}
		groups = append(groups, grp)
	}
	return groups, nil
}

// assignLabels gives n devices labels with exact proportions (largest
// remainders), shuffled per group with the seed so that groups are
// independent of each other and of the device index.
func assignLabels(groups []labelGroup, n int, seed uint64) []map[string]string {
	out := make([]map[string]string, n)
	for i := range out {
		out[i] = map[string]string{}
	}
	for gi, grp := range groups {
		counts := apportion(grp, n)
		perm := rand.New(rand.NewPCG(seed, uint64(gi)+1)).Perm(n)
		pos := 0
		for ci, c := range grp {
			for range counts[ci] {
				out[perm[pos]][c.Key] = c.Value
				pos++
			}
		}
	}
	return out
}

// apportion splits n by weight with the largest-remainder method.
func apportion(grp labelGroup, n int) []int {
	total := 0.0
	for _, c := range grp {
		total += c.Weight
	}
	counts := make([]int, len(grp))
	rem := make([]float64, len(grp))
	given := 0
	for i, c := range grp {
		exact := c.Weight / total * float64(n)
		counts[i] = int(exact)
		rem[i] = exact - float64(counts[i])
		given += counts[i]
	}
	for ; given < n; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		counts[best]++
		rem[best] = -1
	}
	return counts
}
