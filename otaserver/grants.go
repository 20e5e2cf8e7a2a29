package otaserver

import (
	"hash/maphash"
	"sync"
)

// grantCache remembers (device, blob) pairs the store confirmed an
// assignment for, so the Range requests of a download do not each look
// the wrapped key up again. A wrapped key is deleted only with its device
// (decommissioning), whose token then no longer authenticates, so a
// remembered grant is never used once false and the cache needs no
// invalidation. Pairs
// are kept as 64-bit hashes (a pointer-free map); a collision could only
// let a device fetch another device's blob, which is encrypted for
// devices holding its wrapped key, with odds of about n²/2⁶⁵. Bounded:
// when full it starts over.
type grantCache struct {
	seed maphash.Seed
	max  int
	mu   sync.RWMutex
	m    map[uint64]struct{}
}

func newGrantCache(max int) *grantCache {
	return &grantCache{seed: maphash.MakeSeed(), max: max, m: map[uint64]struct{}{}}
}

func (g *grantCache) key(device, blob string) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	_, _ = h.WriteString(device)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(blob)
	return h.Sum64()
}

func (g *grantCache) has(device, blob string) bool {
	k := g.key(device, blob)
	g.mu.RLock()
	_, ok := g.m[k]
	g.mu.RUnlock()
	return ok
}

func (g *grantCache) add(device, blob string) {
	k := g.key(device, blob)
	g.mu.Lock()
	if len(g.m) >= g.max {
		clear(g.m)
	}
	g.m[k] = struct{}{}
	g.mu.Unlock()
}
