package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/harness"
)

const (
	mcuImageSize = 300_000 // 19 chunks of 16 KiB
	mcuVersion   = "3.0.0"
	// The cut device's first blob answer stops inside chunk mcuCutChunk.
	mcuCutChunk = 5
	// The tampered device's blob has one byte flipped inside chunk 3.
	mcuTamperChunk = 3
)

// TestMCUClient runs the C device library's POSIX client
// (mcu/port/posix, otaflow-mcu-client) against the real OTA server: three
// devices take a release through a Rollout that Succeeds with exact
// counts, and each installs exactly the image (one enrolling again after
// 401 answers to a check and to a blob request; one after its
// download was cut inside a chunk, resuming at the chunk boundary with
// Range and If-Range; one, with a P-256 device key, sent by a 307 to
// "object storage" on another origin, which it follows without its bearer
// token); two more, in another Rollout, refuse their update:
// one whose blob was tampered with in transit (chunk-auth) and one
// provisioned with another vendor key (vendor-signature). Both report
// failed and the Rollout counts them, with their reasons.
func TestMCUClient(t *testing.T) {
	start := time.Now()
	buildMCUClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const good, bad = "e2e-mcu", "e2e-mcu-bad"
	for _, ns := range []string{good, bad} {
		if err := stack.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if _, err := stack.PublishRelease(ctx, ns, "fw-"+mcuVersion, mcuVersion, 3, mcuImageSize); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{good, bad} {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		_, err := harness.WaitReleaseReady(wctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "fw-" + mcuVersion})
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	// The cut lands inside a chunk, not on a boundary.
	cutAt := chunkOffset(mcuCutChunk) + 7001
	tamperAt := chunkOffset(mcuTamperChunk) + 1234
	device := func(id, ring, exitAfter, vendorKey string, o proxyOptions) *mcuDevice {
		kem := "x25519"
		if strings.HasSuffix(id, "-p256") {
			kem = "p256"
		}
		return startMCUDevice(t, stack, mcuDeviceOptions{
			ID: id, Ring: ring, ExitAfter: exitAfter, VendorKeyFile: vendorKey, KEM: kem, MaxRuntime: 240, Proxy: o,
		})
	}
	devices := []*mcuDevice{
		device("mcu-0-unauth", "mcu", "committed", stack.VendorKeyFile, proxyOptions{unauthenticated: true}),
		device("mcu-1-cut", "mcu", "committed", stack.VendorKeyFile, proxyOptions{cutAfter: cutAt}),
		device("mcu-2-redirect-p256", "mcu", "committed", stack.VendorKeyFile, proxyOptions{redirect: true}),
	}
	tampered := device("mcu-tampered", "mcu-bad", "failed", stack.VendorKeyFile, proxyOptions{flipAt: tamperAt})
	wrongVendor := device("mcu-wrong-vendor", "mcu-bad", "failed", otherVendorKey(t, stack), proxyOptions{})
	all := append(slices.Clone(devices), tampered, wrongVendor)
	logDevicesOnFailure(t, all...)

	rollout := func(ns, ring string, n int64, mutate func(*otav1.Rollout)) client.ObjectKey {
		return startRollout(ctx, t, stack, time.Minute, ns, "fw-"+mcuVersion+"-"+ring, "fw-"+mcuVersion, ring, n, mutate)
	}
	goodKey := rollout(good, "mcu", 3, nil)
	badKey := rollout(bad, "mcu-bad", 2, func(r *otav1.Rollout) {
		// Two failures in two devices: never abort (no rollback, no
		// cancel), just count them.
		r.Spec.MinFailures = 10
	})

	// The good rollout succeeds with exact counts.
	ro := waitRollout(ctx, t, stack, goodKey, 4*time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded == 3, nil
	})
	t.Logf("rollout %s succeeded %s after the start", goodKey.Name, time.Since(start).Round(time.Second))
	if tot := harness.Totals(ro); tot != (otav1.WaveStatus{Targeted: 3, Offered: 3, Succeeded: 3}) {
		t.Errorf("totals %s, want 3 targeted, offered and succeeded", countsString(tot))
	}
	if ro.Status.Fleet == nil || ro.Status.Fleet.Size != 3 || ro.Status.Progress != "3/3" || len(ro.Status.RecentFailures) != 0 {
		t.Errorf("fleet %+v progress %q failures %+v; want 3 devices, 3/3, no failures", ro.Status.Fleet, ro.Status.Progress, ro.Status.RecentFailures)
	}

	// The bad rollout counts both refusals as failures, with their reasons.
	bro := waitRollout(ctx, t, stack, badKey, 4*time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted || r.Status.Phase == otav1.RolloutSucceeded {
			return false, fmt.Errorf("phase %s (%s); want it to go on counting failures", r.Status.Phase, r.Status.AbortReason)
		}
		if tot := harness.Totals(r); tot.Succeeded > 0 {
			return false, fmt.Errorf("a device that must refuse the update succeeded: %s", countsString(tot))
		}
		return harness.Totals(r).Failed == 2 && len(r.Status.RecentFailures) == 2, nil
	})
	if tot := harness.Totals(bro); tot != (otav1.WaveStatus{Targeted: 2, Offered: 2, Failed: 2}) {
		t.Errorf("totals %s, want 2 targeted, offered and failed", countsString(tot))
	}
	reasons := map[string]string{}
	for _, f := range bro.Status.RecentFailures {
		reasons[f.Device] = f.Reason
		t.Logf("recent failure: %s: %s", f.Device, f.Reason)
	}
	for id, prefix := range map[string]string{tampered.ID: fmt.Sprintf("chunk-auth: chunk %d ", mcuTamperChunk), wrongVendor.ID: "vendor-signature: "} {
		if !strings.HasPrefix(reasons[id], prefix) {
			t.Errorf("%s failed with reason %q, want it to start with %q", id, reasons[id], prefix)
		}
	}

	// Every process ends by itself: the good ones once the floor is
	// committed (after Succeeded), the bad ones once failed is reported.
	for _, d := range all {
		d.waitExit(ctx, t, 4*time.Minute)
	}

	// The installed images are the release's, byte for byte.
	for _, d := range devices {
		d.installed(t, mcuImageSize)
		d.logged(t, "event=committed")
		// Every request it made was one the server took.
		d.neverLogged(t, "event=report-dropped", "event=report-deferred")
		r := d.Proxy.record()
		t.Logf("%s: blob requests %q, %d blob bytes served", d.ID, r.ranges, r.served)
	}
	tampered.leftNothing(t)
	wrongVendor.leftNothing(t)

	// The cut device resumed at a chunk boundary after the chunks it had
	// verified, with If-Range, and got the rest only once.
	cut := devices[1]
	rec := cut.Proxy.record()
	ranges, ifRanges, served := rec.ranges, rec.ifRanges, rec.served
	encSize := envelope.EncryptedSize(mcuImageSize, envelope.DefaultChunkLog2)
	t.Logf("cut device: cut after %d bytes; blob requests %q (If-Range %q); %d blob bytes served for a %d-byte blob",
		cutAt, ranges, ifRanges, served, encSize)
	if rec.cuts != 1 || len(ranges) != 2 || ranges[0] != "" {
		t.Fatalf("cut device: %d cuts, blob requests %q; want one cut of a first request without Range, then one resume", rec.cuts, ranges)
	}
	var k int64
	if _, err := fmt.Sscanf(ranges[1], "bytes=%d-", &k); err != nil {
		t.Fatalf("resume asked for %q: %v", ranges[1], err)
	}
	resumeAt := k
	k = (resumeAt - envelope.HeaderSize) / sealedChunk
	if k < 1 || k > mcuCutChunk || ranges[1] != fmt.Sprintf("bytes=%d-", chunkOffset(k)) {
		t.Errorf("resume asked for %q: want bytes=<%d + k*%d>- with 1 <= k <= %d (the chunks verified before the cut at %d)", ranges[1], envelope.HeaderSize, sealedChunk, mcuCutChunk, cutAt)
	}
	if ifRanges[1] == "" {
		t.Errorf("resume sent no If-Range")
	}
	if served != cutAt+encSize-resumeAt {
		t.Errorf("cut device was served %d blob bytes, want %d before the cut and %d after it", served, cutAt, encSize-resumeAt)
	}
	cut.logged(t, "event=download-interrupted")

	// The device whose token was refused enrolled again, twice (a check,
	// then a blob request), and carried on.
	unauth := devices[0]
	if got := unauth.Proxy.record().refused; len(got) != 2 {
		t.Errorf("%s: requests answered 401: %q, want an update check and a blob request", unauth, got)
	}
	if log := unauth.log(t); strings.Count(log, "event=token-refused") != 2 || strings.Count(log, "event=enrolled") != 3 {
		t.Errorf("%s: %d tokens refused, %d enrollments; want 2 and 3", unauth, strings.Count(log, "event=token-refused"), strings.Count(log, "event=enrolled"))
	}

	// The redirected device followed the 307 to the other origin without
	// its bearer token.
	redirected := devices[2]
	if pre := redirected.Proxy.record().presigned; len(pre) != 1 || pre[0] != "" {
		t.Errorf("%s: Authorization of its requests to the presigned URL %q; want one request, without a token", redirected, pre)
	}
	if log := redirected.log(t); !strings.Contains(log, "event=redirect status=307") || !strings.Contains(log, "event=device-key-generated kem=p256") {
		t.Errorf("%s never logged the redirect, or has no P-256 device key", redirected)
	}

	// The tampered device saw its flipped byte; the other one was refused
	// before installing anything.
	if flips := tampered.Proxy.record().flips; flips != 1 {
		t.Errorf("tampered device: %d bytes flipped, want 1", flips)
	}
	for d, code := range map[*mcuDevice]string{tampered: "chunk-auth", wrongVendor: "vendor-signature"} {
		d.logged(t, "event=refused code="+code, "event=report state=failed")
		d.neverLogged(t, "event=installed")
	}
	t.Logf("done in %s", time.Since(start).Round(time.Second))
}
