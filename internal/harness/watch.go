package harness

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// WaitRollout polls a rollout until done says so. onChange sees every
// distinct (phase, wave, progress, Ready reason) once, for narration.
func WaitRollout(ctx context.Context, c client.Client, key client.ObjectKey, onChange func(*otav1.Rollout), done func(*otav1.Rollout) (bool, error)) (*otav1.Rollout, error) {
	last := ""
	for {
		ro := &otav1.Rollout{}
		if err := c.Get(ctx, key, ro); err != nil {
			return nil, fmt.Errorf("get rollout %s: %w", key, err)
		}
		if onChange != nil {
			if sig := RolloutLine(ro); sig != last {
				last = sig
				onChange(ro)
			}
		}
		ok, err := done(ro)
		if err != nil || ok {
			return ro, err
		}
		select {
		case <-ctx.Done():
			return ro, fmt.Errorf("waiting for rollout %s (last: %s): %w", key, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// RolloutLine is a one-line summary of a rollout's state.
func RolloutLine(ro *otav1.Rollout) string {
	reason := ""
	if c := meta.FindStatusCondition(ro.Status.Conditions, otav1.ConditionReady); c != nil {
		reason = c.Reason
	}
	t := ro.Status.Totals()
	offered, inProgress, failed, rolledBack := t.Offered, t.InProgress, t.Failed+t.TimedOut, t.RolledBack
	line := fmt.Sprintf("%-11s wave %-10s succeeded %-9s offered %d, in progress %d, failed %d", ro.Status.Phase, ro.Status.WaveSummary, ro.Status.Progress, offered, inProgress, failed)
	if rolledBack > 0 {
		line += fmt.Sprintf(", rolled back %d", rolledBack)
	}
	if t.Skipped > 0 {
		line += fmt.Sprintf(", skipped %d", t.Skipped)
	}
	if t.Offline > 0 {
		line += fmt.Sprintf(", offline %d", t.Offline)
	}
	return line + "  (" + reason + ")"
}

// WaitReleaseReady waits until a release is Ready, failing early when it
// stalls.
func WaitReleaseReady(ctx context.Context, c client.Client, key client.ObjectKey) (*otav1.FirmwareRelease, error) {
	for {
		rel := &otav1.FirmwareRelease{}
		if err := c.Get(ctx, key, rel); err != nil {
			return nil, err
		}
		if meta.IsStatusConditionTrue(rel.Status.Conditions, otav1.ConditionReady) {
			return rel, nil
		}
		if s := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionStalled); s != nil && s.Status == "True" {
			return rel, fmt.Errorf("release %s stalled: %s: %s", key, s.Reason, s.Message)
		}
		select {
		case <-ctx.Done():
			return rel, fmt.Errorf("waiting for release %s: %w", key, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Totals sums a rollout's wave counters.
func Totals(ro *otav1.Rollout) otav1.WaveStatus { return ro.Status.Totals() }

// WaitFleet waits until the OTA server reports a fleet for the rollout that
// is want devices (want > 0), or that stayed the same non-zero size for
// `stable` (want == 0). It returns the size.
func WaitFleet(ctx context.Context, c client.Client, key client.ObjectKey, want int64, stable time.Duration) (int64, error) {
	var size int64
	since := time.Now()
	_, err := WaitRollout(ctx, c, key, nil, func(ro *otav1.Rollout) (bool, error) {
		var n int64
		if ro.Status.Fleet != nil {
			n = ro.Status.Fleet.Size
		}
		if n != size {
			size, since = n, time.Now()
		}
		if want > 0 {
			return n == want, nil
		}
		return n > 0 && time.Since(since) >= stable, nil
	})
	return size, err
}

// PatchRollout reads the rollout, applies mutate and sends the change as a
// merge patch (a spec edit, as kubectl patch makes one).
func PatchRollout(ctx context.Context, c client.Client, key client.ObjectKey, mutate func(*otav1.Rollout)) error {
	ro := &otav1.Rollout{}
	if err := c.Get(ctx, key, ro); err != nil {
		return err
	}
	p := client.MergeFrom(ro.DeepCopy())
	mutate(ro)
	if err := c.Patch(ctx, ro, p); err != nil {
		return fmt.Errorf("patch rollout %s: %w", key.Name, err)
	}
	return nil
}
