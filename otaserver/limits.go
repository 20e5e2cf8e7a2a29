package otaserver

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// offerLimiter enforces each rollout's maxOffersPerMinute (per replica).
type offerLimiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*offerBucket
}

type offerBucket struct {
	perMin int32
	l      *rate.Limiter
}

func newOfferLimiter(now func() time.Time) *offerLimiter {
	return &offerLimiter{now: now, m: map[string]*offerBucket{}}
}

// allow takes one offer from the rollout's budget. perMin <= 0 is no limit.
// The burst is a second's worth, so a minute never sees much more than
// perMin offers.
func (o *offerLimiter) allow(rolloutUID string, perMin int32) (time.Duration, bool) {
	if perMin <= 0 {
		return 0, true
	}
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.m[rolloutUID]
	if b == nil || b.perMin != perMin {
		burst := int(math.Ceil(float64(perMin) / 60))
		b = &offerBucket{perMin: perMin, l: rate.NewLimiter(rate.Limit(float64(perMin)/60), burst)}
		o.m[rolloutUID] = b
	}
	res := b.l.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now)
		return wait, false
	}
	return 0, true
}

// wouldAllow reports whether allow would let an offer through now,
// without taking a token (explanations only). With several replicas it
// sees this replica's share only.
func (o *offerLimiter) wouldAllow(rolloutUID string, perMin int32) bool {
	if perMin <= 0 {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.m[rolloutUID]
	return b == nil || b.perMin != perMin || b.l.TokensAt(o.now()) >= 1
}

// seenBatch collects last-seen times between flushes.
type seenBatch struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func newSeenBatch() *seenBatch { return &seenBatch{m: map[string]time.Time{}} }

func (s *seenBatch) add(id string, at time.Time) {
	s.mu.Lock()
	if at.After(s.m[id]) {
		s.m[id] = at
	}
	s.mu.Unlock()
}

func (s *seenBatch) take() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.m
	s.m = map[string]time.Time{}
	return out
}

func (s *seenBatch) putBack(b map[string]time.Time) {
	for id, at := range b {
		s.add(id, at)
	}
}

// conflictMarks remembers conflicts already written, so a device another
// rollout acts on does not cost a write on every check-in. Bounded: when
// full it is cleared, which only costs repeated idempotent writes.
type conflictMarks struct {
	mu  sync.Mutex
	max int
	m   map[string]struct{}
}

func newConflictMarks(max int) *conflictMarks {
	return &conflictMarks{max: max, m: map[string]struct{}{}}
}

// first reports whether key was not marked yet, and marks it.
func (c *conflictMarks) first(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		return false
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = struct{}{}
	return true
}
