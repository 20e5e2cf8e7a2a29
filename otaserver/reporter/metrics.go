package reporter

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Stages of a reporting cycle, the stage label of
// otaflow_ota_reporter_errors_total.
const (
	StageFleetSync    = "fleet_sync"    // new devices into fleets, wave cutoffs, stored state
	StageExpireOffers = "expire_offers" // offers past deviceTimeout
	StageCounts       = "counts"        // counters and recent failures from the store
	StageStatusApply  = "status_apply"  // the server-side apply of Rollout status
	StageForget       = "forget"        // dropping a deleted rollout's data
	StagePrune        = "prune"         // pruning old report IDs
)

var stages = []string{StageFleetSync, StageExpireOffers, StageCounts, StageStatusApply, StageForget, StagePrune}

// metrics are the reporter's. Only the leader runs cycles, so on other
// replicas the cycle metrics stay at zero and otaflow_ota_reporter_leader
// is 0; alerts take the maximum over replicas.
type metrics struct {
	patchTime   *prometheus.HistogramVec
	cycleTime   prometheus.Histogram
	errs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	leading     prometheus.Gauge
}

func newMetrics() metrics {
	m := metrics{
		patchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "otaflow_ota_reporter_patch_seconds", Help: "Latency of Rollout status applies by result.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12),
		}, []string{"result"}),
		cycleTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otaflow_ota_reporter_cycle_seconds", Help: "Duration of one reporting cycle over all rollouts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_reporter_errors_total",
			Help: "Reporter errors by stage (fleet_sync, expire_offers, counts, status_apply, forget, prune); each is retried next cycle.",
		}, []string{"stage"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otaflow_ota_reporter_last_success_timestamp_seconds",
			Help: "When the last reporting cycle that reported every rollout without an error ended (Unix time); 0 until one did on this replica.",
		}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otaflow_ota_reporter_leader", Help: "1 while this replica runs the reporter (holds the reporter Lease), else 0.",
		}),
	}
	// Every stage starts at zero, so rate() sees the first error.
	for _, s := range stages {
		m.errs.WithLabelValues(s)
	}
	return m
}

func (m metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.patchTime, m.cycleTime, m.errs, m.lastSuccess, m.leading} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("reporter: register metrics: %w", err)
		}
	}
	return nil
}

// stageError is an error of one stage of a rollout's report.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func inStage(stage string, err error) error {
	if err == nil {
		return nil
	}
	return &stageError{stage: stage, err: err}
}

// stageOf is the stage err is tagged with, or fallback.
func stageOf(err error, fallback string) string {
	if se := (*stageError)(nil); errors.As(err, &se) {
		return se.stage
	}
	return fallback
}

// applyTagged tags the errors of status applies, so a failed report is
// told apart from a failed count: both come out of report.
type applyTagged struct{ client.Client }

func (c applyTagged) Status() client.SubResourceWriter {
	return applyTaggedWriter{c.Client.Status()}
}

type applyTaggedWriter struct{ client.SubResourceWriter }

func (w applyTaggedWriter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	return inStage(StageStatusApply, w.SubResourceWriter.Apply(ctx, obj, opts...))
}
