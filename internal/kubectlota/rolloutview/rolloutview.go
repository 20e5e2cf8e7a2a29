// Package rolloutview derives what `kubectl ota` needs to know about a
// Rollout from its spec and status: which wave waits for approval, which
// gates are approved, whether a watch is over, and how far the failure
// threshold is. It follows the rules of internal/rollout (docs/rollouts.md)
// and reads only the object.
package rolloutview

import (
	"math"

	"k8s.io/apimachinery/pkg/api/meta"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Defaults of the API (the CRD fills them in; objects built in memory may
// lack them).
const (
	DefaultSuccessThreshold = "95%"
	DefaultFailureThreshold = "5%"
	DefaultMinFailures      = 3
)

// WaveIndex is the index of the spec wave called name, or -1.
func WaveIndex(ro *otav1.Rollout, name string) int {
	for i, w := range ro.Spec.Waves {
		if w.Name == name {
			return i
		}
	}
	return -1
}

// WaveNames lists the spec's waves in order.
func WaveNames(ro *otav1.Rollout) []string {
	names := make([]string, len(ro.Spec.Waves))
	for i, w := range ro.Spec.Waves {
		names[i] = w.Name
	}
	return names
}

// Status is the status of spec wave i (matched by name, as the controller
// does), or a zero status with the wave's name.
func Status(ro *otav1.Rollout, i int) otav1.WaveStatus {
	name := ro.Spec.Waves[i].Name
	for _, w := range ro.Status.Waves {
		if w.Name == name {
			return w
		}
	}
	return otav1.WaveStatus{Name: name}
}

// CurrentWave is status.currentWave clamped to the spec's waves.
func CurrentWave(ro *otav1.Rollout) int {
	return min(max(0, int(ro.Status.CurrentWave)), max(0, len(ro.Spec.Waves)-1))
}

// ApprovedIndex is the index of spec.approvedWave: every manual gate up to
// and including it is approved. -1 when none is.
func ApprovedIndex(ro *otav1.Rollout) int {
	if ro.Spec.ApprovedWave == "" {
		return -1
	}
	return WaveIndex(ro, ro.Spec.ApprovedWave)
}

// ManualGate reports whether wave i has a manual gate that counts: pause
// without a duration, on any wave but the last (a gate there is ignored).
func ManualGate(ro *otav1.Rollout, i int) bool {
	p := ro.Spec.Waves[i].Pause
	return i < len(ro.Spec.Waves)-1 && p != nil && p.Duration == nil
}

// Aborted reports whether the rollout stopped for good, or was told to.
func Aborted(ro *otav1.Rollout) bool {
	return ro.Spec.Abort || ro.Status.Phase == otav1.RolloutAborted
}

// WaitingForApproval is the wave whose manual gate holds the rollout: the
// current wave completed, its gate is manual and not approved yet.
func WaitingForApproval(ro *otav1.Rollout) (string, bool) {
	if len(ro.Spec.Waves) == 0 || Aborted(ro) || ro.Status.Phase == otav1.RolloutSucceeded {
		return "", false
	}
	i := CurrentWave(ro)
	if !ManualGate(ro, i) || Status(ro, i).CompletedAt == nil || ApprovedIndex(ro) >= i {
		return "", false
	}
	return ro.Spec.Waves[i].Name, true
}

// Continuous reports whether the rollout keeps serving devices that join
// after it succeeded.
func Continuous(ro *otav1.Rollout) bool {
	return ro.Spec.TargetSelection == otav1.TargetContinuous
}

// Finished reports whether a watch of the rollout is over: it aborted, or
// it succeeded and does not keep serving newcomers. A Continuous rollout
// that succeeded still changes as devices join, and can still be aborted.
func Finished(ro *otav1.Rollout) bool {
	switch ro.Status.Phase {
	case otav1.RolloutAborted:
		return true
	case otav1.RolloutSucceeded:
		return !Continuous(ro)
	}
	return false
}

// ReadyReason is the reason of the Ready condition, "" when there is none.
func ReadyReason(ro *otav1.Rollout) string {
	if c := meta.FindStatusCondition(ro.Status.Conditions, otav1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// Thresholds are the spec's thresholds as fractions, with the API's
// defaults for unset fields.
type Thresholds struct {
	Success, Failure         float64
	SuccessText, FailureText string
	MinFailures              int64
}

// ThresholdsOf reads the thresholds of the spec.
func ThresholdsOf(ro *otav1.Rollout) (Thresholds, error) {
	t := Thresholds{
		SuccessText: orDefault(ro.Spec.SuccessThreshold, DefaultSuccessThreshold),
		FailureText: orDefault(ro.Spec.FailureThreshold, DefaultFailureThreshold),
		MinFailures: int64(ro.Spec.MinFailures),
	}
	if t.MinFailures <= 0 {
		t.MinFailures = DefaultMinFailures
	}
	var err error
	if t.Success, err = rollout.ParsePercent(t.SuccessText); err != nil {
		return t, err
	}
	if t.Failure, err = rollout.ParsePercent(t.FailureText); err != nil {
		return t, err
	}
	return t, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Counts converts a wave's status to the rules' counters.
func Counts(w otav1.WaveStatus) rollout.Counts {
	return rollout.Counts{
		Targeted: w.Targeted, Offered: w.Offered, InProgress: w.InProgress, Succeeded: w.Succeeded,
		Failed: w.Failed, TimedOut: w.TimedOut, Canceled: w.Canceled, Skipped: w.Skipped,
		RolledBack: w.RolledBack, RollbackFailed: w.RollbackFailed, Offline: w.Offline,
	}
}

// FailuresToAbort is how many more failures (failed or timed out) among
// the devices offered so far make c cross the failure threshold: at least
// minFailures and more than the threshold's share of offered devices.
// ok is false when nothing was offered yet.
func FailuresToAbort(t Thresholds, c rollout.Counts) (more int64, ok bool) {
	if c.Offered == 0 {
		return 0, false
	}
	// The smallest count strictly above threshold × offered (with the
	// rules' tolerance for float error).
	above := int64(t.Failure*float64(c.Offered)+1e-9) + 1
	return max(0, max(t.MinFailures, above)-c.Failures()), true
}

// SuccessNeeded is how many of a wave's devices must succeed for it to
// complete: the threshold's share of its reachable devices, rounded up,
// and at least one while any device could take the release.
func SuccessNeeded(t Thresholds, c rollout.Counts) int64 {
	n := int64(math.Ceil(t.Success*float64(c.Reachable()) - 1e-9))
	if n == 0 && t.Success > 0 && c.Targeted > c.Skipped {
		n = 1
	}
	return n
}
