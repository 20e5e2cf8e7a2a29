package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"slices"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Status is the part of Rollout.status the server owns.
type Status struct {
	Fleet          otav1.FleetStatus
	Waves          []otav1.WaveStatus // name and counters only
	RecentFailures []otav1.DeviceFailure
}

// BuildStatus turns store counts into the server's status fields: one entry
// per spec wave, in spec order, counted by rollout.Tally.
func BuildStatus(ro *catalog.Rollout, c devicestore.Counts, failures []devicestore.Failure, now time.Time) Status {
	s := Status{Fleet: otav1.FleetStatus{
		Size: c.FleetSize, Conflicts: c.Conflicts, ObservedWave: int32(ro.View.CurrentWave),
		ReportedAt: &metav1.Time{Time: now.UTC().Truncate(time.Second)},
	}}
	for i, name := range ro.WaveNames {
		var t rollout.Counts
		if wc := c.Waves[i]; wc != nil {
			t = rollout.Tally(wc.Targeted, wc.Offline, wc.States)
		}
		s.Waves = append(s.Waves, WaveStatus(name, t))
	}
	reasons := make([]string, 0, len(c.Skipped))
	for r := range c.Skipped {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		if len(s.Fleet.Skipped) == maxSkipReasons {
			break
		}
		s.Fleet.Skipped = append(s.Fleet.Skipped, otav1.ReasonCount{Reason: truncate(r, 256), Count: c.Skipped[r]})
	}
	for _, f := range failures {
		wave := ""
		if f.Wave >= 0 && f.Wave < len(ro.WaveNames) {
			wave = ro.WaveNames[f.Wave]
		}
		s.RecentFailures = append(s.RecentFailures, otav1.DeviceFailure{
			Device: f.DeviceID, Wave: wave, Reason: truncate(f.Reason, 256), Time: metav1.Time{Time: f.At.UTC().Truncate(time.Second)},
		})
	}
	return s
}

// maxSkipReasons bounds status.fleet.skipped (the CRD allows 16).
const maxSkipReasons = 16

// WaveStatus is the API form of a wave's counters.
func WaveStatus(name string, c rollout.Counts) otav1.WaveStatus {
	return otav1.WaveStatus{
		Name: name, Targeted: c.Targeted, Offered: c.Offered, InProgress: c.InProgress, Succeeded: c.Succeeded,
		Failed: c.Failed, TimedOut: c.TimedOut, RolledBack: c.RolledBack, RollbackFailed: c.RollbackFailed,
		Canceled: c.Canceled, Skipped: c.Skipped, Offline: c.Offline,
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// comparable is the status without reportedAt, to detect real changes.
func (s Status) comparable() string {
	c := s
	c.Fleet.ReportedAt = nil
	b, _ := json.Marshal(c)
	return string(b)
}

// Unstructured is the apply configuration: apiVersion, kind, name,
// namespace and only the server's fields, all of them every time (fields
// a manager stops sending are removed by server-side apply).
func (s Status) Unstructured(ro *catalog.Rollout) *unstructured.Unstructured {
	waves := make([]any, 0, len(s.Waves))
	for _, w := range s.Waves {
		waves = append(waves, map[string]any{
			"name": w.Name, "targeted": w.Targeted, "offered": w.Offered, "inProgress": w.InProgress,
			"succeeded": w.Succeeded, "failed": w.Failed, "timedOut": w.TimedOut, "rolledBack": w.RolledBack,
			"rollbackFailed": w.RollbackFailed, "canceled": w.Canceled, "skipped": w.Skipped, "offline": w.Offline,
		})
	}
	skipped := make([]any, 0, len(s.Fleet.Skipped))
	for _, r := range s.Fleet.Skipped {
		skipped = append(skipped, map[string]any{"reason": r.Reason, "count": r.Count})
	}
	failures := make([]any, 0, len(s.RecentFailures))
	for _, f := range s.RecentFailures {
		failures = append(failures, map[string]any{
			"device": f.Device, "wave": f.Wave, "reason": f.Reason, "time": f.Time.UTC().Format(time.RFC3339),
		})
	}
	fleet := map[string]any{
		"size": s.Fleet.Size, "conflicts": s.Fleet.Conflicts, "observedWave": int64(s.Fleet.ObservedWave),
		"skipped": skipped,
	}
	if s.Fleet.ReportedAt != nil {
		fleet["reportedAt"] = s.Fleet.ReportedAt.UTC().Format(time.RFC3339)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"status": map[string]any{"fleet": fleet, "waves": waves, "recentFailures": failures},
	}}
	u.SetAPIVersion(otav1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(ro.Namespace)
	u.SetName(ro.Name)
	return u
}

// report counts and applies the status if anything changed since the last
// successful apply, or if that apply is older than the heartbeat: a
// reportedAt that stops moving is how the controller tells a server that
// is not reporting from a fleet that is quiet.
func (r *Reporter) report(ctx context.Context, ro *catalog.Rollout, now time.Time) error {
	c, err := r.cfg.Store.Counts(ctx, ro.UID, now.Add(-ro.OfflineAfter))
	if err != nil {
		return err
	}
	f, err := r.cfg.Store.RecentFailures(ctx, ro.UID, MaxRecentFailures)
	if err != nil {
		return err
	}
	s := BuildStatus(ro, c, f, now)
	key := s.comparable()
	// Finished rollouts need no heartbeat: the controller no longer acts
	// on their counts, and old rollouts would otherwise cost writes forever.
	finished := ro.View.Phase == rollout.Succeeded || ro.View.Phase == rollout.Aborted
	if last, ok := r.last[ro.UID]; r.cfg.Client == nil || ok && last.key == key && (finished || now.Sub(last.at) < r.cfg.Heartbeat) {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, r.cfg.ApplyTimeout)
	defer cancel()
	start := time.Now()
	err = r.cfg.Client.Status().Apply(actx, client.ApplyConfigurationFromUnstructured(s.Unstructured(ro)),
		client.FieldOwner(FieldOwner), client.ForceOwnership)
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.patchTime.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("apply status of %s: %w", ro.Key(), err)
	}
	r.last[ro.UID] = applied{key: key, at: now}
	return nil
}
