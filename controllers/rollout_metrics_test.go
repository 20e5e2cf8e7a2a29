package controllers_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
)

// TestRolloutMetricsFromCache: the alerting series (phase, Stalled reason,
// per-wave failures against the threshold as the controller reads it, the
// open wave's deadline, the server's last report, skip reasons, the
// release version) are computed from the rollouts and releases the reader
// returns.
func TestRolloutMetricsFromCache(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: t0.Add(d)} }
	waves := []otav1.Wave{{Name: "canary", Devices: intstr.FromString("10%")}, {Name: "all", Devices: intstr.FromString("100%")}}
	progressing := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "fw-2"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"}, Waves: waves,
			FailureThreshold: "10%", MinFailures: 2, ProgressDeadline: &metav1.Duration{Duration: time.Hour}},
		Status: otav1.RolloutStatus{
			Phase: otav1.RolloutProgressing, CurrentWave: 1,
			Waves: []otav1.WaveStatus{
				{Name: "canary", Offered: 10, Failed: 1, TimedOut: 1, Succeeded: 8, StartedAt: at(0), CompletedAt: at(time.Hour)},
				{Name: "all", Offered: 20, Failed: 1, InProgress: 19, StartedAt: at(2 * time.Hour)},
			},
			Fleet: &otav1.FleetStatus{Size: 100, ReportedAt: at(3 * time.Hour), Skipped: []otav1.ReasonCount{
				{Reason: "skipped: the device runs the same or a newer version", Count: 3}}},
		},
	}
	stalled := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "fw-missing"},
		Spec:       otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "nowhere"}, Waves: waves},
		Status: otav1.RolloutStatus{
			Phase: otav1.RolloutProgressing,
			Conditions: []metav1.Condition{{Type: otav1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "WaveCannotSucceed",
				Message: "m", LastTransitionTime: metav1.Now()}},
		},
	}
	aborted := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "fw-3"},
		Spec:       otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw"}, Waves: waves},
		Status: otav1.RolloutStatus{
			Phase: otav1.RolloutAborted,
			Waves: []otav1.WaveStatus{{Name: "canary", Offered: 4, Failed: 4, StartedAt: at(0)}},
			Conditions: []metav1.Condition{{Type: otav1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "Aborted",
				Message: "m", LastTransitionTime: metav1.Now()}},
		},
	}
	release := &otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "fw"}, Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0"}}
	scheme := runtime.NewScheme()
	if err := otav1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(progressing, stalled, aborted, release).Build()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(controllers.NewRolloutCollector(reader))
	got := series(t, reg)

	want := map[string]float64{
		`otaflow_rollout_phase{namespace="fleet",phase="Progressing",rollout="fw-2"}`:                                                     1,
		`otaflow_rollout_phase{namespace="other",phase="Aborted",rollout="fw-3"}`:                                                         1,
		`otaflow_rollout_info{namespace="fleet",release="fw",rollout="fw-2",version="2.0.0"}`:                                             1,
		`otaflow_rollout_info{namespace="fleet",release="nowhere",rollout="fw-missing",version=""}`:                                       1,
		`otaflow_rollout_info{namespace="other",release="fw",rollout="fw-3",version=""}`:                                                  1, // another namespace's fw
		`otaflow_rollout_stalled{namespace="fleet",reason="",rollout="fw-2"}`:                                                             0,
		`otaflow_rollout_stalled{namespace="fleet",reason="WaveCannotSucceed",rollout="fw-missing"}`:                                      1,
		`otaflow_rollout_stalled{namespace="other",reason="Aborted",rollout="fw-3"}`:                                                      1,
		`otaflow_rollout_failure_threshold_ratio{namespace="fleet",rollout="fw-2"}`:                                                       0.1,
		`otaflow_rollout_failure_threshold_ratio{namespace="fleet",rollout="fw-missing"}`:                                                 0.05, // the default
		`otaflow_rollout_min_failures{namespace="fleet",rollout="fw-2"}`:                                                                  2,
		`otaflow_rollout_min_failures{namespace="fleet",rollout="fw-missing"}`:                                                            3,
		`otaflow_rollout_wave_failures{namespace="fleet",rollout="fw-2",wave="canary"}`:                                                   2,
		`otaflow_rollout_wave_failures{namespace="fleet",rollout="fw-2",wave="all"}`:                                                      1,
		`otaflow_rollout_wave_failure_ratio{namespace="fleet",rollout="fw-2",wave="canary"}`:                                              0.2,
		`otaflow_rollout_wave_failure_ratio{namespace="fleet",rollout="fw-2",wave="all"}`:                                                 0.05,
		`otaflow_rollout_wave_failure_ratio{namespace="other",rollout="fw-3",wave="canary"}`:                                              1,
		`otaflow_rollout_progress_deadline_timestamp_seconds{namespace="fleet",rollout="fw-2",wave="all"}`:                                float64(t0.Add(3 * time.Hour).Unix()),
		`otaflow_rollout_reported_timestamp_seconds{namespace="fleet",rollout="fw-2"}`:                                                    float64(t0.Add(3 * time.Hour).Unix()),
		`otaflow_rollout_skipped_devices{namespace="fleet",reason="skipped: the device runs the same or a newer version",rollout="fw-2"}`: 3,
		`otaflow_rollout_current_wave{namespace="fleet",rollout="fw-2"}`:                                                                  1,
		`otaflow_rollout_fleet_devices{namespace="fleet",rollout="fw-2"}`:                                                                 100,
		`otaflow_rollout_devices{namespace="fleet",rollout="fw-2",state="failed"}`:                                                        2,
		`otaflow_rollouts{phase="Progressing"}`:                                                                                           2,
		`otaflow_rollouts{phase="Aborted"}`:                                                                                               1,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	// Series that must not exist: a stalled rollout has no Stalled=0
	// series, only the open uncompleted wave of a Progressing rollout has
	// a deadline, waves that never started have no failure series, and a
	// wave without offers has no ratio.
	for _, prefix := range []string{
		`otaflow_rollout_stalled{namespace="fleet",reason="",rollout="fw-missing"}`,
		`otaflow_rollout_progress_deadline_timestamp_seconds{namespace="fleet",rollout="fw-2",wave="canary"}`,
		`otaflow_rollout_progress_deadline_timestamp_seconds{namespace="fleet",rollout="fw-missing"`,
		`otaflow_rollout_progress_deadline_timestamp_seconds{namespace="other"`,
		`otaflow_rollout_wave_failures{namespace="fleet",rollout="fw-missing"`,
		`otaflow_rollout_wave_failure_ratio{namespace="fleet",rollout="fw-missing"`,
		`otaflow_rollout_reported_timestamp_seconds{namespace="fleet",rollout="fw-missing"`,
	} {
		for k := range got {
			if strings.HasPrefix(k, prefix) {
				t.Errorf("unexpected series %s", k)
			}
		}
	}
}

// series are the gathered gauge series of reg as name{labels} → value,
// labels sorted by name.
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(labels)) {
				parts = append(parts, k+`="`+labels[k]+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(parts, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
