package reporter

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// failingStore fails the calls named in fail.
type failingStore struct {
	devicestore.Store
	fail map[string]bool
}

var errBroken = errors.New("broken on purpose")

func (s *failingStore) err(op string) error {
	if s.fail[op] {
		return errBroken
	}
	return nil
}

func (s *failingStore) DevicesSince(ctx context.Context, after int64, limit int) ([]devicestore.DeviceRef, error) {
	if err := s.err("DevicesSince"); err != nil {
		return nil, err
	}
	return s.Store.DevicesSince(ctx, after, limit)
}

func (s *failingStore) ExpireOffers(ctx context.Context, uid string, deadline, now time.Time) (int64, error) {
	if err := s.err("ExpireOffers"); err != nil {
		return 0, err
	}
	return s.Store.ExpireOffers(ctx, uid, deadline, now)
}

func (s *failingStore) Counts(ctx context.Context, uid string, offlineBefore time.Time) (devicestore.Counts, error) {
	if err := s.err("Counts"); err != nil {
		return devicestore.Counts{}, err
	}
	return s.Store.Counts(ctx, uid, offlineBefore)
}

func (s *failingStore) ForgetRollout(ctx context.Context, uid string) error {
	if err := s.err("ForgetRollout"); err != nil {
		return err
	}
	return s.Store.ForgetRollout(ctx, uid)
}

// TestMetricsStagesAndLastSuccess: each failing stage is counted under its
// own label and keeps the last-success time where it was; a clean cycle
// moves it; a failure forgetting a deleted rollout is counted without
// failing the cycle; the leader gauge is 1 only while Run runs.
func TestMetricsStagesAndLastSuccess(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store := &failingStore{Store: db, fail: map[string]bool{}}
	scheme := runtime.NewScheme()
	if err := otav1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	applyFails := false
	applies := 0
	k8s := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		SubResourceApply: func(context.Context, client.Client, string, runtime.ApplyConfiguration, ...client.SubResourceApplyOption) error {
			applies++
			if applyFails {
				return errBroken
			}
			return nil
		},
	}).Build()
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "uid-ro"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"},
			Waves: []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
	}
	rel := otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw"},
		Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0", Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}}}}
	cat := &fixedCatalog{s: catalog.Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, nil)}
	now := time.Unix(1_800_000_000, 0)
	reg := prometheus.NewPedanticRegistry()
	rep, err := New(Config{Client: k8s, Catalog: cat, Store: store, Log: logr.Discard(), Registerer: reg,
		Interval: 10 * time.Millisecond, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stages {
		if v := value(t, reg, "otaflow_ota_reporter_errors_total", s); v != 0 {
			t.Fatalf("errors{stage=%s} = %v before any cycle, want 0", s, v)
		}
	}
	if v := value(t, reg, "otaflow_ota_reporter_last_success_timestamp_seconds", ""); v != 0 {
		t.Fatalf("last success %v before any cycle, want 0", v)
	}

	rep.Cycle(ctx)
	if applies != 1 {
		t.Fatalf("%d status applies, want 1", applies)
	}
	success := float64(now.Unix())
	if v := value(t, reg, "otaflow_ota_reporter_last_success_timestamp_seconds", ""); v != success {
		t.Fatalf("last success %v, want %v", v, success)
	}

	// Each stage's failure in turn; the clock passes the heartbeat so that
	// every cycle applies status.
	counted := map[string]float64{}
	for _, tc := range []struct {
		stage string
		fail  func(bool)
	}{
		{StageFleetSync, func(on bool) { store.fail["DevicesSince"] = on }},
		{StageExpireOffers, func(on bool) { store.fail["ExpireOffers"] = on }},
		{StageCounts, func(on bool) { store.fail["Counts"] = on }},
		{StageStatusApply, func(on bool) { applyFails = on }},
	} {
		now = now.Add(time.Minute)
		tc.fail(true)
		rep.Cycle(ctx)
		tc.fail(false)
		counted[tc.stage]++
		for _, s := range stages {
			if v := value(t, reg, "otaflow_ota_reporter_errors_total", s); v != counted[s] {
				t.Errorf("after a %s failure: errors{stage=%s} = %v, want %v", tc.stage, s, v, counted[s])
			}
		}
		if v := value(t, reg, "otaflow_ota_reporter_last_success_timestamp_seconds", ""); v != success {
			t.Errorf("a %s failure moved the last success to %v (want %v)", tc.stage, v, success)
		}
	}

	now = now.Add(time.Minute)
	rep.Cycle(ctx)
	if v, want := value(t, reg, "otaflow_ota_reporter_last_success_timestamp_seconds", ""), float64(now.Unix()); v != want {
		t.Fatalf("a clean cycle left the last success at %v, want %v", v, want)
	}

	// The rollout is deleted (the fake API server never had it) and its
	// data cannot be forgotten: counted, the cycle still succeeds.
	cat.s = catalog.Build(nil, []otav1.FirmwareRelease{rel}, nil)
	store.fail["ForgetRollout"] = true
	now = now.Add(time.Minute)
	rep.Cycle(ctx)
	if v := value(t, reg, "otaflow_ota_reporter_errors_total", StageForget); v != 1 {
		t.Errorf("errors{stage=forget} = %v, want 1", v)
	}
	if v, want := value(t, reg, "otaflow_ota_reporter_last_success_timestamp_seconds", ""), float64(now.Unix()); v != want {
		t.Errorf("a forget failure failed the cycle: last success %v, want %v", v, want)
	}

	if v := value(t, reg, "otaflow_ota_reporter_leader", ""); v != 0 {
		t.Fatalf("leader gauge %v outside Run", v)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rep.Run(rctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for value(t, reg, "otaflow_ota_reporter_leader", "") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("leader gauge not 1 while Run runs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, "otaflow_ota_reporter_leader", ""); v != 0 {
		t.Fatalf("leader gauge %v after Run returned", v)
	}
}

// value is the value of a counter or gauge series in reg (the series whose
// stage label is stage, when given); -1 when it is missing.
func value(t *testing.T, reg prometheus.Gatherer, name, stage string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					got = l.GetValue()
				}
			}
			if got != stage {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
