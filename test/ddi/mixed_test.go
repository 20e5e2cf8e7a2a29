package ddi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/ddiclient"
	"github.com/otaflow/otaflow/internal/harness"
)

// TestMixedFleet: native agents and DDI clients in one rollout of two
// waves, ranked, counted and judged together. Two DDI clients fail their
// install; the thresholds see them like native failures, and the status
// counts every device exactly.
func TestMixedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const ns, nNative, nDDI = "mixed", 30, 20
	ids := make([]string, nDDI)
	for i := range ids {
		ids[i] = fmt.Sprintf("ddi-%02d", i)
	}
	enroll, targets := tenant(t, ns, ids)
	if _, err := stack.PublishImage(ctx, ns, "sensor-2.1.0", "2.1.0", 1, harness.Image("2.1.0", 200_000), func(r *otav1.FirmwareRelease) {
		r.Spec.Format = otav1.FormatSWUpdate
		r.Spec.ArtifactFilename = "sensor-2.1.0.swu"
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "sensor-2.1.0"}); err != nil {
		t.Fatal(err)
	}
	fleet, err := stack.StartFleet(harness.FleetOptions{
		Name: "mixed-native", Devices: nNative, IDPrefix: "nat-", DeviceType: "sensor-v1", Version: "2.0.0",
		Labels: "region=eu", PollInterval: "1s", BootstrapToken: enroll, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fleet.Stop(10 * time.Second) }()

	var wg sync.WaitGroup
	steps := make([]ddiclient.Step, nDDI)
	errs := make(chan error, nDDI)
	for i, id := range ids {
		c := &ddiclient.Client{Base: stack.ServerURLs()[0], Tenant: ns, ID: id, Auth: "TargetToken " + targets[id], Version: "2.0.0"}
		if i < 2 {
			c.Fail = "ERROR: handler raw failed"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runClient(ctx, c, &steps[i])
		}()
	}

	if _, err := stack.CreateRollout(ctx, ns, "sensor-2.1.0-eu", "sensor-2.1.0", func(ro *otav1.Rollout) {
		ro.Spec.Waves = []otav1.Wave{{Name: "half", Devices: intstr.FromString("50%")}, {Name: "all", Devices: intstr.FromString("100%")}}
		// A 50% wave holds about half the fleet: its size follows the
		// ranks, which the rollout's UID seeds (19 of 50 happens). With
		// both failing clients in it, 80% lets it complete from 10
		// devices up (90% needed 20), so its size does not decide the
		// outcome.
		ro.Spec.SuccessThreshold = "80%"
		ro.Spec.FailureThreshold = "20%"
		ro.Spec.Paused = true // opened once every device is in the fleet
	}); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: "sensor-2.1.0-eu"}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, nNative+nDDI, 0); err != nil {
		t.Fatal(err)
	}
	var paused otav1.Rollout
	if err := stack.CP.Client.Get(ctx, key, &paused); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(paused.DeepCopy())
	paused.Spec.Paused = false
	if err := stack.CP.Client.Patch(ctx, &paused, patch); err != nil {
		t.Fatal(err)
	}
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "sensor-2.1.0-eu"},
		func(ro *otav1.Rollout) { t.Log(harness.RolloutLine(ro)) },
		func(ro *otav1.Rollout) (bool, error) {
			select { // a client that stopped would leave the wave waiting
			case err := <-errs:
				if err != nil {
					return false, err
				}
			default:
			}
			tot := harness.Totals(ro)
			if ro.Status.Phase == otav1.RolloutAborted {
				return false, errors.New("rollout aborted: " + ro.Status.AbortReason)
			}
			return ro.Status.Phase == otav1.RolloutSucceeded && tot.Succeeded+tot.Failed == nNative+nDDI, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	tot := harness.Totals(ro)
	if tot.Targeted != nNative+nDDI || tot.Succeeded != nNative+nDDI-2 || tot.Failed != 2 || tot.InProgress != 0 {
		t.Fatalf("totals %+v, want %d targeted, %d succeeded, 2 failed", tot, nNative+nDDI, nNative+nDDI-2)
	}
	if len(ro.Status.Waves) != 2 || ro.Status.Waves[0].Targeted+ro.Status.Waves[1].Targeted != nNative+nDDI {
		t.Fatalf("waves %+v", ro.Status.Waves)
	}
	failed := map[string]bool{}
	for _, f := range ro.Status.RecentFailures {
		failed[f.Device] = true
		if f.Reason != "ddi: ERROR: handler raw failed" {
			t.Errorf("failure reason %q", f.Reason)
		}
	}
	if !failed["ddi-00"] || !failed["ddi-01"] || len(failed) != 2 {
		t.Fatalf("recent failures %+v", ro.Status.RecentFailures)
	}
	for i, s := range steps {
		want := ddiclient.Installed
		if i < 2 {
			want = ddiclient.Failed
		}
		if s != want {
			t.Errorf("%s ended %s, want %s", ids[i], s, want)
		}
	}
	if err := fleet.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	sum, err := fleet.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if !sum.All(func(d harness.FleetDevice) bool { return d.Version == "2.1.0" }) {
		t.Fatalf("native fleet: %s", sum.Brief())
	}
}

// runClient cycles a DDI client at the pace the server asks until ctx
// ends, and records its last install outcome.
func runClient(ctx context.Context, c *ddiclient.Client, last *ddiclient.Step) error {
	for {
		step, root, err := c.Cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// A refusal (4xx but 429) or a bad answer is a defect; 5xx, 429
			// and no answer (a loaded machine) are retried at the next poll, as
			// the clients do.
			var se *ddiclient.StatusError
			var ue *url.Error
			retry := errors.As(err, &ue) || (errors.As(err, &se) && (se.Status >= 500 || se.Status == http.StatusTooManyRequests))
			if !retry {
				return fmt.Errorf("%s: %w", c.ID, err)
			}
		}
		if step == ddiclient.Installed || step == ddiclient.Failed {
			*last = step
		}
		sleep := time.Second
		if d, err := root.Sleep(); err == nil && step == ddiclient.Idle {
			sleep = d
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sleep):
		}
	}
}
