package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// RolloutCollector exports rollout metrics computed from the informer cache
// at scrape time, so series of deleted rollouts disappear with them.
type RolloutCollector struct {
	reader client.Reader

	byPhase     *prometheus.Desc
	currentWave *prometheus.Desc
	devices     *prometheus.Desc
	fleet       *prometheus.Desc
}

// NewRolloutCollector returns a collector reading rollouts through reader
// (the manager's cached client).
func NewRolloutCollector(reader client.Reader) *RolloutCollector {
	return &RolloutCollector{
		reader:      reader,
		byPhase:     prometheus.NewDesc("otaflow_rollouts", "Rollouts by phase.", []string{"phase"}, nil),
		currentWave: prometheus.NewDesc("otaflow_rollout_current_wave", "Index (0-based) of the rollout's open wave.", []string{"namespace", "rollout"}, nil),
		devices:     prometheus.NewDesc("otaflow_rollout_devices", "Devices of a rollout by state, summed over waves.", []string{"namespace", "rollout", "state"}, nil),
		fleet:       prometheus.NewDesc("otaflow_rollout_fleet_devices", "Devices matching the rollout, as the OTA server last reported.", []string{"namespace", "rollout"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *RolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byPhase
	ch <- c.currentWave
	ch <- c.devices
	ch <- c.fleet
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
	phases := map[otav1.RolloutPhase]float64{
		otav1.RolloutPending: 0, otav1.RolloutProgressing: 0, otav1.RolloutPaused: 0,
		otav1.RolloutSucceeded: 0, otav1.RolloutAborted: 0,
	}
	for i := range list.Items {
		ro := &list.Items[i]
		phase := ro.Status.Phase
		if phase == "" {
			phase = otav1.RolloutPending
		}
		phases[phase]++
		ch <- prometheus.MustNewConstMetric(c.currentWave, prometheus.GaugeValue, float64(ro.Status.CurrentWave), ro.Namespace, ro.Name)
		sum := ro.Status.Totals()
		for state, v := range map[string]int64{
			"targeted": sum.Targeted, "offered": sum.Offered, "inProgress": sum.InProgress,
			"succeeded": sum.Succeeded, "failed": sum.Failed, "timedOut": sum.TimedOut,
			"rolledBack": sum.RolledBack, "rollbackFailed": sum.RollbackFailed, "canceled": sum.Canceled,
			"skipped": sum.Skipped, "offline": sum.Offline,
		} {
			ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(v), ro.Namespace, ro.Name, state)
		}
		if ro.Status.Fleet != nil {
			ch <- prometheus.MustNewConstMetric(c.fleet, prometheus.GaugeValue, float64(ro.Status.Fleet.Size), ro.Namespace, ro.Name)
		}
	}
	for phase, n := range phases {
		ch <- prometheus.MustNewConstMetric(c.byPhase, prometheus.GaugeValue, n, string(phase))
	}
}
