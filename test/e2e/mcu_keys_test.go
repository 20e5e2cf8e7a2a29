package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const (
	keysNS        = "e2e-mcu-keys"
	keysRelease   = "fw-" + mcuVersion
	keysImageSize = 120_000
)

// TestMCUKeyRotationTLS runs the C client (otaflow-mcu-client) through a
// rotation of the server's assignment signing key, on a stack of its own
// whose OTA server watches the signing-key Secret. Everything runs over
// TLS: the OTA server serves the device API with a certificate for
// localhost from a CA of the stack's, each device's proxy serves one from
// the same CA and forwards over TLS, and every client (the C clients with
// --ca-file, the test's own reads) trusts that CA only. Every device is
// provisioned with the initial key A only.
//
//   - T, given a different CA, never gets past the TLS handshake
//     (event=tls-error step=handshake): its proxy passes on no request and
//     the server never enrolls it, while the others go on;
//   - add (B, a new ECDSA P-256 key, published at serial 2, A still
//     signing): F, which checks the key set every second, follows it; O
//     and S, which never check on their own (--key-check-interval=0), do
//     not fetch it;
//   - switch (B signs): O meets an assignment signed by B, fetches the key
//     set (signed by A, which it trusts) on demand, installs and succeeds;
//   - retire (A leaves, serial 3): F follows it, and after a restart with
//     only A provisioned still trusts B (the keys it stored);
//   - a rollout to F and S: F succeeds; S cannot verify the key set (signed
//     by B alone), refuses the assignment and reports failed with
//     "untrusted-signing-key: assignment signed by key <B>", which the
//     Rollout lists in status.recentFailures.
func TestMCUKeyRotationTLS(t *testing.T) {
	start := time.Now()
	buildMCUClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Rotating the shared stack's key would break the other tests.
	ks, err := harness.StartStack(ctx, harness.StackOptions{
		Dir: filepath.Join(stack.Opts.Dir, "mcu-keys"), BinDir: stack.Opts.BinDir, SigningKeySecret: true, DeviceTLS: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Stop)
	t.Logf("stack started in %s (logs in %s)", time.Since(start).Round(time.Second), ks.Opts.Dir)
	if !strings.HasPrefix(ks.ServerURL, "https://localhost:") {
		t.Fatalf("device API at %s, want https://localhost:<port>", ks.ServerURL)
	}
	keyA := rotationKeyOf(t, ks.AssignmentKeyPEM)
	keyB := newP256RotationKey(t)

	if err := ks.CreateNamespace(ctx, keysNS); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.PublishRelease(ctx, keysNS, keysRelease, mcuVersion, 3, keysImageSize); err != nil {
		t.Fatal(err)
	}
	keySetIs(ctx, t, ks, 1, keyA.id, keyA)

	// 1. Three devices, all provisioned with A, trusting the stack's CA;
	// and T, trusting another CA (in F's ring: had it enrolled, the second
	// rollout would target it too). A CA of the same name as the stack's
	// but another key: T must refuse the OTA server's certificate.
	otherCA := filepath.Join(mcuDir(t, ks), "other-ca.crt")
	if err := harness.WriteCA(otherCA, harness.DeviceCAName); err != nil {
		t.Fatal(err)
	}
	device := func(id, ring, exitAfter, caFile string, keyCheckInterval int) *mcuDevice {
		return startMCUDevice(t, ks, mcuDeviceOptions{
			ID: id, Ring: ring, ExitAfter: exitAfter, CAFile: caFile, KeyCheckInterval: &keyCheckInterval, MaxRuntime: 200,
		})
	}
	follow := device("mcu-keys-follow", "keys-follow", "succeeded", ks.DeviceCAFile, 1)
	ondemand := device("mcu-keys-ondemand", "keys-ondemand", "committed", ks.DeviceCAFile, 0)
	stale := device("mcu-keys-stale", "keys-follow", "failed", ks.DeviceCAFile, 0)
	wrongCA := device("mcu-keys-wrong-ca", "keys-follow", "succeeded", otherCA, 1)
	all := []*mcuDevice{follow, ondemand, stale, wrongCA}
	logDevicesOnFailure(t, all...)
	for _, d := range all[:3] {
		// Enrolled, and past its first poll (when a client checks the key
		// set at start, it did so then).
		d.waitPolls(t, 0, 2)
	}
	wrongCA.waitLog(t, "event=tls-error step=handshake")
	wrongCA.neverConnected(ctx, t, ks)
	follow.waitRequest(t, 0, protov1.PathKeys)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	_, err = harness.WaitReleaseReady(wctx, ks.CP.Client, client.ObjectKey{Namespace: keysNS, Name: keysRelease})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	// From here on, O and S have no reason to fetch the key set until an
	// assignment signed by a key they do not trust reaches them.
	markO, markS := ondemand.Proxy.mark(), stale.Proxy.mark()
	t.Logf("step 1: devices enrolled, %s after the start", time.Since(start).Round(time.Second))

	// 2. Add: B is published, A still signs.
	setKeys(ctx, t, ks, map[string][]byte{"a.pem": keyA.pem, "b.pem": keyB.pem, "current": []byte(keyA.id), "serial": []byte("2")})
	keySetIs(ctx, t, ks, 2, keyA.id, keyA, keyB)
	follow.waitLog(t, "event=keys-updated serial=2")
	t.Logf("step 2 (add): %s followed serial 2, %s after the start", follow.ID, time.Since(start).Round(time.Second))

	// 3. Switch: B signs. O follows the set when it meets B's assignment.
	setKeys(ctx, t, ks, map[string][]byte{"a.pem": keyA.pem, "b.pem": keyB.pem, "current": []byte(keyB.id), "serial": []byte("2")})
	keySetIs(ctx, t, ks, 2, keyB.id, keyA, keyB)
	if n := ondemand.Proxy.count(markO, protov1.PathKeys); n != 0 {
		t.Errorf("%s fetched the key set %d times before any assignment; with --key-check-interval=0 it must not", ondemand, n)
	}
	r1 := startRollout(ctx, t, ks, 30*time.Second, keysNS, "r1-ondemand", keysRelease, "keys-ondemand", 1, nil)
	ro1 := waitRollout(ctx, t, ks, r1, time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded == 1, nil
	})
	if tot := harness.Totals(ro1); tot != (otav1.WaveStatus{Targeted: 1, Offered: 1, Succeeded: 1}) {
		t.Errorf("%s: totals %s, want 1 targeted, offered and succeeded", r1.Name, countsString(tot))
	}
	if len(ro1.Status.RecentFailures) != 0 {
		t.Errorf("%s: failures %+v", r1.Name, ro1.Status.RecentFailures)
	}
	ondemand.waitExit(ctx, t, 30*time.Second)
	if n := ondemand.Proxy.count(markO, protov1.PathKeys); n == 0 {
		t.Errorf("%s never fetched the key set, yet installed an assignment signed by %.16s", ondemand, keyB.id)
	}
	ondemand.signedOnlyBy(t, keyB)
	ondemand.installed(t, keysImageSize)
	ondemand.logged(t, "event=keys-updated serial=2")
	ondemand.neverLogged(t, "event=keyset-refused")
	t.Logf("step 3 (switch): %s succeeded in %s, %s after the start", ondemand.ID, r1.Name, time.Since(start).Round(time.Second))

	// 4. Retire: A leaves the set. F follows, and keeps B across a restart.
	setKeys(ctx, t, ks, map[string][]byte{"b.pem": keyB.pem, "current": []byte(keyB.id), "serial": []byte("3")})
	keySetIs(ctx, t, ks, 3, keyB.id, keyB)
	follow.waitLog(t, "event=keys-updated serial=3")
	if _, err := os.Stat(filepath.Join(follow.Dir, "state", "keys")); err != nil {
		t.Errorf("%s stored no key set: %v", follow, err)
	}
	before := len(follow.log(t))
	markF := follow.Proxy.mark()
	t.Logf("restarting %s", follow.ID)
	if err := follow.Proc.Restart(); err != nil { // SIGKILL, then the same arguments: still only A provisioned
		t.Fatal(err)
	}
	follow.waitRequest(t, markF, protov1.PathKeys)
	follow.waitPolls(t, markF, 2)
	if after := follow.log(t)[before:]; strings.Contains(after, "event=keyset-refused") || strings.Contains(after, "event=keys-updated") {
		t.Errorf("%s after its restart: want the stored set of serial 3 kept (no keyset-refused, no keys-updated); log since:\n%s", follow, after)
	}
	t.Logf("step 4 (retire): %s followed serial 3 and was restarted, %s after the start", follow.ID, time.Since(start).Round(time.Second))

	// 5. F and S meet B's assignment: F verifies it, S cannot learn B.
	if n := stale.Proxy.count(markS, protov1.PathKeys); n != 0 {
		t.Errorf("%s fetched the key set %d times before any assignment; with --key-check-interval=0 it must not", stale, n)
	}
	r2 := startRollout(ctx, t, ks, 30*time.Second, keysNS, "r2-follow", keysRelease, "keys-follow", 2, func(r *otav1.Rollout) {
		// One failure of two devices: never abort, just count it.
		r.Spec.MinFailures = 10
	})
	wantReason := protov1.ReasonUntrustedSigningKey + ": assignment signed by key " + keyB.id
	ro2 := waitRollout(ctx, t, ks, r2, time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		tot := harness.Totals(r)
		if tot.Succeeded > 1 || tot.Failed > 1 {
			return false, fmt.Errorf("counts %s; want 1 succeeded and 1 failed", countsString(tot))
		}
		return tot.Succeeded == 1 && tot.Failed == 1 && len(r.Status.RecentFailures) == 1, nil
	})
	if tot := harness.Totals(ro2); tot != (otav1.WaveStatus{Targeted: 2, Offered: 2, Succeeded: 1, Failed: 1}) {
		t.Errorf("%s: totals %s, want 2 targeted and offered, 1 succeeded, 1 failed", r2.Name, countsString(tot))
	}
	for _, f := range ro2.Status.RecentFailures {
		t.Logf("%s: recent failure: %s: %s", r2.Name, f.Device, f.Reason)
		if f.Device != stale.ID || !strings.HasPrefix(f.Reason, wantReason) {
			t.Errorf("%s: failure %s: %q; want %s failed with a reason starting %q", r2.Name, f.Device, f.Reason, stale.ID, wantReason)
		}
	}
	follow.waitExit(ctx, t, 30*time.Second)
	stale.waitExit(ctx, t, 30*time.Second)
	follow.signedOnlyBy(t, keyB)
	follow.installed(t, keysImageSize)
	follow.neverLogged(t, "event=keyset-refused")
	stale.signedOnlyBy(t, keyB)
	if n := stale.Proxy.count(markS, protov1.PathKeys); n == 0 {
		t.Errorf("%s never fetched the key set after meeting an assignment signed by an unknown key", stale)
	}
	stale.logged(t, "event=keyset-refused code=", "event=report state=failed")
	stale.neverLogged(t, "event=keys-updated serial=2", "event=keys-updated serial=3", "event=installed")
	stale.leftNothing(t)
	for _, d := range all {
		for _, l := range strings.Split(d.log(t), "\n") {
			if strings.Contains(l, "event=keys-updated") || strings.Contains(l, "event=keyset-refused") {
				t.Logf("%s: %s", d.ID, l)
			}
		}
	}
	// T kept failing its handshakes all along, the others enrolled.
	wrongCA.neverConnected(ctx, t, ks)
	for _, d := range all[:3] {
		if !deviceStored(ctx, t, ks, d.ID) {
			t.Errorf("%s is not in the OTA server's store", d)
		}
		d.neverLogged(t, "event=tls-error")
	}
	t.Logf("done in %s", time.Since(start).Round(time.Second))
}

// neverConnected checks a device that trusts another CA than the stack's:
// it logged failed TLS handshakes, its proxy saw them fail (the client
// aborted them) and passed on no request, and the OTA server has no
// device of its ID.
func (d *mcuDevice) neverConnected(ctx context.Context, t *testing.T, ks *harness.Stack) {
	t.Helper()
	// mbedTLS: MBEDTLS_ERR_X509_CERT_VERIFY_FAILED.
	const want = `event=tls-error step=handshake err="X509 - Certificate verification failed`
	n := 0
	for _, l := range strings.Split(d.log(t), "\n") {
		if strings.Contains(l, "event=tls-error") {
			if n == 0 {
				t.Logf("%s: %s", d.ID, l)
			}
			n++
			if !strings.Contains(l, want) {
				t.Errorf("%s logged %q, want %q…", d, l, want)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s logged no TLS error, want %q…", d, want)
	}
	if a := d.Proxy.mark(); a != 0 {
		t.Errorf("%s: its proxy passed on %d requests, want none", d, a)
	}
	// The proxy's server logs a failed handshake just after the client
	// gives up on it.
	releasetest.Eventually(t, 10*time.Second, func() error {
		if len(d.Proxy.record().handshakes) == 0 {
			return fmt.Errorf("%s's proxy saw no failed TLS handshake", d.ID)
		}
		return nil
	})
	h := d.Proxy.record().handshakes
	t.Logf("%s: its proxy saw %d failed handshakes, the last: %s", d.ID, len(h), h[len(h)-1])
	if deviceStored(ctx, t, ks, d.ID) {
		t.Errorf("%s is in the OTA server's store; it never completed a TLS handshake", d)
	}
}

// deviceStored reports whether the OTA server's store has a device of
// that ID.
func deviceStored(ctx context.Context, t *testing.T, ks *harness.Stack, id string) bool {
	t.Helper()
	db, err := ks.OpenStoreReadOnly()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE id = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// rotationKey is an assignment signing key as the operator holds it.
type rotationKey struct {
	pem []byte // PKCS#8 PEM
	id  string
	alg string
}

func rotationKeyOf(t *testing.T, pem []byte) rotationKey {
	t.Helper()
	k, err := assignment.ParsePrivateKeyPEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	e, err := assignment.PublicKeyOf(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return rotationKey{pem: pem, id: e.KeyID, alg: e.Algorithm}
}

// newP256RotationKey is a fresh ECDSA P-256 signing key.
func newP256RotationKey(t *testing.T) rotationKey {
	t.Helper()
	pem, err := assignment.MarshalPrivateKeyPEM(releasetest.NewECDSAKey(t).Signer)
	if err != nil {
		t.Fatal(err)
	}
	return rotationKeyOf(t, pem)
}

func setKeys(ctx context.Context, t *testing.T, ks *harness.Stack, data map[string][]byte) {
	t.Helper()
	if err := ks.SetSigningKeys(ctx, data); err != nil {
		t.Fatal(err)
	}
}

// keySetIs waits until the OTA server publishes exactly keys at serial
// (GET /v1/keys) and signs with current (GET /v1/info).
func keySetIs(ctx context.Context, t *testing.T, ks *harness.Stack, serial int64, current string, keys ...rotationKey) {
	t.Helper()
	type entry struct{ id, alg string }
	var want []entry
	for _, k := range keys {
		want = append(want, entry{k.id, k.alg})
	}
	slices.SortFunc(want, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	hc := &http.Client{Transport: ks.DeviceTransport()} // trusts the stack's CA only
	defer hc.CloseIdleConnections()
	releasetest.Eventually(t, 30*time.Second, func() error {
		notYet := func(last string) error {
			return fmt.Errorf("key set of serial %d signed by %.16s; last seen: %s", serial, current, last)
		}
		var doc protov1.KeySetResponse
		if err := getServerJSON(ctx, hc, ks.ServerURL+protov1.PathKeys, &doc); err != nil {
			return notYet(err.Error())
		}
		var set assignment.KeySet
		if err := json.Unmarshal(doc.Payload, &set); err != nil {
			t.Fatalf("key set payload: %v", err)
		}
		var info protov1.Info
		if err := getServerJSON(ctx, hc, ks.ServerURL+protov1.PathInfo, &info); err != nil {
			return notYet(err.Error())
		}
		var got []entry
		for _, k := range set.Keys {
			got = append(got, entry{k.KeyID, k.Algorithm})
		}
		if set.Serial == serial && slices.Equal(got, want) && len(doc.Signatures) == len(want) &&
			len(info.AssignmentKeyIDs) == len(want) && info.AssignmentKeyIDs[0] == current {
			return nil
		}
		return notYet(fmt.Sprintf("serial %d keys %+v, %d signatures, info keys %v", set.Serial, got, len(doc.Signatures), info.AssignmentKeyIDs))
	})
}

func getServerJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (d *mcuDevice) waitLog(t *testing.T, line string) {
	t.Helper()
	releasetest.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(d.log(t), line) {
			return fmt.Errorf("%s has not logged %q", d.ID, line)
		}
		return nil
	})
}

// waitPolls waits until the device enrolled (at any time) and, since
// request mark, had n update checks answered.
func (d *mcuDevice) waitPolls(t *testing.T, mark, n int) {
	t.Helper()
	releasetest.Eventually(t, 30*time.Second, func() error {
		if d.Proxy.count(0, protov1.PathEnroll) == 0 || d.Proxy.count(mark, protov1.PathUpdate) < n {
			return fmt.Errorf("%s not enrolled with %d update checks answered", d.ID, n)
		}
		return nil
	})
}

// waitRequest waits until a request for path was answered 200 since mark.
func (d *mcuDevice) waitRequest(t *testing.T, mark int, path string) {
	t.Helper()
	releasetest.Eventually(t, 30*time.Second, func() error {
		if d.Proxy.count(mark, path) == 0 {
			return fmt.Errorf("%s has not requested %s", d.ID, path)
		}
		return nil
	})
}

// signedOnlyBy checks that the device was sent assignments, all signed by k.
func (d *mcuDevice) signedOnlyBy(t *testing.T, k rotationKey) {
	t.Helper()
	s := d.Proxy.record().signers
	if len(s) == 0 || slices.ContainsFunc(s, func(id string) bool { return id != k.id }) {
		t.Errorf("%s was sent assignments signed by %v, want all by %s", d, s, k.id)
	}
}
