package otaserver

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"pgregory.net/rapid"
)

// TestDeviceLimiter checks the GCRA limiter against token-bucket
// semantics: burst requests at once, then one per interval, with the wait
// it reports.
func TestDeviceLimiter(t *testing.T) {
	type step struct {
		at   time.Duration // since start
		key  string
		ok   bool
		wait time.Duration
	}
	tests := []struct {
		name  string
		rate  rate.Limit
		burst int
		steps []step
	}{
		{"burst then refuse", 1, 3, []step{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0},
			{0, "a", false, time.Second},
			{500 * time.Millisecond, "a", false, 500 * time.Millisecond},
			{time.Second, "a", true, 0},
			{time.Second, "a", false, time.Second},
		}},
		{"devices are independent", 1, 1, []step{
			{0, "a", true, 0}, {0, "a", false, time.Second}, {0, "b", true, 0},
		}},
		{"idle refills to the burst, no more", 2, 2, []step{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", false, 500 * time.Millisecond},
			{time.Hour, "a", true, 0}, {time.Hour, "a", true, 0}, {time.Hour, "a", false, 500 * time.Millisecond},
		}},
		{"refused requests cost nothing", 1, 1, []step{
			{0, "a", true, 0},
			{100 * time.Millisecond, "a", false, 900 * time.Millisecond},
			{200 * time.Millisecond, "a", false, 800 * time.Millisecond},
			{time.Second, "a", true, 0},
		}},
		{"no limit", rate.Inf, 1, []step{{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			now := start
			l := newDeviceLimiter(tc.rate, tc.burst, func() time.Time { return now })
			for i, s := range tc.steps {
				now = start.Add(s.at)
				wait, ok := l.allow(s.key)
				if ok != s.ok || wait != s.wait {
					t.Fatalf("step %d (%v, %s): allow = %v, %v; want %v, %v", i, s.at, s.key, ok, wait, s.ok, s.wait)
				}
			}
		})
	}
}

// TestDeviceLimiterSweep: state is dropped once a bucket is full again,
// and a dropped device starts with a full bucket.
func TestDeviceLimiterSweep(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newDeviceLimiter(1, 2, func() time.Time { return now })
	for i := range 1000 {
		l.allow(fmt.Sprint("d", i))
	}
	l.allow("busy")
	l.allow("busy")
	if n := l.tracked(); n != 1001 {
		t.Fatalf("tracking %d devices, want 1001", n)
	}
	now = now.Add(1500 * time.Millisecond)
	l.sweep()
	if n := l.tracked(); n != 1 {
		t.Fatalf("after sweep tracking %d devices, want 1 (busy)", n)
	}
	if _, ok := l.allow("busy"); !ok {
		t.Fatal("busy refused after 1.5 s")
	}
	if _, ok := l.allow("busy"); ok {
		t.Fatal("busy got more than its budget")
	}
}

// tracked is how many devices hold state.
func (d *deviceLimiter) tracked() int {
	n := 0
	for i := range d.shards {
		d.shards[i].mu.Lock()
		n += len(d.shards[i].tat)
		d.shards[i].mu.Unlock()
	}
	return n
}

// TestDeviceLimiterBlocked: blocked never takes a token and agrees with what
// allow would answer at the same instant, over random schedules.
func TestDeviceLimiterBlocked(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := time.Unix(1000, 0)
		now := start
		l := newDeviceLimiter(rate.Limit(rapid.Float64Range(0.1, 10).Draw(t, "rate")), rapid.IntRange(1, 5).Draw(t, "burst"), func() time.Time { return now })
		for range rapid.IntRange(1, 40).Draw(t, "steps") {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(2*time.Second)).Draw(t, "gap")))
			key := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "key")
			bw, blocked := l.blocked(key)
			bw2, blocked2 := l.blocked(key)
			if blocked != blocked2 || bw != bw2 {
				t.Fatal("blocked changed the limiter")
			}
			aw, ok := l.allow(key)
			if ok == blocked || (blocked && aw != bw) {
				t.Fatalf("blocked = %v (wait %v), allow = %v (wait %v)", blocked, bw, ok, aw)
			}
		}
	})
}
