package otaclient

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func version(rv string, phase otav1.RolloutPhase) *otav1.Rollout {
	return &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "ro", Namespace: "ns", ResourceVersion: rv},
		Status:     otav1.RolloutStatus{Phase: phase},
	}
}

// scriptedAPI serves lists and watches from a script: each list returns the
// next listed version, each watch the next fake watcher.
type scriptedAPI struct {
	mu      sync.Mutex
	lists   []*otav1.Rollout
	watches []*watch.FakeWatcher
	listed  int
	watched int
}

func (a *scriptedAPI) lw() cache.ListerWatcher {
	return &cache.ListWatch{
		ListFunc: func(metav1.ListOptions) (runtime.Object, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			ro := a.lists[min(a.listed, len(a.lists)-1)]
			a.listed++
			return &otav1.RolloutList{ListMeta: metav1.ListMeta{ResourceVersion: ro.ResourceVersion}, Items: []otav1.Rollout{*ro}}, nil
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			// Streamed initial lists are the API server's business: make
			// the reflector list.
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				return nil, errors.New("streaming lists not served here")
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.watched >= len(a.watches) {
				return watch.NewFake(), nil // a watch that never sends
			}
			w := a.watches[a.watched]
			a.watched++
			return w, nil
		},
	}
}

func TestWatchRolloutRelistsOnExpiry(t *testing.T) {
	first, second := watch.NewFakeWithChanSize(4, false), watch.NewFakeWithChanSize(4, false)
	api := &scriptedAPI{
		lists:   []*otav1.Rollout{version("1", otav1.RolloutProgressing), version("4", otav1.RolloutProgressing)},
		watches: []*watch.FakeWatcher{first, second},
	}
	first.Modify(version("2", otav1.RolloutProgressing))
	first.Error(&metav1.Status{Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "too old resource version"})
	second.Modify(version("5", otav1.RolloutSucceeded))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var seen []string
	err := WatchRollout(ctx, api.lw(), "ns/ro", "1", func(ro *otav1.Rollout) (bool, error) {
		seen = append(seen, ro.ResourceVersion)
		return ro.Status.Phase == otav1.RolloutSucceeded, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 1 was shown before the watch; 4 came from the re-list after the
	// watch expired; 5 ended it.
	if want := []string{"2", "4", "5"}; !slices.Equal(seen, want) {
		t.Errorf("versions shown %v, want %v", seen, want)
	}
	if api.listed < 2 {
		t.Errorf("listed %d times; the expired watch should have re-listed", api.listed)
	}
}

func TestWatchRolloutContext(t *testing.T) {
	api := &scriptedAPI{lists: []*otav1.Rollout{version("1", otav1.RolloutProgressing)}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := WatchRollout(ctx, api.lw(), "ns/ro", "1", func(*otav1.Rollout) (bool, error) {
		t.Error("nothing changed, yet a version was shown")
		return false, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
}

func TestWatchRolloutDeleted(t *testing.T) {
	w := watch.NewFakeWithChanSize(1, false)
	api := &scriptedAPI{lists: []*otav1.Rollout{version("1", otav1.RolloutProgressing)}, watches: []*watch.FakeWatcher{w}}
	w.Delete(version("2", otav1.RolloutProgressing))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := WatchRollout(ctx, api.lw(), "ns/ro", "1", func(*otav1.Rollout) (bool, error) { return false, nil })
	if !errors.Is(err, ErrDeleted) {
		t.Fatalf("error %v, want ErrDeleted", err)
	}
}

func TestWatchRolloutMissing(t *testing.T) {
	api := &scriptedAPI{lists: []*otav1.Rollout{version("1", otav1.RolloutProgressing)}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := WatchRollout(ctx, api.lw(), "ns/other", "", func(*otav1.Rollout) (bool, error) { return false, nil })
	if !errors.Is(err, ErrDeleted) {
		t.Fatalf("error %v, want ErrDeleted for a rollout the list lacks", err)
	}
}
