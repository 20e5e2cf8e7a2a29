// Package cutoffs serves rollouts' wave cutoffs on replicas that do not
// run the reporter, from the state the leader's reporter keeps in the
// device store (devicestore.RolloutState).
package cutoffs

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// DefaultTTL is how long cutoffs read from the store are served before
// they are read again.
const DefaultTTL = 2 * time.Second

// DefaultTimeout bounds one read of a rollout's state.
const DefaultTimeout = time.Second

// Source is the part of the device store the cache reads.
type Source interface {
	RolloutState(ctx context.Context, rolloutUID string) (devicestore.RolloutState, error)
}

// Options tune a Cache; the zero value is usable.
type Options struct {
	// TTL: default DefaultTTL.
	TTL time.Duration
	// Timeout bounds each store read; default DefaultTimeout.
	Timeout time.Duration
	Log     logr.Logger
	Now     func() time.Time
}

// Cache implements otaserver.Cutoffs for replicas that are not the
// leader: it answers from cutoffs read from the store, read again once
// they are older than the TTL, on the first request that needs them (one
// read per rollout per TTL, whatever the request rate; concurrent
// requests for the same rollout wait for one read).
//
// Staleness bound: while the store answers, the cutoffs served are those
// the leader stored at most TTL plus one store read (≤ Timeout) earlier.
// The leader stores cutoffs after assigning the waves, once per reporting
// cycle, so a replica may open a wave up to TTL + Timeout + one
// --report-interval after the leader computed it. When a read fails
// (store unreachable) the last cutoffs read keep being served, however
// old, and the read is retried after another TTL: cutoffs change rarely
// (when the fleet grows across a count wave), and a replica that cannot
// read the store cannot serve the check-in anyway. A rollout whose state
// was never stored (its fleet not synced yet) answers ok=false, as the
// reporter does.
type Cache struct {
	src Source
	o   Options

	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	mu      sync.Mutex // held while reading the store
	cutoffs []uint64
	ok      bool
	read    time.Time // when the last read ended (zero: never)
}

// New returns a Cache reading from src.
func New(src Source, o Options) *Cache {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{src: src, o: o, entries: map[string]*entry{}}
}

// Cutoffs implements otaserver.Cutoffs. The slice returned must not be
// modified.
func (c *Cache) Cutoffs(rolloutUID string) ([]uint64, bool) {
	c.mu.Lock()
	e := c.entries[rolloutUID]
	if e == nil {
		e = &entry{}
		c.entries[rolloutUID] = e
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.read.IsZero() && c.o.Now().Sub(e.read) < c.o.TTL {
		return e.cutoffs, e.ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	st, err := c.src.RolloutState(ctx, rolloutUID)
	cancel()
	e.read = c.o.Now()
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		e.cutoffs, e.ok = nil, false
	case err != nil:
		c.o.Log.Error(err, "read wave cutoffs; serving the last ones read", "rollout", rolloutUID)
	case st.Cutoffs == nil:
		e.cutoffs, e.ok = nil, false
	case !slices.Equal(st.Cutoffs, e.cutoffs):
		e.cutoffs, e.ok = st.Cutoffs, true
	default:
		e.ok = true
	}
	return e.cutoffs, e.ok
}

// Forget drops rollouts not in keep (call it with the catalog's rollouts
// now and then, so deleted rollouts do not stay cached).
func (c *Cache) Forget(keep func(rolloutUID string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid := range c.entries {
		if !keep(uid) {
			delete(c.entries, uid)
		}
	}
}
