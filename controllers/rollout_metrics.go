package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

// RolloutCollector exports rollout metrics computed from the informer cache
// at scrape time, so series of deleted rollouts disappear with them. Label
// values are bounded: names of rollouts, releases and waves, phases and
// condition reasons of the controller, and skip reasons of the OTA server
// (at most 16 per rollout, from a fixed set); never device IDs or
// device-reported text.
type RolloutCollector struct {
	reader client.Reader

	byPhase     *prometheus.Desc
	currentWave *prometheus.Desc
	devices     *prometheus.Desc
	fleet       *prometheus.Desc

	info             *prometheus.Desc
	phase            *prometheus.Desc
	stalled          *prometheus.Desc
	deadline         *prometheus.Desc
	waveFailures     *prometheus.Desc
	waveFailureRatio *prometheus.Desc
	failureThreshold *prometheus.Desc
	minFailures      *prometheus.Desc
	reportedAt       *prometheus.Desc
	skipped          *prometheus.Desc
}

// NewRolloutCollector returns a collector reading rollouts and releases
// through reader (the manager's cached client).
func NewRolloutCollector(reader client.Reader) *RolloutCollector {
	ro := []string{"namespace", "rollout"}
	with := func(l ...string) []string { return append(append([]string(nil), ro...), l...) }
	return &RolloutCollector{
		reader:      reader,
		byPhase:     prometheus.NewDesc("otaflow_rollouts", "Rollouts by phase.", []string{"phase"}, nil),
		currentWave: prometheus.NewDesc("otaflow_rollout_current_wave", "Index (0-based) of the rollout's open wave.", ro, nil),
		devices:     prometheus.NewDesc("otaflow_rollout_devices", "Devices of a rollout by state, summed over waves.", with("state"), nil),
		fleet:       prometheus.NewDesc("otaflow_rollout_fleet_devices", "Devices matching the rollout, as the OTA server last reported.", ro, nil),

		info: prometheus.NewDesc("otaflow_rollout_info",
			"Always 1: the rollout's FirmwareRelease and its version (empty while the release is not found).", with("release", "version"), nil),
		phase: prometheus.NewDesc("otaflow_rollout_phase", "Always 1, labelled with the rollout's phase.", with("phase"), nil),
		stalled: prometheus.NewDesc("otaflow_rollout_stalled",
			"1 while the rollout's Stalled condition is True, labelled with its reason (Aborted, ProgressDeadlineExceeded, WaveCannotSucceed, ReleaseFailed, InvalidSpec); else 0 with reason \"\".",
			with("reason"), nil),
		deadline: prometheus.NewDesc("otaflow_rollout_progress_deadline_timestamp_seconds",
			"When the open wave of a Progressing rollout must complete (its start plus spec.progressDeadline; Unix time); absent once it completed.",
			with("wave"), nil),
		waveFailures: prometheus.NewDesc("otaflow_rollout_wave_failures",
			"Failed and timed-out devices of each started wave: what the failure threshold counts.", with("wave"), nil),
		waveFailureRatio: prometheus.NewDesc("otaflow_rollout_wave_failure_ratio",
			"Failed and timed-out devices over offered devices, per started wave with offers; the rollout aborts when it exceeds the failure threshold with at least minFailures failures.",
			with("wave"), nil),
		failureThreshold: prometheus.NewDesc("otaflow_rollout_failure_threshold_ratio",
			"spec.failureThreshold as a ratio (0.05 for 5%), as the controller reads it.", ro, nil),
		minFailures: prometheus.NewDesc("otaflow_rollout_min_failures",
			"spec.minFailures as the controller reads it: failures needed before the threshold can abort.", ro, nil),
		reportedAt: prometheus.NewDesc("otaflow_rollout_reported_timestamp_seconds",
			"When the OTA server last reported the rollout's counts (status.fleet.reportedAt; Unix time).", ro, nil),
		skipped: prometheus.NewDesc("otaflow_rollout_skipped_devices",
			"Skipped devices of a rollout by reason (status.fleet.skipped).", with("reason"), nil),
	}
}

// Describe implements prometheus.Collector.
func (c *RolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.byPhase, c.currentWave, c.devices, c.fleet, c.info, c.phase, c.stalled, c.deadline,
		c.waveFailures, c.waveFailureRatio, c.failureThreshold, c.minFailures, c.reportedAt, c.skipped,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *RolloutCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list otav1.RolloutList
	if err := c.reader.List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(c.byPhase, err)
		return
	}
	var releases otav1.FirmwareReleaseList
	if err := c.reader.List(ctx, &releases); err != nil {
		ch <- prometheus.NewInvalidMetric(c.info, err)
		return
	}
	versions := map[[2]string]string{}
	for _, rel := range releases.Items {
		versions[[2]string{rel.Namespace, rel.Name}] = rel.Spec.Version
	}
	phases := map[otav1.RolloutPhase]float64{
		otav1.RolloutPending: 0, otav1.RolloutProgressing: 0, otav1.RolloutPaused: 0,
		otav1.RolloutSucceeded: 0, otav1.RolloutAborted: 0,
	}
	now := time.Now()
	for i := range list.Items {
		ro := &list.Items[i]
		phase := ro.Status.Phase
		if phase == "" {
			phase = otav1.RolloutPending
		}
		phases[phase]++
		c.collectRollout(ch, ro, phase, versions[[2]string{ro.Namespace, ro.Spec.ReleaseRef.Name}], now)
	}
	for phase, n := range phases {
		ch <- prometheus.MustNewConstMetric(c.byPhase, prometheus.GaugeValue, n, string(phase))
	}
}

func (c *RolloutCollector) collectRollout(ch chan<- prometheus.Metric, ro *otav1.Rollout, phase otav1.RolloutPhase, version string, now time.Time) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ro.Namespace, ro.Name}, labels...)...)
	}
	st := &ro.Status
	gauge(c.currentWave, float64(st.CurrentWave))
	gauge(c.info, 1, ro.Spec.ReleaseRef.Name, version)
	gauge(c.phase, 1, string(phase))
	sum := st.Totals()
	for state, v := range map[string]int64{
		"targeted": sum.Targeted, "offered": sum.Offered, "inProgress": sum.InProgress,
		"succeeded": sum.Succeeded, "failed": sum.Failed, "timedOut": sum.TimedOut,
		"rolledBack": sum.RolledBack, "rollbackFailed": sum.RollbackFailed, "canceled": sum.Canceled,
		"skipped": sum.Skipped, "offline": sum.Offline,
	} {
		gauge(c.devices, float64(v), state)
	}
	if cond := meta.FindStatusCondition(st.Conditions, otav1.ConditionStalled); cond != nil && cond.Status == metav1.ConditionTrue {
		gauge(c.stalled, 1, cond.Reason)
	} else {
		gauge(c.stalled, 0, "")
	}
	if f := st.Fleet; f != nil {
		gauge(c.fleet, float64(f.Size))
		if f.ReportedAt != nil {
			gauge(c.reportedAt, float64(f.ReportedAt.UnixNano())/1e9)
		}
		for _, r := range f.Skipped {
			gauge(c.skipped, float64(r.Count), r.Reason)
		}
	}
	for _, w := range st.Waves {
		if w.StartedAt == nil {
			continue
		}
		failures := w.Failed + w.TimedOut
		gauge(c.waveFailures, float64(failures), w.Name)
		if w.Offered > 0 {
			gauge(c.waveFailureRatio, float64(failures)/float64(w.Offered), w.Name)
		}
	}
	// The thresholds and the deadline as the controller reads the spec
	// (defaults included); a spec it cannot plan has none.
	in, err := planInput(ro, rollout.Release{}, now)
	if err != nil {
		return
	}
	gauge(c.failureThreshold, in.FailureThreshold)
	gauge(c.minFailures, float64(in.MinFailures))
	if phase != otav1.RolloutProgressing || in.ProgressDeadline <= 0 || st.CurrentWave < 0 || int(st.CurrentWave) >= len(ro.Spec.Waves) {
		return
	}
	open := ro.Spec.Waves[st.CurrentWave].Name
	for _, w := range st.Waves {
		if w.Name == open && w.StartedAt != nil && w.CompletedAt == nil {
			gauge(c.deadline, float64(w.StartedAt.Add(in.ProgressDeadline).UnixNano())/1e9, open)
		}
	}
}
