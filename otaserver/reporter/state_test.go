package reporter

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/cutoffs"
)

// sinceLog records where fleet syncs start reading devices.
type sinceLog struct {
	devicestore.Store
	mu    sync.Mutex
	after []int64
}

func (s *sinceLog) DevicesSince(ctx context.Context, after int64, limit int) ([]devicestore.DeviceRef, error) {
	s.mu.Lock()
	s.after = append(s.after, after)
	s.mu.Unlock()
	return s.Store.DevicesSince(ctx, after, limit)
}

// TestLeaderChangeResumes: a reporter that takes over (a new leader, or
// a restart) resumes the fleet sync from the cursor the last one stored
// instead of rescanning every device, serves the stored cutoffs at once,
// and a non-leader replica's cutoffs cache serves the same cutoffs.
func TestLeaderChangeResumes(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for i := range 10 {
		if _, _, err := store.Enroll(ctx, inNS(storetest.NewDevice(fmt.Sprintf("d%d", i), nil))); err != nil {
			t.Fatal(err)
		}
	}
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "uid-ro"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"},
			Waves: []otav1.Wave{{Name: "c", Devices: intstr.FromInt32(3)}, {Name: "all", Devices: intstr.FromString("100%")}}},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
	}
	rel := otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw"},
		Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0", Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}}}}
	cat := &fixedCatalog{s: catalog.Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, nil)}

	first := &sinceLog{Store: store}
	rep, err := New(Config{Catalog: cat, Store: first, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	rep.Cycle(ctx)
	want, ok := rep.Cutoffs("uid-ro")
	if !ok {
		t.Fatal("no cutoffs after the first cycle")
	}
	st, err := store.RolloutState(ctx, "uid-ro")
	if err != nil || st.FleetSeq != 10 || !slices.Equal(st.Cutoffs, want) {
		t.Fatalf("stored state %+v %v, want seq 10 and cutoffs %v", st, err, want)
	}

	// A non-leader replica reads the same cutoffs.
	if got, ok := cutoffs.New(store, cutoffs.Options{}).Cutoffs("uid-ro"); !ok || !slices.Equal(got, want) {
		t.Fatalf("replica cutoffs %v %v, want %v", got, ok, want)
	}

	// The next leader starts where the first stopped.
	if _, _, err := store.Enroll(ctx, inNS(storetest.NewDevice("d10", nil))); err != nil {
		t.Fatal(err)
	}
	next := &sinceLog{Store: store}
	rep2, err := New(Config{Catalog: cat, Store: next, Log: logr.Discard(), Now: func() time.Time { return time.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	rep2.Cycle(ctx)
	if len(next.after) == 0 || next.after[0] != 10 {
		t.Fatalf("new leader read devices after %v, want to resume after seq 10", next.after)
	}
	c, err := store.Counts(ctx, "uid-ro", time.Time{})
	if err != nil || c.FleetSize != 11 {
		t.Fatalf("fleet size %d %v, want 11", c.FleetSize, err)
	}
	if got, ok := rep2.Cutoffs("uid-ro"); !ok || len(got) != 2 {
		t.Fatalf("new leader cutoffs %v %v", got, ok)
	}
	if st, _ := store.RolloutState(ctx, "uid-ro"); st.FleetSeq != 11 {
		t.Fatalf("stored seq %d, want 11", st.FleetSeq)
	}
}

// inNS puts a test device in the tenant of the tests' rollouts.
func inNS(d devicestore.Device) devicestore.Device {
	d.Namespace = "ns"
	return d
}
