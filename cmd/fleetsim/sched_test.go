package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestSchedulerDispatchesInDueOrder: whatever the order devices are
// scheduled in, each is handed out exactly once, earliest due first.
func TestSchedulerDispatchesInDueOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		offsets := rapid.SliceOfN(rapid.Int64Range(0, 1_000_000), 1, 200).Draw(t, "offsets")
		now := time.Now()
		base := now.Add(-2 * time.Millisecond) // every entry is due already
		s := newScheduler(len(offsets), func() time.Time { return now })
		for i, off := range offsets {
			s.add(i, base.Add(-time.Duration(off)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		work := make(chan int)
		go s.dispatch(ctx, work)
		var got []int
		for range offsets {
			got = append(got, <-work)
		}
		cancel()
		for range work { // dispatch closes work once ctx ended
		}
		seen := map[int]bool{}
		for k, dev := range got {
			if seen[dev] {
				t.Fatalf("device %d handed out twice: %v", dev, got)
			}
			seen[dev] = true
			// Earliest due first: the offsets (before base) decrease.
			if k > 0 && offsets[dev] > offsets[got[k-1]] {
				t.Fatalf("device %d (due %d ns before base) after device %d (due %d ns before base)", dev, offsets[dev], got[k-1], offsets[got[k-1]])
			}
		}
		if len(seen) != len(offsets) {
			t.Fatalf("handed out %d devices of %d", len(seen), len(offsets))
		}
	})
}

// TestSchedulerWakesForEarlierEntry: while the dispatcher waits for a
// device due later, one scheduled earlier is handed out first, on time.
func TestSchedulerWakesForEarlierEntry(t *testing.T) {
	s := newScheduler(2, time.Now)
	start := time.Now()
	s.add(0, start.Add(2*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := make(chan int)
	go s.dispatch(ctx, work)
	time.Sleep(20 * time.Millisecond) // the dispatcher now waits for device 0
	s.add(1, time.Now().Add(50*time.Millisecond))
	select {
	case dev := <-work:
		if dev != 1 {
			t.Fatalf("got device %d first, want 1", dev)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("device 1 came after %s, as if the dispatcher waited for device 0", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no device handed out")
	}
	if dev := <-work; dev != 0 {
		t.Fatalf("got device %d second, want 0", dev)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("device 0 came after %s, before it was due", took)
	}
}

// TestSchedulerLag: a due device that waits for a free worker shows as
// lag, once.
func TestSchedulerLag(t *testing.T) {
	s := newScheduler(3, time.Now)
	now := time.Now()
	for i := range 3 {
		s.add(i, now)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := make(chan int)
	go s.dispatch(ctx, work)
	var got []int
	got = append(got, <-work)
	time.Sleep(300 * time.Millisecond) // no worker free
	got = append(got, <-work, <-work)
	cancel()
	for range work { // closed once dispatch returned: every handover is recorded
	}
	if lag := s.takeLag(); lag < 300*time.Millisecond {
		t.Fatalf("lag %s, want at least 300ms", lag)
	}
	if lag := s.takeLag(); lag != 0 {
		t.Fatalf("lag %s after takeLag, want 0", lag)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("devices %v", got)
	}
	if lateNote(0) != "" || lateNote(999*time.Millisecond) != "" || lateNote(3*time.Second) != "steps late by up to 3s" {
		t.Fatalf("lateNote: %q %q", lateNote(999*time.Millisecond), lateNote(3*time.Second))
	}
}
