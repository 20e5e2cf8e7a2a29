package otaserver_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLastSeenResolution: a check-in within the catalog's seen resolution
// (a tenth of the shortest offlineAfter, at most a minute) of the stored
// last-seen time writes nothing; a later one moves it.
func TestLastSeenResolution(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("seen", true)
	flush := func() time.Time {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.core.Run(ctx); err != nil {
			t.Fatal(err)
		}
		dev, err := h.store.Device(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return dev.LastSeen
	}
	check := func() {
		t.Helper()
		if resp, _, err := d.Check(context.Background(), ""); err != nil || resp.Status >= 300 && resp.Status != 204 {
			t.Fatalf("check-in: %v %d", err, resp.Status)
		}
	}
	if res := h.cat.Snapshot().SeenResolution(); res != time.Minute {
		t.Fatalf("resolution %v with offlineAfter 24h, want 1m", res)
	}
	t0 := flush()
	h.advance(30 * time.Second)
	check()
	if got := flush(); !got.Equal(t0) {
		t.Fatalf("a check-in 30s after the stored last-seen wrote it: %v, want %v", got, t0)
	}
	h.advance(31 * time.Second)
	check()
	if got := flush(); !got.Equal(h.clock()) {
		t.Fatalf("a check-in 61s after the stored last-seen: stored %v, want %v", got, h.clock())
	}
	// A rollout with a short offlineAfter makes the resolution finer.
	h.rollout.Spec.OfflineAfter = &metav1.Duration{Duration: 20 * time.Second}
	h.rebuild()
	if res := h.cat.Snapshot().SeenResolution(); res != 2*time.Second {
		t.Fatalf("resolution %v with offlineAfter 20s, want 2s", res)
	}
	last := h.clock()
	h.advance(3 * time.Second)
	check()
	if got := flush(); !got.After(last) {
		t.Fatalf("a check-in 3s later with a 2s resolution was not written")
	}
}
