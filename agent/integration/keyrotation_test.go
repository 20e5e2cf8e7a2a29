package integration_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/agent"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/otaserver"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const signingSecret = "otaflow-assignment-key"

// rotationKey is an assignment signing key as the operator holds it.
type rotationKey struct {
	pem []byte
	pub []byte // PKIX PEM, for devices
	id  string
}

func newRotationKey(t *testing.T) rotationKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	p, err := assignment.MarshalPrivateKeyPEM(priv)
	must(t, err)
	s, err := assignment.NewSigner(priv)
	must(t, err)
	return rotationKey{pem: p, pub: pubPEM(t, priv.Public()), id: s.KeyID()}
}

// replica is an OTA server that signs with the watched signing-key Secret,
// on the suite's store, catalog and reporter (as cmd/otaserver wires a
// replica).
type replica struct {
	url  string
	keys *otaserver.SigningKeys
}

func startReplica(t *testing.T, ctx context.Context, ns string) *replica {
	t.Helper()
	keys := otaserver.NewSigningKeys(prometheus.NewRegistry())
	must(t, otaserver.WatchSigningKeySecret(ctx, suite.Config, suite.Scheme, ns, signingSecret, "key.pem", keys, logr.Discard()))
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"t": []byte(bootstrap)})
	srv, err := otaserver.New(otaserver.Config{
		Store: devStore, Catalog: cat, Cutoffs: rep, Blobs: suite.Blobs, Signer: keys, Tokens: tokens,
		Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(), DeviceRate: 1000, DeviceBurst: 1000,
	})
	must(t, err)
	go func() { _ = srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &replica{url: hs.URL, keys: keys}
}

// successor adds release version (name) to f's namespace with its own
// rollout to the same devices, opened at once.
func (f *fixture) successor(t *testing.T, name, version string, secVer int64) *fixture {
	t.Helper()
	ctx := rootCtx
	n := &fixture{ns: f.ns, vendorPEM: f.vendorPEM, vendorKey: f.vendorKey, image: make([]byte, 20_000)}
	_, _ = rand.Read(n.image)
	url := images.Put("/"+f.ns+"/"+name+".bin", n.image)
	n.release = releasetest.Release(f.ns, name, version, secVer, url, n.image, f.vendorKey.Sign(t, n.image))
	must(t, k8s.Create(ctx, n.release))
	releasetest.WaitReady(t, k8s, n.release, 30*time.Second)
	n.rollout = &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "to-" + name},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: name},
			Selector:   &metav1.LabelSelector{MatchLabels: f.labels()},
			Waves:      []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}},
		},
	}
	must(t, k8s.Create(ctx, n.rollout))
	n.setPhase(t, "Progressing")
	releasetest.Eventually(t, 10*time.Second, func() error {
		ro := cat.Snapshot().Rollout(n.rolloutKey())
		if ro == nil || !ro.View.ReleaseReady {
			return fmt.Errorf("catalog has not seen the rollout yet")
		}
		if c, ok := rep.Cutoffs(ro.UID); !ok || len(c) != 1 {
			return fmt.Errorf("cutoffs not computed yet")
		}
		return nil
	})
	return n
}

// flashDevice is a device whose reboot runs what was installed.
type flashDevice struct {
	*device
	mu      sync.Mutex
	running string
	pending string
	a       *agent.Agent
	// signers are the key IDs of the assignments the device was sent.
	signers []string
}

func (d *flashDevice) Running(context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running, nil
}

func (d *flashDevice) Install(_ context.Context, img agent.Image) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = img.Version
	return nil
}

func (d *flashDevice) Confirm(context.Context, string) error { return nil }

func (d *flashDevice) version() string { v, _ := d.Running(context.Background()); return v }

// RoundTrip records the key ID of every assignment in an update answer.
func (d *flashDevice) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.URL.Path != protov1.PathUpdate || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var u protov1.UpdateResponse
	if json.Unmarshal(b, &u) == nil && u.Assignment != nil {
		d.mu.Lock()
		d.signers = append(d.signers, u.Assignment.KeyID)
		d.mu.Unlock()
	}
	return resp, nil
}

// signedBy returns the key IDs recorded since the last call.
func (d *flashDevice) signedBy() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.signers
	d.signers = nil
	return s
}

func newFlashDevice(t *testing.T, f *fixture, id, server string, trusted []byte) *flashDevice {
	t.Helper()
	d := &flashDevice{running: "1.0.0"}
	d.device = newDevice(t, f, id, agent.NewMemStore(), d)
	d.cfg.ServerURL, d.cfg.AssignmentKeyPEM = server, trusted
	d.cfg.KeyCheckInterval = time.Millisecond // every step compares keys
	d.cfg.HTTPClient = &http.Client{Transport: d}
	d.cfg.Reboot = func(context.Context) error {
		d.mu.Lock()
		d.running = d.pending
		d.mu.Unlock()
		d.boot.Add(1)
		return nil
	}
	d.a = d.start(t)
	return d
}

// runTo steps the device until it runs version, reported success and
// checked in with it; every step must succeed.
func (d *flashDevice) runTo(t *testing.T, version string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.version() != version || d.a.State().Work != nil || len(d.a.State().Pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s runs %s, not %s (status %+v)", d.cfg.DeviceID, d.version(), version, d.a.Status())
		}
		if _, err := d.a.Step(rootCtx); err != nil {
			t.Fatalf("%s: %v", d.cfg.DeviceID, err)
		}
	}
}

func (d *flashDevice) trusts(t *testing.T, serial int64, keys ...rotationKey) {
	t.Helper()
	var want []string
	for _, k := range keys {
		want = append(want, k.id)
	}
	slices.Sort(want)
	if ids, s := d.a.TrustedKeyIDs(); !slices.Equal(ids, want) || s != serial {
		t.Fatalf("%s trusts %v at serial %d, want %v at %d", d.cfg.DeviceID, ids, s, want, serial)
	}
}

// TestKeyRotation: two OTA server replicas sign with the signing-key
// Secret they watch on the real API server. Devices polling through add
// (a new key published, not signing), switch (the new key signs, the old
// one still published) and retire (the old key removed) verify every
// assignment and end trusting only the new key; both replicas publish the
// same key set at every step. A device that was offline through the whole
// rotation refuses the next assignment as untrusted-signing-key, naming
// the key, which shows in the Rollout's failures; publishing the old key
// again (not signing) lets it follow.
func TestKeyRotation(t *testing.T) {
	ctx, cancel := context.WithCancel(rootCtx)
	t.Cleanup(cancel)
	f := newFixture(t, 20_000) // release 2.0.0 to every device of the namespace
	k1, k2 := newRotationKey(t), newRotationKey(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: signingSecret}, Data: map[string][]byte{"key.pem": k1.pem}}
	must(t, k8s.Create(ctx, secret))
	replicas := []*replica{startReplica(t, ctx, f.ns), startReplica(t, ctx, f.ns)}
	setSecret := func(data map[string][]byte) {
		t.Helper()
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret))
		secret.Data = data
		must(t, k8s.Update(ctx, secret))
	}
	// converged waits until every replica signs with current and serves
	// the same key set at serial.
	converged := func(serial int64, current rotationKey, keys ...rotationKey) {
		t.Helper()
		releasetest.Eventually(t, 10*time.Second, func() error {
			var docs [][]byte
			for i, r := range replicas {
				var info protov1.Info
				if err := getJSON(r.url+protov1.PathInfo, &info); err != nil {
					return err
				}
				if len(info.AssignmentKeyIDs) != len(keys) || info.AssignmentKeyIDs[0] != current.id || r.keys.Serial() != serial {
					return fmt.Errorf("replica %d: keys %v serial %d", i, info.AssignmentKeyIDs, r.keys.Serial())
				}
				var doc protov1.KeySetResponse
				if err := getJSON(r.url+protov1.PathKeys, &doc); err != nil {
					return err
				}
				docs = append(docs, doc.Payload)
			}
			if !bytes.Equal(docs[0], docs[1]) {
				return fmt.Errorf("replicas publish different key sets:\n%s\n%s", docs[0], docs[1])
			}
			return nil
		})
	}
	converged(1, k1, k1)

	var online []*flashDevice
	for i := range 4 {
		online = append(online, newFlashDevice(t, f, fmt.Sprintf("dev-rot-%d", i), replicas[i%2].url, k1.pub))
	}
	offline := newFlashDevice(t, f, "dev-rot-offline", replicas[0].url, k1.pub)
	for _, d := range append(slices.Clone(online), offline) {
		d.runTo(t, "2.0.0")
		if s := d.signedBy(); len(s) == 0 || slices.ContainsFunc(s, func(id string) bool { return id != k1.id }) {
			t.Fatalf("%s: assignments signed by %v, want %.16s", d.cfg.DeviceID, s, k1.id)
		}
	}
	// From here on, offline does not run.

	// Add: the new key is published and signs the key set, not assignments.
	setSecret(map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte(k1.id), "serial": []byte("2")})
	converged(2, k1, k1, k2)
	for _, d := range online {
		if _, err := d.a.Step(ctx); err != nil {
			t.Fatal(err)
		}
		d.trusts(t, 2, k1, k2)
	}

	// Switch: the new key signs; the old one is still published.
	setSecret(map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte("next.pem"), "serial": []byte("2")})
	converged(2, k2, k1, k2)
	f3 := f.successor(t, "fw-3", "3.0.0", 5)
	for _, d := range online {
		d.runTo(t, "3.0.0")
		if s := d.signedBy(); len(s) == 0 || slices.ContainsFunc(s, func(id string) bool { return id != k2.id }) {
			t.Fatalf("%s: assignments signed by %v, want %.16s", d.cfg.DeviceID, s, k2.id)
		}
	}
	f3.waitStatus(t, "3.0.0 installed everywhere", func(s otav1.RolloutStatus) bool {
		return len(s.Waves) == 1 && s.Waves[0].Succeeded == int64(len(online)) && s.Waves[0].Failed == 0
	})

	// A Secret version that would go back is refused: both replicas keep
	// signing with the set in use.
	setSecret(map[string][]byte{"key.pem": k1.pem, "serial": []byte("1")})
	time.Sleep(500 * time.Millisecond)
	converged(2, k2, k1, k2)

	// Retire: the old key leaves the set.
	setSecret(map[string][]byte{"next.pem": k2.pem, "current": []byte(k2.id), "serial": []byte("3")})
	converged(3, k2, k2)
	f4 := f.successor(t, "fw-4", "4.0.0", 6)
	for _, d := range online {
		d.runTo(t, "4.0.0")
		d.trusts(t, 3, k2)
		if s := d.signedBy(); len(s) == 0 || slices.ContainsFunc(s, func(id string) bool { return id != k2.id }) {
			t.Fatalf("%s: assignments signed by %v", d.cfg.DeviceID, s)
		}
		for _, e := range d.ev.refusals() {
			t.Errorf("%s refused: %+v", d.cfg.DeviceID, e)
		}
	}

	// The device that slept through the rotation trusts only the retired
	// key: it refuses the 4.0.0 assignment and reports why.
	_, err := offline.a.Step(ctx)
	if r, ok := agent.AsRefusal(err); !ok || r.Code != agent.RefuseUntrustedKey {
		t.Fatalf("offline device: %v, want %s", err, agent.RefuseUntrustedKey)
	}
	offline.trusts(t, 0, k1)
	status := f4.waitStatus(t, "the untrusted key in recentFailures", func(s otav1.RolloutStatus) bool {
		return hasFailure(s, offline.cfg.DeviceID, protov1.ReasonUntrustedSigningKey+": assignment signed by key "+k2.id)
	})
	for _, fl := range status.RecentFailures {
		t.Logf("Rollout %s: %s failed: %s", f4.rollout.Name, fl.Device, fl.Reason)
	}
	if offline.version() != "2.0.0" {
		t.Fatalf("offline device runs %s", offline.version())
	}

	// Recovery: the old key published again, not signing, signs the key
	// set, which the device then follows.
	setSecret(map[string][]byte{"old.pem": k1.pem, "next.pem": k2.pem, "current": []byte(k2.id), "serial": []byte("4")})
	converged(4, k2, k2, k1)
	if _, err := offline.a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	offline.trusts(t, 4, k1, k2)
}

func getJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(rootCtx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
