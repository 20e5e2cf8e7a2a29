// Command demo runs the whole otaflow mission on one machine: a real
// kube-apiserver and etcd, the manager and the OTA server as separate
// processes, a vendor signing firmware, and a simulated fleet.
//
//  1. sensor 2.1.0 ships to the EU fleet in three waves: a canary behind a
//     manual gate (approved with a spec patch, as a GitOps commit would), a
//     10% wave with a timed pause, then everyone. While the canary waits at
//     its gate, 20 more EU devices go offline (their simulator stops); with
//     offlineAfter shortened to 10s they leave their wave's success
//     denominator, and the last wave completes with "N offline" in its
//     WaveCompleted event. It must succeed, with every online device on
//     2.1.0.
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
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	eventsv1 "k8s.io/api/events/v1"
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
	away    int
	binDir  string
	keep    bool
}

func main() {
	var o options
	flag.IntVar(&o.devices, "devices", 500, "Simulated devices.")
	flag.IntVar(&o.away, "offline-devices", 20, "More EU devices, which go offline before the first rollout's second wave.")
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
	stack, err := harness.StartStack(ctx, harness.StackOptions{Dir: dir, BinDir: o.binDir, Tenants: true, DeviceAPI: true})
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
	// The tenant's own bootstrap credential: devices that enroll with it
	// belong to namespace fleet, and only its Rollouts select them.
	quota := int64(o.devices + o.away)
	token, err := stack.CreateDeviceEnrollment(ctx, ns, "factory", quota)
	if err != nil {
		return err
	}
	if err := waitEnrollmentReady(ctx, c, ns, "factory"); err != nil {
		return err
	}
	say("DeviceEnrollment fleet/factory is Ready: its token enrolls at most %d devices, into namespace %s only", quota, ns)
	if err := harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "deviceenrollments"); err != nil {
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
		Name: "fleet", Devices: o.devices, IDPrefix: "sensor-", Version: "2.0.0", Seed: 42, BootstrapToken: token,
		Labels:   "region=eu:80,region=us:20",
		Failures: []string{"--install-failure=0.5@version=2.2.0"},
	})
	if err != nil {
		return err
	}
	defer func() { _ = fleet.Stop(10 * time.Second) }()
	say("starting %d more EU devices on 2.0.0 in a separate simulator; they will go offline before the first rollout's second wave", o.away)
	away, err := stack.StartFleet(harness.FleetOptions{
		Name: "away", Devices: o.away, IDPrefix: "sensor-away-", Version: "2.0.0", Seed: 43, Labels: "region=eu:1", BootstrapToken: token,
	})
	if err != nil {
		return err
	}
	defer func() { _ = away.Stop(10 * time.Second) }()

	eu, offline, err := firstRollout(ctx, stack, ns, away, o.away)
	if err != nil {
		return err
	}
	if err := secondRollout(ctx, stack, ns); err != nil {
		return err
	}
	if err := showDevices(ctx, stack, o.binDir, ns, "sensor-2.2.0-eu"); err != nil {
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
	awaySum, err := away.Summary()
	if err != nil {
		return err
	}
	fmt.Println("firmware on the devices that went offline:")
	for v, n := range awaySum.ByVersion {
		fmt.Printf("  %-8s %d devices\n", v, n)
	}
	// The offline devices the canary had updated run 2.1.0; the others
	// never saw an offer and are the ones status counted offline.
	mainEU := eu - int64(o.away)
	if n := int64(sum.ByVersion["2.1.0"]); n != mainEU {
		return fmt.Errorf("%d devices run 2.1.0, want the %d online EU devices", n, mainEU)
	}
	if n := sum.ByVersion["2.0.0"]; int64(n) != int64(o.devices)-mainEU {
		return fmt.Errorf("%d devices run 2.0.0, want the %d US devices untouched", n, int64(o.devices)-mainEU)
	}
	if n := int64(awaySum.ByVersion["2.0.0"]); n != offline || awaySum.ByVersion["2.1.0"]+int(offline) != o.away {
		return fmt.Errorf("offline devices: %v; want %d on 2.0.0 (counted offline) and the rest on 2.1.0", awaySum.ByVersion, offline)
	}
	return nil
}

func waitReady(ctx context.Context, c client.Client, ns, name string) (*otav1.FirmwareRelease, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return harness.WaitReleaseReady(ctx, c, client.ObjectKey{Namespace: ns, Name: name})
}

// firstRollout ships 2.1.0 to the EU devices; the away fleet goes offline
// at the canary's gate. It returns how many EU devices there are and how
// many status counted offline.
func firstRollout(ctx context.Context, stack *harness.Stack, ns string, away *harness.Fleet, awayN int) (int64, int64, error) {
	c := stack.CP.Client
	say("applying the sample Rollout sensor-2.1.0-eu (paused until the fleet has enrolled; the 30m soak shortened to 10s, offlineAfter from 24h to 10s)")
	ro, err := stack.CreateRollout(ctx, ns, "sensor-2.1.0-eu", "sensor-2.1.0", func(r *otav1.Rollout) {
		r.Spec.Paused = true
		r.Spec.Waves[1].Pause.Duration = &metav1.Duration{Duration: 10 * time.Second}
		r.Spec.OfflineAfter = &metav1.Duration{Duration: 10 * time.Second}
	})
	if err != nil {
		return 0, 0, err
	}
	key := client.ObjectKeyFromObject(ro)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	size, err := harness.WaitFleet(wctx, c, key, 0, 3*time.Second)
	cancel()
	if err != nil {
		return 0, 0, err
	}
	say("%d EU devices enrolled and match the selector; resuming (spec.paused: false); new offers are limited to maxOffersPerMinute: 1000", size)
	if err := harness.PatchRollout(ctx, c, key, func(r *otav1.Rollout) { r.Spec.Paused = false }); err != nil {
		return 0, 0, err
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
				// Nothing is offered beyond the canary at its gate, and every
				// canary device succeeded: none of the away devices is
				// midway through an update when it goes silent.
				say("canary done; %d EU devices go offline now (their simulator stops): they will not be seen again", awayN)
				if err := away.Stop(10 * time.Second); err != nil {
					return false, err
				}
				say("approving the canary with a spec patch (approvedWave: canary), as a GitOps commit would")
				if err := harness.PatchRollout(ctx, c, key, func(r *otav1.Rollout) { r.Spec.ApprovedWave = "canary" }); err != nil {
					return false, err
				}
				approved = true
			}
			return r.Status.Phase == otav1.RolloutSucceeded, nil
		})
	if err != nil {
		return 0, 0, err
	}
	t := harness.Totals(got)
	say("sensor-2.1.0-eu Succeeded (the last wave met successThreshold 95%% of its reachable devices): %d/%d done, %d still finishing, %d offline", t.Succeeded, size, t.InProgress, t.Offline)
	last := got.Status.Waves[len(got.Status.Waves)-1]
	note, err := waveCompletedNote(ctx, c, key, last.Name)
	if err != nil {
		return 0, 0, err
	}
	say("event WaveCompleted: %s", note)
	if last.Offline == 0 || !strings.Contains(note, fmt.Sprintf("; %d offline,", last.Offline)) {
		return 0, 0, fmt.Errorf("the last wave completed without its %d offline devices left out of the denominator: %q", last.Offline, note)
	}
	say("wave %s: %d devices, %d of them offline (not seen for offlineAfter) and left out of the denominator: 95%% of the %d reachable ones had to succeed",
		last.Name, last.Targeted, last.Offline, last.Targeted-last.Offline-last.Skipped)
	// Late devices keep being served after Succeeded: wait for every
	// online one.
	got, err = harness.WaitRollout(wctx, c, key, nil, func(r *otav1.Rollout) (bool, error) {
		t := harness.Totals(r)
		return t.Succeeded+t.Offline == size || t.Failed+t.TimedOut > 0, nil
	})
	if err != nil {
		return 0, 0, err
	}
	t = harness.Totals(got)
	if t.Succeeded+t.Offline != size || t.Targeted != size || t.Offered != t.Succeeded || t.Offline == 0 ||
		t.Failed != 0 || t.TimedOut != 0 || t.InProgress != 0 || t.Skipped != 0 {
		return 0, 0, fmt.Errorf("rollout finished with unexpected counts: %+v (fleet %d)", t, size)
	}
	say("all %d online EU devices run 2.1.0; %d offline devices never came back", t.Succeeded, t.Offline)
	if err := harness.PrintTable(ctx, os.Stdout, stack.CP.Config, ns, "rollouts"); err != nil {
		return 0, 0, err
	}
	return size, t.Offline, nil
}

// waveCompletedNote is the WaveCompleted event of a rollout's wave, as
// `kubectl events --for rollout/NAME` shows it.
func waveCompletedNote(ctx context.Context, c client.Client, key client.ObjectKey, wave string) (string, error) {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(key.Namespace)); err != nil {
		return "", err
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "Rollout" && e.Regarding.Name == key.Name && e.Reason == "WaveCompleted" && strings.Contains(e.Note, " "+wave+" completed:") {
			return e.Note, nil
		}
	}
	return "", fmt.Errorf("no WaveCompleted event for wave %s of %s", wave, key.Name)
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

// showDevices shows the aborted rollout as kubectl ota status does, and
// its failed devices through the device API group with the real kubectl,
// and checks the device API agrees with the Rollout's status.
func showDevices(ctx context.Context, stack *harness.Stack, binDir, ns, rollout string) error {
	kubectl := func(args ...string) (string, error) {
		// Flags after the command: kubectl takes none before a plugin's name.
		cmd := exec.CommandContext(ctx, "kubectl", append(args, "-n", ns)...)
		// kubectl finds the kubectl-ota plugin on PATH.
		cmd.Env = append(os.Environ(), "KUBECONFIG="+stack.CP.Kubeconfig, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	say("kubectl ota status %s", rollout)
	out, err := kubectl("ota", "status", rollout)
	if err != nil {
		return err
	}
	fmt.Print(out)
	say("its failed devices, from the device API group (kubectl get devices --field-selector)")
	out, err = kubectl("get", "devices", "--field-selector", "status.rollout="+rollout+",status.state=failed", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Print(out)
	var ro otav1.Rollout
	if err := stack.CP.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: rollout}, &ro); err != nil {
		return err
	}
	rows := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if strings.TrimSpace(l) != "" {
			rows++
		}
	}
	if t := harness.Totals(&ro); int64(rows) != t.Failed {
		return fmt.Errorf("the device API lists %d failed devices, the Rollout's status counts %d", rows, t.Failed)
	}
	return nil
}

func readyReason(r *otav1.Rollout) string {
	if c := meta.FindStatusCondition(r.Status.Conditions, otav1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// waitEnrollmentReady waits for the manager to report the DeviceEnrollment
// Ready (its token Secret exists and follows the rules).
func waitEnrollmentReady(ctx context.Context, c client.Client, ns, name string) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var e otav1.DeviceEnrollment
		if err := c.Get(wctx, client.ObjectKey{Namespace: ns, Name: name}, &e); err == nil {
			if cond := meta.FindStatusCondition(e.Status.Conditions, otav1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("DeviceEnrollment %s/%s not Ready: %w", ns, name, wctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
