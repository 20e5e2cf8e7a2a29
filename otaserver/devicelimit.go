package otaserver

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// deviceLimiter limits each device's requests to a rate with a burst: a
// token bucket, kept as GCRA (one "theoretical arrival time" per device).
// A device's state is 8 bytes in a pointer-free map, and it is dropped as
// soon as its bucket would be full again (at most burst/rate after its
// last request), so a fleet polling every few minutes keeps only the
// devices of the last seconds here, not the whole fleet. Devices are keyed
// by a 64-bit hash of their ID: two devices colliding would share one
// budget, with odds of about n²/2⁶⁵.
type deviceLimiter struct {
	seed     maphash.Seed
	interval int64 // nanoseconds per token; 0 is no limit
	tol      int64 // (burst-1)·interval: how far ahead a device may run
	now      func() time.Time
	shards   [limiterShards]limiterShard
}

const limiterShards = 64

type limiterShard struct {
	mu  sync.Mutex
	tat map[uint64]int64 // unix nanoseconds
	_   [40]byte         // keep shards on their own cache lines
}

func newDeviceLimiter(r rate.Limit, burst int, now func() time.Time) *deviceLimiter {
	d := &deviceLimiter{seed: maphash.MakeSeed(), now: now}
	if r != rate.Inf && r > 0 {
		d.interval = int64(math.Ceil(float64(time.Second) / float64(r)))
		d.tol = int64(max(burst, 1)-1) * d.interval
	}
	for i := range d.shards {
		d.shards[i].tat = map[uint64]int64{}
	}
	return d
}

// allow takes a token for key, or says how long to wait for one.
func (d *deviceLimiter) allow(key string) (time.Duration, bool) {
	if d.interval == 0 {
		return 0, true
	}
	h := maphash.String(d.seed, key)
	now := d.now().UnixNano()
	sh := &d.shards[h%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat := max(sh.tat[h], now)
	if ahead := tat - now; ahead > d.tol {
		return time.Duration(ahead - d.tol), false
	}
	sh.tat[h] = tat + d.interval
	return 0, true
}

// blocked reports, without taking a token, whether key has none left and
// how long until it has one.
func (d *deviceLimiter) blocked(key string) (time.Duration, bool) {
	if d.interval == 0 {
		return 0, false
	}
	h := maphash.String(d.seed, key)
	now := d.now().UnixNano()
	sh := &d.shards[h%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// The test allow makes before taking a token.
	if ahead := max(sh.tat[h], now) - now; ahead > d.tol {
		return time.Duration(ahead - d.tol), true
	}
	return 0, false
}

// sweep forgets devices whose bucket is full again (the same as a new
// one), one shard at a time so requests never wait for the whole pass.
func (d *deviceLimiter) sweep() {
	for i := range d.shards {
		now := d.now().UnixNano()
		sh := &d.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.tat {
			if tat <= now {
				delete(sh.tat, k)
			}
		}
		sh.mu.Unlock()
	}
}
