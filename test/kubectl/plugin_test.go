package kubectl

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/testenv"
)

// plugin builds kubectl-ota into a directory of its own and returns a
// runner of `kubectl ota ...` that finds it on PATH, as kubectl finds
// plugins.
func plugin(t *testing.T, ctx context.Context) func(args ...string) (string, error) {
	t.Helper()
	dir := filepath.Join(stack.Opts.Dir, "plugin-bin")
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "kubectl-ota"), "./cmd/kubectl-ota")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-ota: %v\n%s", err, out)
	}
	return func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"ota", "--kubeconfig", stack.CP.Kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// whyFleet makes namespace ns with devices (ID → version, all region=eu
// but d-us), a release 2.0.0 and a paused rollout "canary" over region=eu
// in the given waves (the us device is ns-us: IDs are global), and waits until its fleet is complete.
func whyFleet(t *testing.T, ctx context.Context, ns string, devs map[string]string, waves []otav1.Wave) client.ObjectKey {
	t.Helper()
	tok := tenantToken(t, ctx, ns)
	eu := map[string]string{"region": "eu"}
	for id, v := range devs {
		d := enroll(t, ctx, tok, id, v, eu)
		if id == "d-floor" {
			d.SecurityFloor = 5
			if r, _, err := d.Check(ctx, ""); err != nil || r.Status != 204 {
				t.Fatalf("check-in: %v %d", err, r.Status)
			}
		}
	}
	enroll(t, ctx, tok, ns+"-us", "1.0.0", map[string]string{"region": "us"})
	if _, err := stack.PublishRelease(ctx, ns, "sensor-2.0.0", "2.0.0", 1, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "sensor-2.0.0"}); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: "canary"}
	if _, err := stack.CreateRollout(ctx, ns, key.Name, "sensor-2.0.0", func(ro *otav1.Rollout) {
		ro.Spec.Selector = &metav1.LabelSelector{MatchLabels: eu}
		ro.Spec.Waves = waves
		ro.Spec.MaxOffersPerMinute = nil
		ro.Spec.Paused = true
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, int64(len(devs)), 0); err != nil {
		t.Fatal(err)
	}
	return key
}

// whyRunner runs `kubectl ota why` and checks its output has each want.
func whyRunner(t *testing.T, ota func(args ...string) (string, error), ns string) func(id string, want ...string) string {
	return func(id string, want ...string) string {
		t.Helper()
		out, err := ota("why", id, "-n", ns)
		if err != nil {
			t.Fatalf("kubectl ota why %s: %v\n%s", id, err, out)
		}
		for _, w := range want {
			// The plugin says "let go of the device (skipped): …".
			if !strings.Contains(out, w) {
				t.Errorf("kubectl ota why %s lacks %q:\n%s", id, w, out)
			}
		}
		return out
	}
}

// TestPluginWhyAndDevices: `kubectl ota why` explains, from the server's
// own decision, each reason a device of a real fleet is or is not offered
// an update; `kubectl ota devices` sums the fleet by version and state.
func TestPluginWhyAndDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ota := plugin(t, ctx)
	const ns = "why"
	key := whyFleet(t, ctx, ns, map[string]string{"d-current": "1.0.0", "d-newer": "3.0.0", "d-floor": "1.0.0", "d-factory": "factory"},
		[]otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}})
	why := whyRunner(t, ota, ns)
	t.Logf("paused:\n%s", why("d-current", "nothing to do", rollout.WaitNotOffering, "canary"))
	t.Logf("not selected:\n%s", why(ns+"-us", "canary", "selector"))

	patchRollout(t, ctx, key, func(ro *otav1.Rollout) { ro.Spec.Paused = false })
	waitRollout(t, ctx, key, func(ro *otav1.Rollout) bool { return ro.Status.Phase == otav1.RolloutProgressing })
	deadline := time.Now().Add(time.Minute)
	for out := why("d-current"); !strings.Contains(out, "to install release sensor-2.0.0"); out = why("d-current") {
		if time.Now().After(deadline) {
			t.Fatalf("never offered:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond) // the wave cutoffs are being computed
	}
	t.Logf("offered:\n%s", why("d-current", "to install release sensor-2.0.0", "canary"))
	t.Logf("newer:\n%s", why("d-newer", strings.TrimPrefix(rollout.ReasonSkipNotNewer, "skipped: ")))
	t.Logf("floor:\n%s", why("d-floor", strings.TrimPrefix(rollout.ReasonSkipBelowFloor, "skipped: ")))
	t.Logf("bad version:\n%s", why("d-factory", strings.TrimPrefix(rollout.ReasonSkipBadVersion, "skipped: ")))
	if out, err := ota("why", "d-newer", "-n", ns, "-o", "json"); err != nil {
		t.Errorf("why -o json: %v\n%s", err, out)
	} else {
		var d devicesv1.DeviceDecision
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.Kind != "DeviceDecision" || len(d.Rollouts) != 1 || d.Rollouts[0].Verdict != devicesv1.VerdictSkip {
			t.Errorf("why -o json: %v\n%s", err, out)
		}
	}
	if out, err := ota("why", "no-such-device", "-n", ns); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("why of an unknown device: %v\n%s", err, out)
	}

	out, err := ota("devices", "-n", ns)
	if err != nil {
		t.Fatalf("kubectl ota devices: %v\n%s", err, out)
	}
	t.Logf("kubectl ota devices:\n%s", out)
	for _, w := range []string{"5 devices", "1.0.0    3", "3.0.0    1", "factory  1"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl ota devices lacks %q", w)
		}
	}
}

// TestPluginWhyWaveNotOpen: with a first wave of one device, the others
// wait for the second wave, and why says so.
func TestPluginWhyWaveNotOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ota := plugin(t, ctx)
	const ns = "why-waves"
	ids := []string{"w-1", "w-2", "w-3"}
	key := whyFleet(t, ctx, ns, map[string]string{ids[0]: "1.0.0", ids[1]: "1.0.0", ids[2]: "1.0.0"},
		[]otav1.Wave{{Name: "first", Devices: intstr.FromInt32(1)}, {Name: "rest", Devices: intstr.FromString("100%")}})
	patchRollout(t, ctx, key, func(ro *otav1.Rollout) { ro.Spec.Paused = false })
	why := whyRunner(t, ota, ns)
	var offered, waiting int
	deadline := time.Now().Add(time.Minute)
	for offered+waiting != 3 && time.Now().Before(deadline) {
		offered, waiting = 0, 0
		for _, id := range ids {
			out := why(id)
			switch {
			case strings.Contains(out, "to install"):
				offered++
			case strings.Contains(out, rollout.WaitWaveNotOpen):
				waiting++
				if waiting == 1 {
					t.Logf("wave not open:\n%s", out)
				}
			}
		}
		time.Sleep(300 * time.Millisecond) // the wave cutoffs are being computed
	}
	if offered != 1 || waiting != 2 {
		t.Errorf("%d offered, %d waiting for their wave; want 1 and 2", offered, waiting)
	}
}

// TestPluginWhyThrottled: once a rollout's offer rate limit is spent, why
// says the next device waits for it (reading the decision takes no token).
func TestPluginWhyThrottled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ota := plugin(t, ctx)
	const ns = "why-rate"
	tok := tenantToken(t, ctx, ns)
	first := enroll(t, ctx, tok, "r-1", "1.0.0", map[string]string{"region": "eu"})
	enroll(t, ctx, tok, "r-2", "1.0.0", map[string]string{"region": "eu"})
	if _, err := stack.PublishRelease(ctx, ns, "sensor-2.0.0", "2.0.0", 1, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "sensor-2.0.0"}); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: "slow"}
	if _, err := stack.CreateRollout(ctx, ns, key.Name, "sensor-2.0.0", func(ro *otav1.Rollout) {
		ro.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
		ro.Spec.Waves = []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}
		one := int32(1)
		ro.Spec.MaxOffersPerMinute = &one
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, 2, 0); err != nil {
		t.Fatal(err)
	}
	why := whyRunner(t, ota, ns)
	deadline := time.Now().Add(time.Minute)
	for out := why("r-1"); !strings.Contains(out, "to install"); out = why("r-1") {
		if time.Now().After(deadline) {
			t.Fatalf("never offered:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Asking twice took no token: the first device still gets its offer.
	if r, _, err := first.Check(ctx, ""); err != nil || r.Status != 200 {
		t.Fatalf("the first device's check-in: %v %d %s", err, r.Status, r.Body)
	}
	t.Logf("throttled:\n%s", why("r-2", rollout.WaitThrottled))
}
