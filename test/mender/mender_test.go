package mender

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/mendertest"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Log lines of mender-client 3.4 (app/auth.go, client/client_status.go).
const (
	logAuthorized = "successfully received new authorization data"
	logAuthFailed = "Failed to authorize with"
	logAborted    = "Status report rejected, deployment aborted at the backend"
	// The failure report of an aborted deployment was rejected too.
	logFailureRejected = "Failed to send status to server: fatal error: deployment was aborted"
)

func payload(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMenderClient: a signed update-module artifact published as a Mender
// release reaches a real mender-client through a one-wave rollout; the
// client authenticates with the tenant token, downloads, verifies the
// signature, installs (the module copies the payload), reports success,
// and the rollout succeeds with the device running the release.
func TestMenderClient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "mender-ok"
	tok := tenant(t, ctx, ns, nil)
	publishFactory(t, ctx, ns)
	signer := mendertest.GenerateKey(t, mendertest.KeyECDSA)
	data := payload(t, 16<<10)
	art, rel := publishMender(t, ctx, ns, "2.1.0", mendertest.ArtifactOptions{
		Name: "sensor-2.1.0", DeviceTypes: []string{deviceType}, Payload: data, PayloadName: "app.bin", SigningKey: signer,
	})
	want := otav1.MenderArtifact{Name: "sensor-2.1.0", DeviceTypes: []string{deviceType}, PayloadTypes: []string{mendertest.ModuleType}, Signed: true}
	if rel.Status.Artifact == nil {
		t.Fatalf("Ready release without status.artifact")
	}
	if got := rel.Status.Artifact.Mender; got == nil || got.Name != want.Name || !slices.Equal(got.DeviceTypes, want.DeviceTypes) ||
		!slices.Equal(got.PayloadTypes, want.PayloadTypes) || got.Signed != want.Signed {
		t.Fatalf("status.artifact.mender %+v, want %+v", got, want)
	}

	key := mendertest.GenerateKey(t, mendertest.KeyRSA)
	id := deviceID(t, key)
	d := startClient(t, mendertest.Options{
		TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: key.PEM, ArtifactVerifyKey: signer.PublicPEM,
	})
	ro := createRollout(t, ctx, ns, "sensor-2.1.0-eu", releaseName(ns, "2.1.0"), []string{"100%"}, nil)
	openWhen(t, ctx, ro, 1)
	final := waitRollout(t, ctx, ro, func(ro *otav1.Rollout) bool {
		return ro.Status.Phase == otav1.RolloutSucceeded && harness.Totals(ro).Succeeded == 1
	})
	tot := harness.Totals(final)
	if tot.Targeted != 1 || tot.Offered != 1 || tot.Failed != 0 || tot.InProgress != 0 || tot.Canceled != 0 || tot.Skipped != 0 {
		t.Fatalf("totals %+v, want 1 targeted, offered and succeeded", tot)
	}
	if len(final.Status.RecentFailures) != 0 {
		t.Fatalf("recent failures %+v", final.Status.RecentFailures)
	}

	installed, err := d.InstalledFile(art.PayloadName)
	if err != nil || !bytes.Equal(installed, data) {
		t.Fatalf("installed %s: %d bytes (%v), want the %d bytes packed", art.PayloadName, len(installed), err, len(data))
	}
	if got := d.ModuleCalls(); !slices.Contains(got, mendertest.ModuleType+" ArtifactCommit") {
		t.Fatalf("module calls %q lack ArtifactCommit", got)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if cur, err := d.CurrentArtifact(); err != nil || cur != "sensor-2.1.0" {
		t.Fatalf("current artifact %q (%v), want sensor-2.1.0", cur, err)
	}
	if n := strings.Count(d.Log(), logAuthorized); n < 1 {
		t.Fatalf("the client never logged %q", logAuthorized)
	}
	dev, err := readDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Version != "2.1.0" || dev.Type != deviceType || dev.Namespace != ns || dev.Enrollment != "factory" ||
		dev.Labels["region"] != "eu" || !strings.HasPrefix(dev.KEM, "mender/") {
		t.Fatalf("stored device %+v, want version 2.1.0, type %s, tenant %s through factory, labelled region=eu", dev, deviceType, ns)
	}
}

// TestMenderFailure: the update module fails ArtifactInstall; the device
// fails in the rollout with the reason taken from the deployment log the
// client uploads, and the failure threshold aborts the rollout.
func TestMenderFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "mender-fail"
	tok := tenant(t, ctx, ns, nil)
	publishFactory(t, ctx, ns)
	publishMender(t, ctx, ns, "2.1.0", mendertest.ArtifactOptions{
		Name: "sensor-2.1.0", DeviceTypes: []string{deviceType}, Type: mendertest.FailingModuleType,
	})
	key := mendertest.GenerateKey(t, mendertest.KeyEd25519)
	id := deviceID(t, key)
	d := startClient(t, mendertest.Options{TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: key.PEM})
	ro := createRollout(t, ctx, ns, "sensor-2.1.0-eu", releaseName(ns, "2.1.0"), []string{"100%"}, func(ro *otav1.Rollout) {
		ro.Spec.FailureThreshold = "0%"
		ro.Spec.MinFailures = 1
	})
	openWhen(t, ctx, ro, 1)
	final := waitRollout(t, ctx, ro, func(ro *otav1.Rollout) bool {
		return harness.Totals(ro).Failed == 1 && len(ro.Status.RecentFailures) == 1 && ro.Status.Phase == otav1.RolloutAborted
	})
	tot := harness.Totals(final)
	if tot.Targeted != 1 || tot.Offered != 1 || tot.Succeeded != 0 || tot.InProgress != 0 {
		t.Fatalf("totals %+v, want the one device failed", tot)
	}
	f := final.Status.RecentFailures[0]
	// The module's standard error, as the client logged it in the
	// deployment log.
	wantReason := mendertest.FailureMessage + ": sensor-2.1.0"
	if f.Device != id || !strings.HasPrefix(f.Reason, "mender: ") || !strings.Contains(f.Reason, wantReason) {
		t.Fatalf("recent failure %+v, want device %s with a reason containing %q", f, id, wantReason)
	}
	t.Logf("failure reason: %q", f.Reason)
	if slices.Contains(d.ModuleCalls(), mendertest.FailingModuleType+" ArtifactCommit") {
		t.Fatalf("the failed install was committed: %q", d.ModuleCalls())
	}
	// The client cannot roll back a module without rollback support.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if cur, err := d.CurrentArtifact(); err != nil || cur != "sensor-2.1.0_INCONSISTENT" {
		t.Fatalf("current artifact %q (%v), want sensor-2.1.0_INCONSISTENT", cur, err)
	}
}

// TestMenderAbort: the update module holds the client in its download
// (a gate file) while the rollout is aborted; once the gate opens, the
// client's next status report is answered 409, it stops without
// installing, and the device counts as canceled.
func TestMenderAbort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "mender-abort"
	tok := tenant(t, ctx, ns, nil)
	publishFactory(t, ctx, ns)
	art, _ := publishMender(t, ctx, ns, "2.1.0", mendertest.ArtifactOptions{Name: "sensor-2.1.0", DeviceTypes: []string{deviceType}})
	key := mendertest.GenerateKey(t, mendertest.KeyECDSA)
	id := deviceID(t, key)
	d := startClient(t, mendertest.Options{TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: key.PEM})
	if err := os.WriteFile(d.DownloadGate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro := createRollout(t, ctx, ns, "sensor-2.1.0-eu", releaseName(ns, "2.1.0"), []string{"100%"}, nil)
	openWhen(t, ctx, ro, 1)
	// The client reported "downloading" before it called the module.
	waitCalls(t, ctx, d, mendertest.ModuleType+" Download")
	waitRollout(t, ctx, ro, func(ro *otav1.Rollout) bool { return harness.Totals(ro).InProgress == 1 })

	patchRollout(t, ctx, ro, func(ro *otav1.Rollout) { ro.Spec.Abort = true })
	waitRollout(t, ctx, ro, func(ro *otav1.Rollout) bool { return ro.Status.Phase == otav1.RolloutAborted })
	// The OTA server follows spec.abort through its watch of Rollouts,
	// which the controller's phase does not wait for.
	time.Sleep(2 * time.Second)
	if err := os.Remove(d.DownloadGate); err != nil {
		t.Fatal(err)
	}
	// The client checks for an abort once it stored the artifact (a
	// "downloading" report) and reports the failure that follows: both
	// are answered 409.
	if err := d.WaitLog(logFailureRejected, time.Minute); err != nil {
		t.Fatal(err)
	}
	log := d.Log()
	if n := countIn(log, logAborted); n != 2 {
		t.Fatalf("%d status reports rejected as aborted, want 2 (the check after the download, the failure)", n)
	}
	if strings.Contains(log, "-> update-install") {
		t.Fatalf("the client went on to install after the abort")
	}
	wantCalls := []string{"Download", "SupportsRollback", "ArtifactFailure", "Cleanup"}
	for i, c := range wantCalls {
		wantCalls[i] = mendertest.ModuleType + " " + c
	}
	if calls := d.ModuleCalls(); !slices.Equal(calls, wantCalls) {
		t.Fatalf("module calls %q, want %q", calls, wantCalls)
	}
	if _, err := d.InstalledFile(art.PayloadName); err == nil {
		t.Fatalf("the payload was installed despite the abort")
	}
	final := waitRollout(t, ctx, ro, func(ro *otav1.Rollout) bool {
		return harness.Totals(ro).Canceled == 1 && harness.Totals(ro).InProgress == 0
	})
	tot := harness.Totals(final)
	if tot.Targeted != 1 || tot.Offered != 1 || tot.Succeeded != 0 || tot.Failed != 0 || tot.RolledBack != 0 {
		t.Fatalf("totals %+v, want the one device canceled", tot)
	}
	if len(final.Status.RecentFailures) != 0 {
		t.Fatalf("recent failures %+v after an abort", final.Status.RecentFailures)
	}
	rec, err := readRecord(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != string(rollout.StateCanceled) || rec.Reason != rollout.ReasonCancelAcknowledged {
		t.Fatalf("record %+v, want canceled with the cancel acknowledged", rec)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if cur, err := d.CurrentArtifact(); err != nil || cur != factoryArtifact {
		t.Fatalf("current artifact %q (%v), want %s", cur, err, factoryArtifact)
	}
	dev, err := readDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Version != "2.0.0" {
		t.Fatalf("stored device %+v, want it on 2.0.0 (its factory release)", dev)
	}
}

// TestMenderPreauthorized: an enrollment that does not auto-accept admits
// the client whose key it preauthorizes and no other: a second client with
// the same tenant token and another key keeps being refused.
func TestMenderPreauthorized(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "mender-preauth"
	accepted := mendertest.GenerateKey(t, mendertest.KeyECDSA)
	other := mendertest.GenerateKey(t, mendertest.KeyECDSA)
	tok := tenant(t, ctx, ns, func(m *otav1.MenderEnrollment) {
		m.AutoAccept = false
		m.PreauthorizedKeys = []string{string(accepted.PublicPEM)}
	})
	good := startClient(t, mendertest.Options{TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: accepted.PEM})
	bad := startClient(t, mendertest.Options{TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: other.PEM})
	start := time.Now()
	if err := good.WaitLog(logAuthorized, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	dev := waitDevice(t, ctx, deviceID(t, accepted), func(storedDevice) bool { return true })
	if dev.Namespace != ns || dev.Labels["region"] != "eu" {
		t.Fatalf("stored device %+v", dev)
	}
	// The refused client retries at its retry interval (1 s): at least
	// 10 s of refusals.
	if wait := 10*time.Second - time.Since(start); wait > 0 {
		time.Sleep(wait)
	}
	log := bad.Log()
	if strings.Contains(log, logAuthorized) {
		t.Fatalf("the client with a key not preauthorized got a token")
	}
	if n := countIn(log, logAuthFailed); n < 3 {
		t.Fatalf("the refused client logged %q %d times in 10 s, want at least 3 attempts", logAuthFailed, n)
	}
	if !strings.Contains(log, "401") {
		t.Fatalf("the refused client's log has no 401")
	}
	if d, err := readDevice(ctx, deviceID(t, other)); err == nil {
		t.Fatalf("the refused device is in the store: %+v", d)
	}
}

// TestMenderArtifactMismatch: a Mender release whose artifact is for
// another device type than compatibility.deviceTypes is refused.
func TestMenderArtifactMismatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "mender-mismatch"
	name := releaseName(ns, "3.0.0")
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	art := mendertest.WriteArtifact(t, mendertest.ArtifactOptions{Name: "other-3.0.0", DeviceTypes: []string{"other-board"}})
	if _, err := stack.PublishImage(ctx, ns, name, "3.0.0", 1, art.Bytes, func(r *otav1.FirmwareRelease) {
		r.Spec.Format = otav1.FormatMender
		r.Spec.Compatibility.DeviceTypes = []string{deviceType}
	}); err != nil {
		t.Fatal(err)
	}
	var rel otav1.FirmwareRelease
	for {
		if err := stack.CP.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rel); err != nil {
			t.Fatal(err)
		}
		if c := readyCondition(&rel); c != nil && c.Reason == otav1.ReasonMenderArtifactMismatch {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("release conditions %+v: no MenderArtifactMismatch (manager log: %s)", rel.Status.Conditions, stack.Manager.LogPath())
		case <-time.After(200 * time.Millisecond):
		}
	}
	c := readyCondition(&rel)
	if c.Status != "False" || !strings.Contains(c.Message, "other-board") || !strings.Contains(c.Message, deviceType) {
		t.Fatalf("Ready %+v, want False naming other-board and %s", c, deviceType)
	}
	if rel.Status.Artifact != nil && rel.Status.Artifact.Mender != nil {
		t.Fatalf("a refused artifact's header was recorded: %+v", rel.Status.Artifact.Mender)
	}
	if !meta.IsStatusConditionTrue(rel.Status.Conditions, otav1.ConditionStalled) {
		t.Fatalf("a permanent refusal is not Stalled: %+v", rel.Status.Conditions)
	}
}
