package main

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Devices are not goroutines. A device waiting for its next step is one
// entry in a heap ordered by due time, and a fixed pool of workers runs
// the steps that are due (agent.Step, as agent.Run would). A goroutine per
// device costs its stack — grown by a step's HTTP, JSON and HPKE calls and
// kept while it sleeps — and lets every due device open its own
// connection: at 100,000 devices that was tens of kilobytes per device and
// more connections than the server serves at once (--max-connections) or
// the process may open, so requests waited in the server's accept queue
// until they timed out, the devices backed off, and enrollment collapsed.
// The pool bounds both: at most --concurrency steps at once, each over
// one connection (two while a download reports its progress).

// due is a device's next step.
type due struct {
	at  int64 // unix nanoseconds
	dev int32 // index in sim.devices
}

type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduler hands devices to workers when their step is due: one
// dispatcher goroutine owns the timer, workers take devices from its
// channel.
type scheduler struct {
	mu   sync.Mutex
	h    dueHeap
	wake chan struct{} // an entry earlier than the one waited for
	now  func() time.Time
	// lag is the longest a due step waited for a free worker since the
	// last takeLag: how far behind its configured pace the fleet runs.
	lag time.Duration
}

func newScheduler(n int, now func() time.Time) *scheduler {
	return &scheduler{h: make(dueHeap, 0, n), wake: make(chan struct{}, 1), now: now}
}

// add schedules device dev at t.
func (s *scheduler) add(dev int, t time.Time) {
	s.mu.Lock()
	heap.Push(&s.h, due{at: t.UnixNano(), dev: int32(dev)})
	first := s.h[0].dev == int32(dev)
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default: // the dispatcher looks at the heap's head anyway
		}
	}
}

// dispatch sends every device to work when its step is due, until ctx
// ends; then it closes work.
func (s *scheduler) dispatch(ctx context.Context, work chan<- int) {
	defer close(work)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		d, ok := s.next(ctx, t)
		if !ok {
			return
		}
		select {
		case work <- int(d.dev):
		case <-ctx.Done():
			return
		}
		lag := time.Duration(s.now().UnixNano() - d.at)
		s.mu.Lock()
		s.lag = max(s.lag, lag)
		s.mu.Unlock()
	}
}

// next blocks until the earliest entry is due and removes it, or returns
// false when ctx ends.
func (s *scheduler) next(ctx context.Context, t *time.Timer) (due, bool) {
	for {
		var timer <-chan time.Time
		s.mu.Lock()
		if len(s.h) > 0 {
			wait := time.Duration(s.h[0].at - s.now().UnixNano())
			if wait <= 0 {
				d := heap.Pop(&s.h).(due)
				s.mu.Unlock()
				return d, true
			}
			t.Reset(wait)
			timer = t.C
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Stop()
			return due{}, false
		case <-s.wake:
			t.Stop()
		case <-timer:
		}
	}
}

// takeLag returns the longest wait of a due step for a free worker since
// the last call, and starts over.
func (s *scheduler) takeLag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lag
	s.lag = 0
	return l
}
