package ddi

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/swupdatetest"
)

// swuRollout publishes a signed .swu (payload written by SWUpdate's rawfile
// handler to out) as a SWUpdate-format release and rolls it out to the
// namespace's devices in one wave.
func swuRollout(t *testing.T, ctx context.Context, ns, version string, img swupdatetest.Image, mutate func(*otav1.Rollout)) {
	t.Helper()
	dir := t.TempDir()
	img.FileName = "sensor-" + version + ".swu"
	path := swupdatetest.BuildSWU(t, dir, img)
	swu, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	name := "sensor-" + version
	if _, err := stack.PublishImage(ctx, ns, name, version, 1, swu, func(r *otav1.FirmwareRelease) {
		r.Spec.Format = otav1.FormatSWUpdate
		r.Spec.ArtifactFilename = img.FileName
		r.Spec.Compatibility.DeviceTypes = []string{"sensor-v1"}
	}); err != nil {
		t.Fatal(err)
	}
	rel, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if a := rel.Status.Artifact; a.PlainSHA1 == "" || a.Filename != img.FileName {
		t.Fatalf("release artifact %+v: no SHA-1 or no .swu file name", a)
	}
	if _, err := stack.CreateRollout(ctx, ns, name+"-eu", name, func(ro *otav1.Rollout) {
		ro.Spec.Waves = []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}
		ro.Spec.MinFailures = 1
		// Opened once the device registered (openWhenRegistered): a
		// rollout whose fleet is still empty would succeed at once.
		ro.Spec.Paused = true
		if mutate != nil {
			mutate(ro)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// openWhenRegistered unpauses the rollout once its fleet holds the one
// SWUpdate device (registered by its first poll).
func openWhenRegistered(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	key := client.ObjectKey{Namespace: ns, Name: name}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, 1, 0); err != nil {
		t.Fatal(err)
	}
	var ro otav1.Rollout
	if err := stack.CP.Client.Get(ctx, key, &ro); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ro.DeepCopy())
	ro.Spec.Paused = false
	if err := stack.CP.Client.Patch(ctx, &ro, patch); err != nil {
		t.Fatal(err)
	}
}

// waitTotals waits until the rollout's status satisfies done.
func waitTotals(t *testing.T, ctx context.Context, ns, name string, done func(*otav1.Rollout) bool) *otav1.Rollout {
	t.Helper()
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: name},
		func(ro *otav1.Rollout) { t.Log(harness.RolloutLine(ro)) },
		func(ro *otav1.Rollout) (bool, error) { return done(ro), nil })
	if err != nil {
		t.Fatal(err)
	}
	return ro
}

func payload(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSWUpdate runs Debian's SWUpdate (suricatta, hawkBit mode) against
// the OTA server in a real rollout: it registers, sends its attributes,
// downloads the .swu, installs it with the rawfile handler into a
// temporary directory and, restarted as after a reboot with the update
// confirmed (-c 2), reports success, which Rollout status counts.
func TestSWUpdate(t *testing.T) {
	bin := swupdatetest.Binary(t)
	t.Logf("SWUpdate: %s", bin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns, id = "swu", "sw-0001"
	_, targets := tenant(t, ns, []string{id})
	dir := t.TempDir()
	signer := swupdatetest.NewSigner(t, dir)
	out := filepath.Join(dir, "rootfs", "payload.bin")
	data := payload(t, 300_000)
	swuRollout(t, ctx, ns, "2.0.0", swupdatetest.Image{Signer: signer, Payload: data, OutPath: out, Version: "2.0.0"}, nil)

	cfg := swupdatetest.Config{
		URL: stack.ServerURLs()[0], Tenant: ns, ControllerID: id, TargetToken: targets[id], Signer: signer,
		Identify: map[string]string{"version": "1.0.0"}, Dir: filepath.Join(dir, "boot1"),
	}
	p := startSWU(t, cfg)
	openWhenRegistered(t, ctx, ns, "sensor-2.0.0-eu")
	if err := waitFile(ctx, out, data); err != nil {
		t.Fatalf("%v\nSWUpdate log:\n%s", err, p.Log())
	}
	if err := p.WaitLog("Update successful", time.Minute); err != nil {
		t.Fatalf("%v\nSWUpdate log:\n%s", err, p.Log())
	}
	if !strings.Contains(p.Log(), "Software Update started") {
		t.Fatalf("the install was not logged as started:\n%s", p.Log())
	}
	waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool {
		tot := harness.Totals(ro)
		return tot.Targeted == 1 && tot.InProgress == 1 && tot.Succeeded == 0
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	// The reboot: the new image runs, and SWUpdate is started with the
	// update confirmed, as its bootloader state would say.
	cfg.Identify = map[string]string{"version": "2.0.0"}
	cfg.ConfirmState = 2
	cfg.Dir = filepath.Join(dir, "boot2")
	p = startSWU(t, cfg)
	ro := waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool {
		return ro.Status.Phase == otav1.RolloutSucceeded && harness.Totals(ro).Succeeded == 1
	})
	if tot := harness.Totals(ro); tot.Targeted != 1 || tot.Failed != 0 || tot.InProgress != 0 {
		t.Fatalf("totals %+v", tot)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	// SWUpdate logs "Software Update started" for every install it starts
	// (the first boot did).
	if n := strings.Count(p.Log(), "Software Update started"); n != 0 {
		t.Fatalf("SWUpdate installed again after the reboot (%d times):\n%s", n, p.Log())
	}
}

// TestSWUpdateFailure: an install that fails on the device (the payload's
// sha256 in sw-description is wrong) fails the device with SWUpdate's
// reason, and the failure threshold aborts the rollout as for native
// devices.
func TestSWUpdateFailure(t *testing.T) {
	swupdatetest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns, id = "swu-fail", "sw-0002"
	_, targets := tenant(t, ns, []string{id})
	dir := t.TempDir()
	signer := swupdatetest.NewSigner(t, dir)
	out := filepath.Join(dir, "rootfs", "payload.bin")
	swuRollout(t, ctx, ns, "2.0.0", swupdatetest.Image{Signer: signer, Payload: payload(t, 100_000), OutPath: out, Version: "2.0.0", WrongSHA256: true},
		func(ro *otav1.Rollout) { ro.Spec.FailureThreshold = "0%" })
	p := startSWU(t, swupdatetest.Config{
		URL: stack.ServerURLs()[0], Tenant: ns, ControllerID: id, TargetToken: targets[id], Signer: signer,
		Identify: map[string]string{"version": "1.0.0"}, Dir: filepath.Join(dir, "boot1"),
	})
	openWhenRegistered(t, ctx, ns, "sensor-2.0.0-eu")
	ro := waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool { return harness.Totals(ro).Failed == 1 })
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if len(ro.Status.RecentFailures) != 1 || ro.Status.RecentFailures[0].Device != id || !strings.HasPrefix(ro.Status.RecentFailures[0].Reason, "ddi: ") ||
		len(ro.Status.RecentFailures[0].Reason) < len("ddi: ")+5 {
		t.Fatalf("recent failures %+v", ro.Status.RecentFailures)
	}
	t.Logf("failure reason: %q", ro.Status.RecentFailures[0].Reason)
	waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool { return ro.Status.Phase == otav1.RolloutAborted })
}

// TestSWUpdateCancel: SWUpdate downloads slowly (-n limits its rate); the
// rollout is aborted meanwhile: SWUpdate sees cancelAction at its next
// poll, stops and acknowledges, and the device counts as canceled.
func TestSWUpdateCancel(t *testing.T) {
	swupdatetest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns, id = "swu-cancel", "sw-0003"
	_, targets := tenant(t, ns, []string{id})
	dir := t.TempDir()
	signer := swupdatetest.NewSigner(t, dir)
	out := filepath.Join(dir, "rootfs", "payload.bin")
	swuRollout(t, ctx, ns, "2.0.0", swupdatetest.Image{Signer: signer, Payload: payload(t, 2_000_000), OutPath: out, Version: "2.0.0"}, nil)
	p := startSWU(t, swupdatetest.Config{
		URL: stack.ServerURLs()[0], Tenant: ns, ControllerID: id, TargetToken: targets[id], Signer: signer,
		Identify: map[string]string{"version": "1.0.0"}, Dir: filepath.Join(dir, "boot1"),
		ExtraSuricattaArgs: []string{"-n", "20k"},
	})
	openWhenRegistered(t, ctx, ns, "sensor-2.0.0-eu")
	waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool { return harness.Totals(ro).InProgress == 1 })
	var ro otav1.Rollout
	if err := stack.CP.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sensor-2.0.0-eu"}, &ro); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ro.DeepCopy())
	ro.Spec.Abort = true
	if err := stack.CP.Client.Patch(ctx, &ro, patch); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLog("cancel", 2*time.Minute); err != nil {
		t.Fatalf("%v\nSWUpdate log:\n%s", err, p.Log())
	}
	final := waitTotals(t, ctx, ns, "sensor-2.0.0-eu", func(ro *otav1.Rollout) bool {
		return ro.Status.Phase == otav1.RolloutAborted && harness.Totals(ro).InProgress == 0
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	tot := harness.Totals(final)
	if tot.Succeeded != 0 || tot.Failed != 0 {
		t.Fatalf("totals %+v after a cancel", tot)
	}
	if b, err := os.ReadFile(out); err == nil && len(b) == 2_000_000 {
		t.Fatalf("the payload was installed whole despite the cancel\n%s", p.Log())
	}
}

// waitFile waits until path holds want.
func waitFile(ctx context.Context, path string, want []byte) error {
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the payload never appeared at " + path)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startSWU starts SWUpdate with its own directory.
func startSWU(t *testing.T, cfg swupdatetest.Config) *swupdatetest.Process {
	t.Helper()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return swupdatetest.Start(t, cfg)
}
