package reporter

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

type fixedCatalog struct{ s *catalog.Snapshot }

func (f *fixedCatalog) Snapshot() *catalog.Snapshot { return f.s }

// TestForgetOnlyWhenDeleted: a rollout missing from the catalog keeps its
// records, fleet and failure log while the API server still has it; only
// once the API server says it is gone is its data deleted.
func TestForgetOnlyWhenDeleted(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	scheme := runtime.NewScheme()
	if err := otav1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "uid-ro"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"},
			Waves: []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}},
	}
	rel := otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw"},
		Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0", Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}}}}
	k8s := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ro.DeepCopy()).Build()
	cat := &fixedCatalog{s: catalog.Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, nil)}
	rep, err := New(Config{Client: k8s, Catalog: cat, Store: store, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.PutRecord(ctx, devicestore.Record{RolloutUID: "uid-ro", DeviceID: "d1", State: rollout.StateFailed, Reason: "x"},
		&devicestore.Failure{DeviceID: "d1", Reason: "x", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	rep.Cycle(ctx) // the rollout is known: its fleet is synced

	cat.s = catalog.Build(nil, []otav1.FirmwareRelease{rel}, nil) // the catalog lost it
	rep.Cycle(ctx)
	if _, err := store.Record(ctx, "uid-ro", "d1"); err != nil {
		t.Fatalf("a rollout the API server still has lost its records: %v", err)
	}
	if f, _ := store.RecentFailures(ctx, "uid-ro", 10); len(f) != 1 {
		t.Fatalf("failure log lost: %+v", f)
	}

	if err := k8s.Delete(ctx, ro.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	rep.Cycle(ctx)
	if _, err := store.Record(ctx, "uid-ro", "d1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("deleted rollout's record still there: %v", err)
	}
}
