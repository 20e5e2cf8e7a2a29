package reporter

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// TestFinishedFleetsFreeze: devices that enroll after a rollout succeeded
// with Snapshot targeting (or after it aborted) do not join its fleet; with
// Continuous targeting they do. Cutoffs are computed for a frozen fleet all
// the same, since its stragglers may still be offered the release.
func TestFinishedFleetsFreeze(t *testing.T) {
	for _, tc := range []struct {
		name  string
		phase otav1.RolloutPhase
		sel   otav1.TargetSelection
		grows bool
	}{
		{"progressing", otav1.RolloutProgressing, otav1.TargetSnapshot, true},
		{"succeeded, snapshot", otav1.RolloutSucceeded, otav1.TargetSnapshot, false},
		{"succeeded, continuous", otav1.RolloutSucceeded, otav1.TargetContinuous, true},
		{"aborted", otav1.RolloutAborted, otav1.TargetContinuous, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{Synchronous: "NORMAL"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = store.Close() })
			enroll := func(i int) {
				if _, _, err := store.Enroll(ctx, inNS(storetest.NewDevice(fmt.Sprintf("d%d", i), nil))); err != nil {
					t.Fatal(err)
				}
			}
			ro := otav1.Rollout{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "uid-ro"},
				Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"}, TargetSelection: tc.sel,
					Waves: []otav1.Wave{{Name: "c", Devices: intstr.FromInt32(2)}, {Name: "all", Devices: intstr.FromString("100%")}}},
				Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
			}
			rel := otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw"},
				Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0", Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}}}}
			cat := &fixedCatalog{s: catalog.Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, nil)}
			rep, err := New(Config{Catalog: cat, Store: store, Log: logr.Discard()})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				enroll(i)
			}
			rep.Cycle(ctx)
			ro.Status.Phase = tc.phase
			cat.s = catalog.Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, nil)
			for i := 3; i < 6; i++ {
				enroll(i)
			}
			rep.Cycle(ctx)
			c, err := store.Counts(ctx, "uid-ro", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int64{true: 6, false: 3}[tc.grows]; c.FleetSize != want {
				t.Fatalf("fleet size %d, want %d", c.FleetSize, want)
			}

			// After a restart a frozen fleet still gets its cutoffs.
			rep2, _ := New(Config{Catalog: cat, Store: store, Log: logr.Discard()})
			rep2.Cycle(ctx)
			if cut, ok := rep2.Cutoffs("uid-ro"); !ok || len(cut) != 2 {
				t.Fatalf("cutoffs after restart: %v %v", cut, ok)
			}
		})
	}
}
