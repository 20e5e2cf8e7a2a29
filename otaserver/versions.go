package otaserver

import (
	"sync"

	"github.com/otaflow/otaflow/internal/rollout"
)

// versionCache keeps parsed device versions: a fleet runs a handful of
// versions, and every check-in needs its device's parsed. Bounded: when
// full it is cleared, which only costs parsing again.
type versionCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]rollout.Version
}

func newVersionCache(max int) *versionCache {
	return &versionCache{max: max, m: map[string]rollout.Version{}}
}

func (c *versionCache) parse(s string) rollout.Version {
	c.mu.RLock()
	v, ok := c.m[s]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = rollout.ParseVersion(s)
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[s] = v
	c.mu.Unlock()
	return v
}
