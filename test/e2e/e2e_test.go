// Package e2e runs otaflow as it runs in a cluster — a real kube-apiserver
// and etcd, the manager and the OTA server as separate processes, and a
// simulated fleet — and asserts exact counts in Rollout status.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
)

var stack *harness.Stack

func TestMain(m *testing.M) {
	code := harness.RunWithStack(m, "otaflow-e2e-", harness.StackOptions{}, &stack)
	removeMCUClient()
	os.Exit(code)
}

// shipRelease publishes a release, starts a fleet of n devices labelled
// ring=<ring>, and creates a paused rollout of the release to that ring,
// resumed once the whole fleet has enrolled.
func shipRelease(t *testing.T, ring string, n int, waves []otav1.Wave) (*harness.Fleet, client.ObjectKey) {
	t.Helper()
	ctx := context.Background()
	ns := "e2e-" + ring
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := stack.PublishRelease(ctx, ns, "fw-3.0.0", "3.0.0", 3, 300_000); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := harness.WaitReleaseReady(wctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "fw-3.0.0"}); err != nil {
		t.Fatal(err)
	}
	fleet, err := stack.StartFleet(harness.FleetOptions{
		Name: "fleet-" + ring, Devices: n, IDPrefix: ring + "-", Version: "2.9.0", Seed: 7,
		Labels: "ring=" + ring + ":1", SummaryInterval: 250 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Stop(10 * time.Second) })
	key, err := stack.StartRingRollout(wctx, ns, "fw-3.0.0-"+ring, "fw-3.0.0", ring, int64(n), func(r *otav1.Rollout) { r.Spec.Waves = waves })
	if err != nil {
		t.Fatal(err)
	}
	return fleet, key
}

func patchRollout(t *testing.T, key client.ObjectKey, mutate func(*otav1.Rollout)) {
	t.Helper()
	if err := harness.PatchRollout(context.Background(), stack.CP.Client, key, mutate); err != nil {
		t.Fatal(err)
	}
}

// assertFinished checks exact counts of a succeeded rollout of n devices and
// that every simulated device runs the release with its floor committed.
// The floor is committed after Succeeded, at each device's next check-in
// (the server answers "commit"), so it waits for that before stopping the
// fleet.
func assertFinished(t *testing.T, ro *otav1.Rollout, fleet *harness.Fleet, n int64) {
	t.Helper()
	tot := harness.Totals(ro)
	want := otav1.WaveStatus{Targeted: n, Offered: n, Succeeded: n}
	if tot != want {
		t.Errorf("totals %+v, want %+v", tot, want)
	}
	if ro.Status.Fleet == nil || ro.Status.Fleet.Size != n || ro.Status.Progress != fmt.Sprintf("%d/%d", n, n) {
		t.Errorf("fleet %+v progress %q, want %d devices", ro.Status.Fleet, ro.Status.Progress, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fleet.WaitSummary(ctx, func(s *harness.FleetSummary) bool {
		return s.All(func(d harness.FleetDevice) bool { return d.Version == "3.0.0" && d.SecurityFloor == 3 })
	}); err != nil {
		t.Errorf("floors never committed: %v", err) // the final summary below names the devices
	}
	if err := fleet.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	sum, err := fleet.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Devices != int(n) || sum.ByVersion["3.0.0"] != int(n) {
		t.Errorf("fleet summary: %d devices, by version %v; want all %d on 3.0.0", sum.Devices, sum.ByVersion, n)
	}
	for _, d := range sum.DevicesDetail {
		if d.Version != "3.0.0" || d.SecurityFloor != 3 || d.PendingFloor != 0 {
			t.Errorf("device %s left behind: version %s floor %d (pending %d) state %s %s", d.ID, d.Version, d.SecurityFloor, d.PendingFloor, d.LastState, d.LastReason)
		}
	}
}

// TestRolloutEndToEnd: canary behind a manual gate, approval by spec patch,
// a timed pause, then everyone; exact counts per wave.
func TestRolloutEndToEnd(t *testing.T) {
	const n = 30
	fleet, key := shipRelease(t, "gated", n, []otav1.Wave{
		{Name: "canary", Devices: intstr.FromInt32(3), Pause: &otav1.WavePause{}},
		{Name: "early", Devices: intstr.FromString("50%"), Pause: &otav1.WavePause{Duration: &metav1.Duration{Duration: 2 * time.Second}}},
		{Name: "all", Devices: intstr.FromString("100%")},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	approved := false
	var sawGate, sawTimedPause bool
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, key, func(r *otav1.Rollout) { t.Log(harness.RolloutLine(r)) },
		func(r *otav1.Rollout) (bool, error) {
			if r.Status.Phase == otav1.RolloutAborted {
				return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
			}
			if c := meta.FindStatusCondition(r.Status.Conditions, otav1.ConditionReady); c != nil && c.Reason == "AwaitingApproval" {
				sawGate = true
				// The gate holds: nothing beyond the canary was offered.
				if w := r.Status.Waves; len(w) == 3 && (w[1].Offered != 0 || w[2].Offered != 0) {
					return false, fmt.Errorf("devices offered beyond a closed gate: %+v", w)
				}
				if !approved {
					patchRollout(t, key, func(r *otav1.Rollout) { r.Spec.ApprovedWave = "canary" })
					approved = true
				}
			}
			if !approved && r.Status.CurrentWave > 0 {
				return false, fmt.Errorf("wave %d opened without approval", r.Status.CurrentWave)
			}
			if r.Status.Phase == otav1.RolloutPaused && r.Status.CurrentWave == 1 && r.Status.PausedUntil != nil {
				sawTimedPause = true
			}
			return r.Status.Phase == otav1.RolloutSucceeded, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if !sawGate || !sawTimedPause {
		t.Errorf("saw manual gate %v, timed pause %v; want both", sawGate, sawTimedPause)
	}
	canary := ro.Status.Waves[0]
	if canary.Targeted != 3 || canary.Succeeded != 3 || canary.Offered != 3 {
		t.Errorf("canary %+v, want exactly 3 devices", canary)
	}
	for _, w := range ro.Status.Waves {
		if w.Succeeded != w.Targeted || w.StartedAt == nil || w.CompletedAt == nil {
			t.Errorf("wave %+v not completed with all its devices", w)
		}
	}
	assertFinished(t, ro, fleet, n)
}

// TestOTAServerKilledMidRollout: the OTA server is SIGKILLed while devices
// are mid-update; after a restart the rollout completes with exact counts
// and no device is left behind.
func TestOTAServerKilledMidRollout(t *testing.T) {
	const n = 40
	fleet, key := shipRelease(t, "crash", n, []otav1.Wave{
		{Name: "canary", Devices: intstr.FromInt32(4)},
		{Name: "all", Devices: intstr.FromString("100%")},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Kill once the last wave is under way but far from done.
	if _, err := harness.WaitRollout(ctx, stack.CP.Client, key, func(r *otav1.Rollout) { t.Log(harness.RolloutLine(r)) },
		func(r *otav1.Rollout) (bool, error) {
			tot := harness.Totals(r)
			if r.Status.Phase == otav1.RolloutSucceeded {
				return false, fmt.Errorf("succeeded before the kill; counts %+v", tot)
			}
			return r.Status.CurrentWave == 1 && tot.Offered > 4 && tot.Succeeded < n-10, nil
		}); err != nil {
		t.Fatal(err)
	}
	t.Log("SIGKILL the OTA server")
	if err := stack.OTAServer.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // devices see connection errors and back off
	if err := stack.OTAServer.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := stack.WaitOTAServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log("OTA server restarted")
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, key, func(r *otav1.Rollout) { t.Log(harness.RolloutLine(r)) },
		func(r *otav1.Rollout) (bool, error) {
			if r.Status.Phase == otav1.RolloutAborted {
				return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
			}
			return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded == n, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	assertFinished(t, ro, fleet, n)
}
