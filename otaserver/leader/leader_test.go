package leader

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/testenv"
)

// TestOneLeaderAtATime: of three replicas campaigning for one Lease on a
// real apiserver, exactly one runs the work at any time, and when the
// leader stops (its Lease released) another takes over within a few retry
// periods. A leader killed without releasing is replaced after the lease
// duration (client-go's rule); make reliability kills one.
func TestOneLeaderAtATime(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	var running, maxRunning atomic.Int32
	var mu sync.Mutex
	leaders := map[string]int{}
	cfg := func(id string) Config {
		return Config{Namespace: "default", Name: "otaserver-reporter", Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond, Log: logr.Discard()}
	}
	work := func(id string) func(ctx context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			for {
				if m := maxRunning.Load(); n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			mu.Lock()
			leaders[id]++
			mu.Unlock()
			<-ctx.Done()
			running.Add(-1)
		}
	}
	stops := map[string]context.CancelFunc{}
	done := make(chan struct{}, 3)
	for _, id := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithCancel(t.Context())
		stops[id] = cancel
		go func() {
			if err := Run(ctx, env.Config, cfg(id), work(id)); err != nil {
				t.Error(err)
			}
			done <- struct{}{}
		}()
	}
	current := func() string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			var ids []string
			for id, n := range leaders {
				if n > 0 {
					ids = append(ids, id)
				}
			}
			mu.Unlock()
			if running.Load() == 1 {
				for _, id := range ids {
					if stops[id] != nil {
						return id
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("no leader within 10s")
		return ""
	}
	first := current()
	// A clean stop releases the Lease: a successor leads within seconds.
	stops[first]()
	delete(stops, first)
	start := time.Now()
	<-done
	mu.Lock()
	leaders = map[string]int{}
	mu.Unlock()
	second := current()
	if second == first {
		t.Fatalf("the stopped replica %s leads again", first)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("takeover after a released Lease took %s", took)
	}
	for _, stop := range stops {
		stop()
	}
	<-done
	<-done
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("%d replicas ran the work at once", m)
	}
}
