package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
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
	bin := buildMCUClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// envtest logs through controller-runtime's logger, which warns (with
	// a stack trace) when it is used for the first time long after start
	// without being set; this package reads the processes' log files.
	ctrllog.SetLogger(logr.Discard())
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
	if keyA.id != ks.AssignmentKeyID {
		t.Fatalf("stack key ID %s, want %s", ks.AssignmentKeyID, keyA.id)
	}
	keyB := newP256RotationKey(t)

	dir := filepath.Join(ks.Opts.Dir, "mcu")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "bootstrap-token")
	if err := os.WriteFile(tokenFile, []byte(ks.BootstrapToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ks.CreateNamespace(ctx, keysNS); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.PublishRelease(ctx, keysNS, keysRelease, mcuVersion, 3, keysImageSize); err != nil {
		t.Fatal(err)
	}
	keySetIs(ctx, t, ks, 1, keyA.id, nil, keyA)

	// 1. Three devices, all provisioned with A, trusting the stack's CA;
	// and T, trusting another CA (in F's ring: had it enrolled, the second
	// rollout would target it too).
	otherCA := writeOtherCA(t, dir)
	follow := startKeysDevice(t, ks, bin, tokenFile, ks.DeviceCAFile, "mcu-keys-follow", "keys-follow", "succeeded", 1)
	ondemand := startKeysDevice(t, ks, bin, tokenFile, ks.DeviceCAFile, "mcu-keys-ondemand", "keys-ondemand", "committed", 0)
	stale := startKeysDevice(t, ks, bin, tokenFile, ks.DeviceCAFile, "mcu-keys-stale", "keys-follow", "failed", 0)
	wrongCA := startKeysDevice(t, ks, bin, tokenFile, otherCA, "mcu-keys-wrong-ca", "keys-follow", "succeeded", 1)
	all := []*keysDevice{follow, ondemand, stale, wrongCA} // whose logs a failure shows
	for _, d := range all[:3] {
		// Enrolled, and past its first poll (when a client checks the key
		// set at start, it did so then).
		d.waitPolls(ctx, t, 0, 2, all)
	}
	wrongCA.waitLog(ctx, t, "event=tls-error step=handshake", all)
	wrongCA.neverConnected(ctx, t, ks)
	follow.waitRequest(ctx, t, 0, protov1.PathKeys, all)
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
	keySetIs(ctx, t, ks, 2, keyA.id, all, keyA, keyB)
	follow.waitLog(ctx, t, "event=keys-updated serial=2", all)
	t.Logf("step 2 (add): %s followed serial 2, %s after the start", follow.ID, time.Since(start).Round(time.Second))

	// 3. Switch: B signs. O follows the set when it meets B's assignment.
	setKeys(ctx, t, ks, map[string][]byte{"a.pem": keyA.pem, "b.pem": keyB.pem, "current": []byte(keyB.id), "serial": []byte("2")})
	keySetIs(ctx, t, ks, 2, keyB.id, all, keyA, keyB)
	if n := ondemand.Proxy.count(markO, protov1.PathKeys); n != 0 {
		t.Errorf("%s fetched the key set %d times before any assignment; with --key-check-interval=0 it must not", ondemand, n)
	}
	r1 := keysRollout(ctx, t, ks, "r1-ondemand", "keys-ondemand", 1, nil, all)
	ro1 := waitKeysRollout(ctx, t, ks, r1, all, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded == 1, nil
	})
	if tot := harness.Totals(ro1); counters(tot) != (otav1.WaveStatus{Targeted: 1, Offered: 1, Succeeded: 1}) {
		t.Errorf("%s: totals %s, want 1 targeted, offered and succeeded", r1.Name, countsString(tot))
	}
	if len(ro1.Status.RecentFailures) != 0 {
		t.Errorf("%s: failures %+v", r1.Name, ro1.Status.RecentFailures)
	}
	ondemand.waitExit(ctx, t, all)
	if n := ondemand.Proxy.count(markO, protov1.PathKeys); n == 0 {
		t.Errorf("%s never fetched the key set, yet installed an assignment signed by %.16s", ondemand, keyB.id)
	}
	ondemand.signedOnlyBy(t, keyB)
	ondemand.installed(t)
	if log := ondemand.log(t); !strings.Contains(log, "event=keys-updated serial=2") {
		t.Errorf("%s never logged keys-updated serial=2", ondemand)
	}
	t.Logf("step 3 (switch): %s succeeded in %s, %s after the start", ondemand.ID, r1.Name, time.Since(start).Round(time.Second))

	// 4. Retire: A leaves the set. F follows, and keeps B across a restart.
	setKeys(ctx, t, ks, map[string][]byte{"b.pem": keyB.pem, "current": []byte(keyB.id), "serial": []byte("3")})
	keySetIs(ctx, t, ks, 3, keyB.id, all, keyB)
	follow.waitLog(ctx, t, "event=keys-updated serial=3", all)
	if _, err := os.Stat(filepath.Join(follow.Dir, "state", "keys")); err != nil {
		t.Errorf("%s stored no key set: %v", follow, err)
	}
	before := len(follow.log(t))
	markF := follow.Proxy.mark()
	t.Logf("restarting %s", follow.ID)
	if err := follow.Proc.Restart(); err != nil { // SIGKILL, then the same arguments: still only A provisioned
		t.Fatal(err)
	}
	follow.waitRequest(ctx, t, markF, protov1.PathKeys, all)
	follow.waitPolls(ctx, t, markF, 2, all)
	if after := follow.log(t)[before:]; strings.Contains(after, "event=keyset-refused") || strings.Contains(after, "event=keys-updated") {
		t.Errorf("%s after its restart: want the stored set of serial 3 kept (no keyset-refused, no keys-updated); log since:\n%s", follow, after)
	}
	t.Logf("step 4 (retire): %s followed serial 3 and was restarted, %s after the start", follow.ID, time.Since(start).Round(time.Second))

	// 5. F and S meet B's assignment: F verifies it, S cannot learn B.
	if n := stale.Proxy.count(markS, protov1.PathKeys); n != 0 {
		t.Errorf("%s fetched the key set %d times before any assignment; with --key-check-interval=0 it must not", stale, n)
	}
	r2 := keysRollout(ctx, t, ks, "r2-follow", "keys-follow", 2, func(r *otav1.Rollout) {
		// One failure of two devices: never abort, just count it.
		r.Spec.MinFailures = 10
	}, all)
	wantReason := protov1.ReasonUntrustedSigningKey + ": assignment signed by key " + keyB.id
	ro2 := waitKeysRollout(ctx, t, ks, r2, all, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		tot := harness.Totals(r)
		if tot.Succeeded > 1 || tot.Failed > 1 {
			return false, fmt.Errorf("counts %s; want 1 succeeded and 1 failed", countsString(tot))
		}
		return tot.Succeeded == 1 && tot.Failed == 1 && len(r.Status.RecentFailures) == 1, nil
	})
	if tot := harness.Totals(ro2); counters(tot) != (otav1.WaveStatus{Targeted: 2, Offered: 2, Succeeded: 1, Failed: 1}) {
		t.Errorf("%s: totals %s, want 2 targeted and offered, 1 succeeded, 1 failed", r2.Name, countsString(tot))
	}
	for _, f := range ro2.Status.RecentFailures {
		t.Logf("%s: recent failure: %s: %s", r2.Name, f.Device, f.Reason)
		if f.Device != stale.ID || !strings.HasPrefix(f.Reason, wantReason) {
			t.Errorf("%s: failure %s: %q; want %s failed with a reason starting %q", r2.Name, f.Device, f.Reason, stale.ID, wantReason)
		}
	}
	follow.waitExit(ctx, t, all)
	stale.waitExit(ctx, t, all)
	follow.signedOnlyBy(t, keyB)
	follow.installed(t)
	stale.signedOnlyBy(t, keyB)
	if n := stale.Proxy.count(markS, protov1.PathKeys); n == 0 {
		t.Errorf("%s never fetched the key set after meeting an assignment signed by an unknown key", stale)
	}
	log := stale.log(t)
	for _, ev := range []string{"event=keyset-refused code=", "event=report state=failed"} {
		if !strings.Contains(log, ev) {
			t.Errorf("%s never logged %q", stale, ev)
		}
	}
	for _, ev := range []string{"event=keys-updated serial=2", "event=keys-updated serial=3", "event=installed"} {
		if strings.Contains(log, ev) {
			t.Errorf("%s logged %q", stale, ev)
		}
	}
	for _, f := range []string{stale.Install, stale.Install + ".part"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left %s behind (%v)", stale, f, err)
		}
	}
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
		if strings.Contains(d.log(t), "event=tls-error") {
			t.Errorf("%s logged event=tls-error", d)
		}
	}
	t.Logf("done in %s", time.Since(start).Round(time.Second))
}

// writeOtherCA writes a fresh self-signed CA certificate with the same
// name as the stack's device CA but another key: a device trusting it must
// refuse the OTA server's certificate.
func writeOtherCA(t *testing.T, dir string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: harness.DeviceCAName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// neverConnected checks a device that trusts another CA than the stack's:
// it logged failed TLS handshakes, its proxy saw them fail (the client
// aborted them) and passed on no request, and the OTA server has no
// device of its ID.
func (d *keysDevice) neverConnected(ctx context.Context, t *testing.T, ks *harness.Stack) {
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
	if a := d.Proxy.total(); a != 0 {
		t.Errorf("%s: its proxy passed on %d requests, want none", d, a)
	}
	// The proxy's server logs a failed handshake just after the client
	// gives up on it.
	eventually(ctx, t, 10*time.Second, d.ID+"'s proxy seeing a failed TLS handshake", []*keysDevice{d}, func() (bool, error) {
		return len(d.Proxy.handshakeErrors()) > 0, nil
	}, nil)
	h := d.Proxy.handshakeErrors()
	t.Logf("%s: its proxy saw %d failed handshakes, the last: %s", d.ID, len(h), h[len(h)-1])
	if deviceStored(ctx, t, ks, d.ID) {
		t.Errorf("%s is in the OTA server's store; it never completed a TLS handshake", d)
	}
}

// deviceStored reports whether the OTA server's store (SQLite, read only)
// has a device of that ID.
func deviceStored(ctx context.Context, t *testing.T, ks *harness.Stack, id string) bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+ks.StorePath()+"?mode=ro&_pragma=busy_timeout(10000)")
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
	s, err := assignment.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	e, err := assignment.PublicKeyOf(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return rotationKey{pem: pem, id: s.KeyID(), alg: e.Algorithm}
}

// newP256RotationKey is a fresh ECDSA P-256 signing key.
func newP256RotationKey(t *testing.T) rotationKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := assignment.MarshalPrivateKeyPEM(k)
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
func keySetIs(ctx context.Context, t *testing.T, ks *harness.Stack, serial int64, current string, devs []*keysDevice, keys ...rotationKey) {
	t.Helper()
	type entry struct{ id, alg string }
	var want []entry
	for _, k := range keys {
		want = append(want, entry{k.id, k.alg})
	}
	slices.SortFunc(want, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	var last string
	hc := &http.Client{Transport: ks.DeviceTransport()} // trusts the stack's CA only
	defer hc.CloseIdleConnections()
	eventually(ctx, t, 30*time.Second, fmt.Sprintf("key set of serial %d signed by %.16s", serial, current), devs, func() (bool, error) {
		var doc protov1.KeySetResponse
		if err := getServerJSON(ctx, hc, ks.ServerURL+protov1.PathKeys, &doc); err != nil {
			last = err.Error()
			return false, nil
		}
		var set assignment.KeySet
		if err := json.Unmarshal(doc.Payload, &set); err != nil {
			return false, fmt.Errorf("key set payload: %w", err)
		}
		var info protov1.Info
		if err := getServerJSON(ctx, hc, ks.ServerURL+protov1.PathInfo, &info); err != nil {
			last = err.Error()
			return false, nil
		}
		var got []entry
		for _, k := range set.Keys {
			got = append(got, entry{k.KeyID, k.Algorithm})
		}
		last = fmt.Sprintf("serial %d keys %+v, %d signatures, info keys %v", set.Serial, got, len(doc.Signatures), info.AssignmentKeyIDs)
		return set.Serial == serial && slices.Equal(got, want) && len(doc.Signatures) == len(want) &&
			len(info.AssignmentKeyIDs) == len(want) && info.AssignmentKeyIDs[0] == current, nil
	}, func() string { return "last seen: " + last })
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

// keysRollout creates a paused one-wave rollout of the release to ring
// and resumes it once its fleet has n devices.
func keysRollout(ctx context.Context, t *testing.T, ks *harness.Stack, name, ring string, n int64, mutate func(*otav1.Rollout), devs []*keysDevice) client.ObjectKey {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key, err := ks.StartRingRollout(wctx, keysNS, name, keysRelease, ring, n, mutate)
	if err != nil {
		t.Fatalf("%v%s", err, deviceLogs(devs))
	}
	return key
}

func waitKeysRollout(ctx context.Context, t *testing.T, ks *harness.Stack, key client.ObjectKey, devs []*keysDevice, done func(*otav1.Rollout) (bool, error)) *otav1.Rollout {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ro, err := harness.WaitRollout(wctx, ks.CP.Client, key, func(r *otav1.Rollout) {
		t.Logf("%s  %s", key.Name, harness.RolloutLine(r))
	}, done)
	if err != nil {
		t.Fatalf("%s: %v%s", key.Name, err, deviceLogs(devs))
	}
	return ro
}

// eventually calls cond every 200ms until it holds; it fails the test
// when timeout passes or cond fails, with detail() and the devices' logs.
func eventually(ctx context.Context, t *testing.T, timeout time.Duration, what string, devs []*keysDevice, cond func() (bool, error), detail func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v%s", what, err, deviceLogs(devs))
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			d := ""
			if detail != nil {
				d = "; " + detail()
			}
			t.Fatalf("%s: not within %s%s%s", what, timeout, d, deviceLogs(devs))
		case <-tick.C:
		}
	}
}

// deviceLogs names each device's log with its last lines.
func deviceLogs(devs []*keysDevice) string {
	var b strings.Builder
	for _, d := range devs {
		fmt.Fprintf(&b, "\n--- %s, last lines:", d)
		raw, _ := os.ReadFile(d.Proc.LogPath())
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		for _, l := range lines[max(0, len(lines)-8):] {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

// keysDevice is one C client process, its files, and the proxy that
// records its requests.
type keysDevice struct {
	ID, Dir, Install string
	Proxy            *requestProxy
	Proc             *harness.Process
}

// startKeysDevice starts a C client of ks provisioned with its initial
// assignment key only, checking the key set every interval seconds (0:
// only when it meets a key it does not trust), trusting the CA in caFile.
func startKeysDevice(t *testing.T, ks *harness.Stack, bin, tokenFile, caFile, id, ring, exitAfter string, interval int) *keysDevice {
	t.Helper()
	dir := filepath.Join(ks.Opts.Dir, "mcu", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &keysDevice{ID: id, Dir: dir, Install: filepath.Join(dir, "image.bin"), Proxy: newRequestProxy(t, ks)}
	args := []string{
		"--server", ks.ServerURL,
		"--connect-to", d.Proxy.connectTo(),
		"--ca-file", caFile,
		"--state-dir", filepath.Join(dir, "state"),
		"--device-id", id,
		"--device-type", "sensor-v1",
		"--label", "ring=" + ring,
		"--version", "2.9.0",
		"--bootstrap-token-file", tokenFile,
		"--assignment-key", ks.AssignmentKeyFile,
		"--key-check-interval=" + strconv.Itoa(interval),
		"--vendor-key", ks.VendorKeyFile,
		"--require-vendor-signature",
		"--install-to", d.Install,
		"--poll-interval", "500",
		"--exit-after-state", exitAfter,
		"--max-runtime", "200",
	}
	p, err := harness.StartProcess(harness.ProcessSpec{
		Name: "otaflow-mcu-client " + id, Path: bin, Args: args, LogPath: filepath.Join(dir, "client.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	d.Proc = p
	return d
}

func (d *keysDevice) String() string { return fmt.Sprintf("%s (log %s)", d.ID, d.Proc.LogPath()) }

func (d *keysDevice) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.Proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (d *keysDevice) waitLog(ctx context.Context, t *testing.T, line string, devs []*keysDevice) {
	t.Helper()
	eventually(ctx, t, 30*time.Second, fmt.Sprintf("%s logging %q", d.ID, line), devs, func() (bool, error) {
		return strings.Contains(d.log(t), line), nil
	}, nil)
}

// waitPolls waits until the device enrolled (at any time) and, since
// request mark, had n update checks answered.
func (d *keysDevice) waitPolls(ctx context.Context, t *testing.T, mark, n int, devs []*keysDevice) {
	t.Helper()
	eventually(ctx, t, 30*time.Second, fmt.Sprintf("%s enrolled and %d update checks answered", d.ID, n), devs, func() (bool, error) {
		return d.Proxy.count(0, protov1.PathEnroll) > 0 && d.Proxy.count(mark, protov1.PathUpdate) >= n, nil
	}, nil)
}

// waitRequest waits until a request for path was answered 200 since mark.
func (d *keysDevice) waitRequest(ctx context.Context, t *testing.T, mark int, path string, devs []*keysDevice) {
	t.Helper()
	eventually(ctx, t, 30*time.Second, fmt.Sprintf("%s requesting %s", d.ID, path), devs, func() (bool, error) {
		return d.Proxy.count(mark, path) > 0, nil
	}, nil)
}

func (d *keysDevice) waitExit(ctx context.Context, t *testing.T, devs []*keysDevice) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-d.Proc.Exited():
		if err := d.Proc.Err(); err != nil {
			t.Errorf("%s exited with %v", d, err)
		}
	case <-wctx.Done():
		t.Fatalf("%s did not exit%s", d, deviceLogs(devs))
	}
}

// signedOnlyBy checks that the device was sent assignments, all signed by k.
func (d *keysDevice) signedOnlyBy(t *testing.T, k rotationKey) {
	t.Helper()
	s := d.Proxy.assignmentSigners()
	if len(s) == 0 || slices.ContainsFunc(s, func(id string) bool { return id != k.id }) {
		t.Errorf("%s was sent assignments signed by %v, want all by %s", d, s, k.id)
	}
}

// installed checks the device installed exactly the image and went
// through boot and confirmation.
func (d *keysDevice) installed(t *testing.T) {
	t.Helper()
	got, err := os.ReadFile(d.Install)
	if err != nil {
		t.Errorf("%s: %v", d, err)
	} else if want := harness.Image(mcuVersion, keysImageSize); !bytes.Equal(got, want) {
		t.Errorf("%s installed %d bytes that differ from the %d-byte image", d, len(got), len(want))
	}
	log := d.log(t)
	for _, ev := range []string{"event=installed", "event=boot version=" + mcuVersion, "event=confirmed"} {
		if !strings.Contains(log, ev) {
			t.Errorf("%s never logged %q", d, ev)
		}
	}
	for _, ev := range []string{"event=keyset-refused", "event=refused", "event=check-failed", "event=enroll-failed"} {
		if strings.Contains(log, ev) {
			t.Errorf("%s logged %q", d, ev)
		}
	}
}

// requestProxy stands between one C client and the OTA server (the client
// connects to it for the server's host:port, --connect-to), over TLS on
// both sides, and records the path and status of every request it passes
// on, and the key ID of every assignment in an update answer.
type requestProxy struct {
	target    *url.URL
	srv       *httptest.Server
	transport *http.Transport

	mu         sync.Mutex
	answers    []proxiedRequest // in the order they were answered
	signers    []string
	handshakes []string // failed TLS handshakes, as its server logged them
}

type proxiedRequest struct {
	path   string
	status int
}

// newRequestProxy serves TLS with a certificate of the stack's device CA
// and forwards to its OTA server over TLS, trusting that CA.
func newRequestProxy(t *testing.T, ks *harness.Stack) *requestProxy {
	t.Helper()
	u, err := url.Parse(ks.ServerURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ks.DeviceServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := &requestProxy{target: u, transport: ks.DeviceTransport()}
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.TLS = cfg
	// The server logs each failed handshake: keep them.
	p.srv.Config.ErrorLog = log.New(handshakeLog{p}, "", 0)
	p.srv.StartTLS()
	t.Cleanup(func() {
		p.srv.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// connectTo is the client's --connect-to value: the server's host:port
// (localhost) to the proxy's 127.0.0.1 address.
func (p *requestProxy) connectTo() string {
	return p.target.Host + ":" + p.srv.Listener.Addr().String()
}

// handshakeLog records the proxy's failed TLS handshakes from its
// server's error log.
type handshakeLog struct{ p *requestProxy }

func (h handshakeLog) Write(b []byte) (int, error) {
	if line := strings.TrimSpace(string(b)); strings.Contains(line, "TLS handshake error") {
		h.p.mu.Lock()
		h.p.handshakes = append(h.p.handshakes, line)
		h.p.mu.Unlock()
	}
	return len(b), nil
}

func (p *requestProxy) handshakeErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.handshakes)
}

// total is the number of requests passed on, whatever their answer.
func (p *requestProxy) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.answers)
}

// mark is the position of the next answer, for count.
func (p *requestProxy) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.answers)
}

// count is the number of requests for path answered 2xx since mark.
func (p *requestProxy) count(mark int, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.answers[mark:] {
		if a.path == path && a.status/100 == 2 {
			n++
		}
	}
	return n
}

func (p *requestProxy) assignmentSigners() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.signers)
}

func (p *requestProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = p.target.Scheme, p.target.Host, ""
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // small answers, or a blob of keysImageSize
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	signer := ""
	if r.URL.Path == protov1.PathUpdate && resp.StatusCode == http.StatusOK {
		var u protov1.UpdateResponse
		if json.Unmarshal(body, &u) == nil && u.Assignment != nil {
			signer = u.Assignment.KeyID
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers = append(p.answers, proxiedRequest{path: r.URL.Path, status: resp.StatusCode})
	if signer != "" {
		p.signers = append(p.signers, signer)
	}
}
