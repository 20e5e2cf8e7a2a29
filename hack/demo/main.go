// Command demo runs the whole otaflow mission on one machine: a real
// kube-apiserver and etcd, the manager and the OTA server as separate
// processes, a vendor signing firmware, and a simulated fleet.
//
//  1. sensor 2.1.0 ships to the EU fleet in three waves: a canary behind a
//     manual gate (approved with a spec patch, as a GitOps commit would), a
//     10% wave with a timed pause, then everyone. It must succeed.
//  2. sensor 2.2.0 fails to install on half the devices: the canary trips
//     the failure threshold, the rollout aborts, and the devices that took
//     2.2.0 are rolled back to 2.1.0.
//
// It exits non-zero when any outcome differs from the expected one, and
// stops every process it started. Run it with `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv"
)

type options struct {
	devices int
	binDir  string
	keep    bool
}

func main() {
	var o options
	flag.IntVar(&o.devices, "devices", 500, "Simulated devices.")
	flag.StringVar(&o.binDir, "bin-dir", filepath.Join(testenv.Root(), "bin"), "Where manager, otaserver and fleetsim are.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the work directory (logs, kubeconfig) after a successful run.")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo passed: both rollouts ended as expected")
}

var start = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) (err error) {
	dir, err := os.MkdirTemp("", "otaflow-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil || o.keep {
			fmt.Printf("logs and kubeconfig kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	say("starting kube-apiserver and etcd, the otaflow manager and the OTA server (separate processes)")
	stack, err := harness.StartStack(ctx, harness.StackOptions{Dir: dir, BinDir: o.binDir})
	if err != nil {
		return err
	}
	defer stack.Stop()
	c := stack.CP.Client
	say("control plane at %s; OTA server at %s; KUBECONFIG=%s", stack.CP.Config.Host, stack.ServerURL, stack.CP.Kubeconfig)

	const ns = "fleet"
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		return err
	}
	say("the vendor signs sensor firmware 2.1.0 (1 MiB, ECDSA P-256, as cosign sign-blob does) and publishes it")
	if _, err := stack.PublishRelease(ctx, ns, "sensor-2.1.0", "2.1.0", 7, 1<<20); err != nil {
		return err
	}
	if _, err := waitReady(ctx, c, ns, "sensor-2.1.0"); err != nil {
		return err
	}
	say("FirmwareRelease sensor-2.1.0 is Ready: digest checked, signature verified, encrypted once")
	if err := harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "firmwarereleases"); err != nil {
		return err
	}

	say("starting %d simulated devices on 2.0.0 (80%% region=eu, 20%% region=us); half of them cannot install 2.2.0", o.devices)
	fleet, err := stack.StartFleet(harness.FleetOptions{
		Name: "fleet", Devices: o.devices, IDPrefix: "sensor-", Version: "2.0.0", Seed: 42,
		Labels:   "region=eu:80,region=us:20",
		Failures: []string{"--install-failure=0.5@version=2.2.0"},
	})
	if err != nil {
		return err
	}
	defer func() { _ = fleet.Stop(10 * time.Second) }()

	eu, err := firstRollout(ctx, stack, ns)
	if err != nil {
		return err
	}
	if err := secondRollout(ctx, stack, ns); err != nil {
		return err
	}

	say("stopping the fleet")
	if err := fleet.Stop(15 * time.Second); err != nil {
		return err
	}
	sum, err := fleet.Summary()
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("firmware across the fleet:")
	for v, n := range sum.ByVersion {
		fmt.Printf("  %-8s %d devices\n", v, n)
	}
	if n := sum.ByVersion["2.2.0"]; n != 0 {
		return fmt.Errorf("%d devices still run 2.2.0 after the rollback", n)
	}
	if n := int64(sum.ByVersion["2.1.0"]); n != eu {
		return fmt.Errorf("%d devices run 2.1.0, want the %d EU devices", n, eu)
	}
	if n := sum.ByVersion["2.0.0"]; int64(n) != int64(o.devices)-eu {
		return fmt.Errorf("%d devices run 2.0.0, want the %d US devices untouched", n, int64(o.devices)-eu)
	}
	return nil
}

func waitReady(ctx context.Context, c client.Client, ns, name string) (*otav1.FirmwareRelease, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return harness.WaitReleaseReady(ctx, c, client.ObjectKey{Namespace: ns, Name: name})
}

// firstRollout ships 2.1.0 to the EU devices and returns how many there are.
func firstRollout(ctx context.Context, stack *harness.Stack, ns string) (int64, error) {
	c := stack.CP.Client
	say("applying the sample Rollout sensor-2.1.0-eu (paused until the fleet has enrolled; the 30m soak shortened to 10s)")
	ro, err := stack.CreateRollout(ctx, ns, "sensor-2.1.0-eu", "sensor-2.1.0", func(r *otav1.Rollout) {
		r.Spec.Paused = true
		r.Spec.Waves[1].Pause.Duration = &metav1.Duration{Duration: 10 * time.Second}
	})
	if err != nil {
		return 0, err
	}
	key := client.ObjectKeyFromObject(ro)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	size, err := harness.WaitFleet(wctx, c, key, 0, 3*time.Second)
	cancel()
	if err != nil {
		return 0, err
	}
	say("%d EU devices enrolled and match the selector; resuming (spec.paused: false); new offers are limited to maxOffersPerMinute: 1000", size)
	if err := patch(ctx, c, key, func(r *otav1.Rollout) { r.Spec.Paused = false }); err != nil {
		return 0, err
	}

	approved := false
	wctx, cancel = context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	got, err := harness.WaitRollout(wctx, c, key, func(r *otav1.Rollout) { say("sensor-2.1.0-eu  %s", harness.RolloutLine(r)) },
		func(r *otav1.Rollout) (bool, error) {
			if r.Status.Phase == otav1.RolloutAborted {
				return false, fmt.Errorf("rollout aborted: %s", r.Status.AbortReason)
			}
			if !approved && readyReason(r) == "AwaitingApproval" {
				say("canary done; approving it with a spec patch (approvedWave: canary), as a GitOps commit would")
				if err := patch(ctx, c, key, func(r *otav1.Rollout) { r.Spec.ApprovedWave = "canary" }); err != nil {
					return false, err
				}
				approved = true
			}
			return r.Status.Phase == otav1.RolloutSucceeded, nil
		})
	if err != nil {
		return 0, err
	}
	t := harness.Totals(got)
	say("sensor-2.1.0-eu Succeeded (the last wave met successThreshold 95%%): %d/%d done, %d still finishing", t.Succeeded, size, t.InProgress)
	// Late devices keep being served after Succeeded: wait for every one.
	got, err = harness.WaitRollout(wctx, c, key, nil, func(r *otav1.Rollout) (bool, error) {
		t := harness.Totals(r)
		return t.Succeeded == size || t.Failed+t.TimedOut > 0, nil
	})
	if err != nil {
		return 0, err
	}
	t = harness.Totals(got)
	if t.Succeeded != size || t.Targeted != size || t.Offered != size || t.Failed != 0 || t.TimedOut != 0 || t.InProgress != 0 {
		return 0, fmt.Errorf("rollout finished with unexpected counts: %+v (fleet %d)", t, size)
	}
	say("all %d EU devices run 2.1.0", t.Succeeded)
	if err := harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "rollouts"); err != nil {
		return 0, err
	}
	return size, nil
}

// secondRollout ships 2.2.0, which fails on half the devices: the canary
// must trip the failure threshold and the rollout must roll back.
func secondRollout(ctx context.Context, stack *harness.Stack, ns string) error {
	c := stack.CP.Client
	// Same security version as 2.1.0: devices that take 2.2.0 may go back.
	// (A release that raised it could never be rolled back below the new
	// floor: the server would refuse to offer 2.1.0.)
	say("the vendor publishes sensor 2.2.0 (security version 7, like 2.1.0, so a rollback is allowed); it fails to install on half the devices")
	if _, err := stack.PublishRelease(ctx, ns, "sensor-2.2.0", "2.2.0", 7, 1<<20); err != nil {
		return err
	}
	if _, err := waitReady(ctx, c, ns, "sensor-2.2.0"); err != nil {
		return err
	}
	ro, err := stack.CreateRollout(ctx, ns, "sensor-2.2.0-eu", "sensor-2.2.0", func(r *otav1.Rollout) {
		r.Spec.Waves = []otav1.Wave{
			{Name: "canary", Devices: intstr.FromInt32(20), Pause: &otav1.WavePause{}},
			{Name: "all", Devices: intstr.FromString("100%")},
		}
		r.Spec.RollbackOnAbort = ptr.To(true)
	})
	if err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(ro)
	say("applied Rollout sensor-2.2.0-eu: a 20-device canary, failureThreshold 5%%, minFailures 3, rollbackOnAbort")
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	got, err := harness.WaitRollout(wctx, c, key, func(r *otav1.Rollout) { say("sensor-2.2.0-eu  %s", harness.RolloutLine(r)) },
		func(r *otav1.Rollout) (bool, error) {
			switch r.Status.Phase {
			case otav1.RolloutSucceeded:
				return false, errors.New("the failing release succeeded")
			case otav1.RolloutAborted:
				t := harness.Totals(r)
				// Rolled back: nobody still runs, installs or awaits a rollback of 2.2.0.
				return t.Succeeded == 0 && t.InProgress == 0, nil
			}
			if r.Status.CurrentWave > 0 {
				return false, errors.New("the failing canary was not stopped at its gate")
			}
			return false, nil
		})
	if err != nil {
		return err
	}
	if !strings.HasPrefix(got.Status.AbortReason, "FailureThreshold") || !got.Status.RollbackRequested {
		return fmt.Errorf("aborted for %q with rollbackRequested=%v; want the failure threshold and a rollback", got.Status.AbortReason, got.Status.RollbackRequested)
	}
	t := harness.Totals(got)
	say("sensor-2.2.0-eu Aborted: %s", got.Status.AbortReason)
	say("%d devices that had installed 2.2.0 were rolled back to 2.1.0; %d failed; none took 2.2.0 outside the canary", t.RolledBack, t.Failed+t.TimedOut)
	if len(got.Status.RecentFailures) == 0 {
		return errors.New("no recent failures recorded")
	}
	say("a recent failure, as Rollout.status shows it: %s in wave %s: %s", got.Status.RecentFailures[0].Device, got.Status.RecentFailures[0].Wave, got.Status.RecentFailures[0].Reason)
	fmt.Println()
	if err := harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "rollouts"); err != nil {
		return err
	}
	return harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "firmwarereleases")
}

func readyReason(r *otav1.Rollout) string {
	if c := meta.FindStatusCondition(r.Status.Conditions, otav1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func patch(ctx context.Context, c client.Client, key client.ObjectKey, mutate func(*otav1.Rollout)) error {
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
