package cutoffs

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
)

var _ otaserver.Cutoffs = (*Cache)(nil)

type fakeSource struct {
	mu    sync.Mutex
	st    map[string]devicestore.RolloutState
	err   error
	reads int
}

func (f *fakeSource) RolloutState(_ context.Context, uid string) (devicestore.RolloutState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return devicestore.RolloutState{}, f.err
	}
	st, ok := f.st[uid]
	if !ok {
		return st, devicestore.ErrNotFound
	}
	return st, nil
}

func (f *fakeSource) set(uid string, c []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st[uid] = devicestore.RolloutState{Cutoffs: c}
}

// TestCacheStaleness: cutoffs are read once per TTL, a change is served
// once the TTL passed and not before, errors keep the last cutoffs, and an
// unknown rollout answers ok=false.
func TestCacheStaleness(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{st: map[string]devicestore.RolloutState{}}
	c := New(src, Options{TTL: 2 * time.Second, Now: func() time.Time { return now }, Log: logr.Discard()})

	if _, ok := c.Cutoffs("r"); ok {
		t.Fatal("cutoffs for a rollout with no state")
	}
	src.set("r", []uint64{10, 20})
	if _, ok := c.Cutoffs("r"); ok {
		t.Fatal("a negative answer was not cached for the TTL")
	}
	now = now.Add(2 * time.Second)
	if got, ok := c.Cutoffs("r"); !ok || !slices.Equal(got, []uint64{10, 20}) {
		t.Fatalf("after the TTL: %v %v", got, ok)
	}
	reads := src.reads
	for range 100 {
		c.Cutoffs("r")
	}
	if src.reads != reads {
		t.Fatalf("%d reads within the TTL", src.reads-reads)
	}
	src.set("r", []uint64{15, 20})
	now = now.Add(1999 * time.Millisecond)
	if got, _ := c.Cutoffs("r"); !slices.Equal(got, []uint64{10, 20}) {
		t.Fatalf("changed before the TTL: %v", got)
	}
	now = now.Add(time.Millisecond)
	if got, _ := c.Cutoffs("r"); !slices.Equal(got, []uint64{15, 20}) {
		t.Fatalf("not changed after the TTL: %v", got)
	}
	src.err = errors.New("down")
	now = now.Add(time.Hour)
	if got, ok := c.Cutoffs("r"); !ok || !slices.Equal(got, []uint64{15, 20}) {
		t.Fatalf("store down: %v %v, want the last cutoffs", got, ok)
	}
	c.Forget(func(string) bool { return false })
	if _, ok := c.Cutoffs("r"); ok {
		t.Fatal("forgotten rollout still served with the store down")
	}
}
