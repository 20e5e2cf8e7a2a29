package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
)

// runP7 runs the real processes (control plane, manager, OTA server) and
// cmd/fleetsim's simulated devices through a 4-wave rollout, and times
// enrollment to Succeeded.
func runP7(ctx context.Context, c config, res *Results) error {
	row := Row{ID: "P7", Measure: fmt.Sprintf("%d simulated devices (cmd/fleetsim) through a 4-wave rollout, enroll → Succeeded, wall time", c.P7Devices),
		Target: "≤ 10 min", Command: fmt.Sprintf("make build && go run ./hack/bench --only=p7 --p7-devices=%d", c.P7Devices)}
	bin, err := filepath.Abs(c.BinDir)
	if err != nil {
		return err
	}
	for _, b := range []string{"manager", "otaserver", "fleetsim"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			row.Result, row.Notes = "not run", fmt.Sprintf("%s/%s is missing (make build)", c.BinDir, b)
			res.add(row)
			return nil
		}
	}
	dir, err := filepath.Abs(filepath.Join(c.WorkDir, "p7"))
	if err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	stack, err := harness.StartStack(ctx, harness.StackOptions{Dir: dir, BinDir: bin, ReportInterval: 2 * time.Second})
	if err != nil {
		return err
	}
	defer stack.Stop()
	const ns = "fleet"
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		return err
	}
	if _, err := stack.PublishRelease(ctx, ns, "fw-2", "2.0.0", 2, 64<<10); err != nil {
		return err
	}
	cl := stack.CP.Client
	if _, err := harness.WaitReleaseReady(ctx, cl, client.ObjectKey{Namespace: ns, Name: "fw-2"}); err != nil {
		return err
	}
	if _, err := stack.CreateRollout(ctx, ns, "fw-2-all", "fw-2", func(r *otav1.Rollout) {
		r.Spec.Waves = []otav1.Wave{
			{Name: "canary", Devices: intstr.FromString("1%")},
			{Name: "early", Devices: intstr.FromString("10%")},
			{Name: "half", Devices: intstr.FromString("50%")},
			{Name: "all", Devices: intstr.FromString("100%")},
		}
		r.Spec.MaxOffersPerMinute = nil
		r.Spec.Paused = true // opened once the whole fleet has enrolled
	}); err != nil {
		return err
	}
	key := client.ObjectKey{Namespace: ns, Name: "fw-2-all"}
	start := time.Now()
	fleet, err := stack.StartFleet(harness.FleetOptions{Name: "p7", Devices: c.P7Devices, IDPrefix: "sim-", Version: "1.0.0",
		Labels: "region=eu:100", Seed: 7, PollInterval: "20s"})
	if err != nil {
		return err
	}
	defer fleet.Stop(30 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, c.P7Timeout)
	defer cancel()
	if _, err := harness.WaitFleet(wctx, cl, key, int64(c.P7Devices), 3*time.Second); err != nil {
		row.Figure, row.Result, row.Notes = fmt.Sprintf("fleet not enrolled after %s", time.Since(start).Round(time.Second)), "FAIL", "error: "+err.Error()
		res.add(row)
		return nil
	}
	enrolled := time.Since(start)
	var ro otav1.Rollout
	if err := cl.Get(ctx, key, &ro); err != nil {
		return err
	}
	orig := ro.DeepCopy()
	ro.Spec.Paused = false
	if err := cl.Patch(ctx, &ro, client.MergeFrom(orig)); err != nil {
		return err
	}
	last := time.Time{}
	got, err := harness.WaitRollout(wctx, cl, key, func(r *otav1.Rollout) {
		if time.Since(last) > 15*time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "   %s  %s\n", time.Since(start).Round(time.Second), harness.RolloutLine(r))
		}
	}, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("rollout aborted: %s", r.Status.AbortReason)
		}
		return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded > 0, nil
	})
	took := time.Since(start)
	if err != nil {
		line := ""
		if got != nil {
			line = harness.RolloutLine(got)
		}
		row.Figure, row.Result = fmt.Sprintf("not finished after %s (%s)", took.Round(time.Second), line), "FAIL"
		row.Notes = "error: " + err.Error()
		res.add(row)
		return nil
	}
	t := harness.Totals(got)
	row.Figure = fmt.Sprintf("%s (%d succeeded; all enrolled after %s)", took.Round(time.Second), t.Succeeded, enrolled.Round(time.Second))
	row.Result = passIf(took <= 10*time.Minute)
	row.Notes = "processes as in a cluster (internal/harness: envtest control plane, manager, otaserver with TLS off), 64 KiB image, poll interval 20 s ± 20%, fleetsim's default --concurrency (1024 devices stepping at once), no pauses, no offer rate limit; the rollout is created paused and unpaused once status.fleet.size shows every device enrolled; time from starting fleetsim (enrollment) to phase Succeeded"
	res.add(row)
	return nil
}
