package otaserver_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const bootstrap = "bootstrap-token-1-0123456789abcdef0123"

// clusterWide: the harness's devices enroll through the cluster-wide token
// set (no tenant), so its rollouts select them in the cluster-wide mode.
var clusterWide = catalog.BuildOptions{ClusterWideDevices: true}

// fixedCutoffs opens waves by fixed cutoffs.
type fixedCutoffs struct{ c []uint64 }

func (f fixedCutoffs) Cutoffs(string) ([]uint64, bool) { return f.c, f.c != nil }

// swappable lets a test change the catalog between requests.
type swappable struct {
	mu sync.Mutex
	s  *catalog.Snapshot
}

func (s *swappable) Snapshot() *catalog.Snapshot { s.mu.Lock(); defer s.mu.Unlock(); return s.s }
func (s *swappable) set(n *catalog.Snapshot)     { s.mu.Lock(); s.s = n; s.mu.Unlock() }

type harness struct {
	t        testing.TB
	srv      *httptest.Server
	store    *sqlite.Store
	cat      *swappable
	verifier *assignment.Verifier
	image    []byte
	release  otav1.FirmwareRelease
	previous otav1.FirmwareRelease
	rollout  otav1.Rollout
	keys     map[string]*corev1.Secret
	cutoffs  *fixedCutoffs
	tokens   *otaserver.TokenSet
	signer   *assignment.Signer
	pub      crypto.PublicKey
	handler  http.Handler // the server's handler behind the contract checker
	core     *otaserver.Server
	contract *contract.Checker
	now      time.Time
	mu       sync.Mutex
}

// newHarness serves one Ready release (2.0.0) with a rollout in wave 0 of
// [50%, 100%], and an older Ready release 1.0.0 for rollbacks.
func newHarness(t testing.TB, rate float64) *harness {
	t.Helper()
	return newHarnessWrapped(t, rate, nil)
}

// newHarnessWrapped is newHarness with the server's store wrapped, so a
// test can interleave writes with a request's.
func newHarnessWrapped(t testing.TB, rate float64, wrap func(devicestore.Store) devicestore.Store) *harness {
	t.Helper()
	return newHarnessWith(t, rate, harnessOptions{wrap: wrap})
}

// harnessOptions vary the server a harness runs.
type harnessOptions struct {
	// wrap wraps the server's store.
	wrap func(devicestore.Store) devicestore.Store
	// blobs replaces the filesystem blob store.
	blobs blobstore.Store
	// redirectTTL sets Config.BlobRedirectTTL.
	redirectTTL time.Duration
	// creds sets Config.Credentials (namespaced bootstrap credentials).
	creds *otaserver.CredentialSet
}

func newHarnessWith(t testing.TB, rate float64, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	wrap := o.wrap
	store, err := sqlite.Open(ctx, filepath.Join(dir, "devices.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	blobs := o.blobs
	if blobs == nil {
		if blobs, err = blobstore.NewFS(filepath.Join(dir, "blobs")); err != nil {
			t.Fatal(err)
		}
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := assignment.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := assignment.NewVerifier(priv.Public())
	h := &harness{pub: priv.Public(), t: t, store: store, verifier: verifier, keys: map[string]*corev1.Secret{}, now: time.Now()}
	h.image = make([]byte, 100_000)
	_, _ = rand.Read(h.image)
	h.release = h.makeRelease(blobs, "fw-2", "2.0.0", 5, h.image)
	h.previous = h.makeRelease(blobs, "fw-1", "1.0.0", 3, []byte("old firmware image"))
	h.rollout = otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "rollout-uid-1", CreationTimestamp: metav1.Now()},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "fw-2"},
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			Waves:      []otav1.Wave{{Name: "half", Devices: intstr.FromString("50%")}, {Name: "all", Devices: intstr.FromString("100%")}},
		},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing, CurrentWave: 0},
	}
	h.cat = &swappable{}
	h.rebuild()
	h.cutoffs = &fixedCutoffs{c: rollout.Cutoffs([]rollout.WaveSize{{Percent: 50}, {Percent: 100}}, nil)}
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"a": []byte(bootstrap)})
	h.tokens, h.signer = tokens, signer
	var served devicestore.Store = store
	if wrap != nil {
		served = wrap(store)
	}
	s, err := otaserver.New(otaserver.Config{
		Store: served, Catalog: h.cat, Cutoffs: h.cutoffs, Blobs: blobs, Signer: signer, Tokens: tokens,
		Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(),
		DeviceRate: 1000, DeviceBurst: int(rate), Now: h.clock, BlobRedirectTTL: o.redirectTTL,
		Credentials: o.creds,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every request of every test goes through the contract checker
	// (docs/openapi.yaml), whatever the client: the test's own requests,
	// devicetest devices, the agent, fuzz targets in process, hostile
	// clients on raw connections. It fails the test at cleanup, after the
	// server below has closed.
	h.contract = contract.For(t)
	h.contract.BodyLimit = otaserver.MaxBodyBytes
	test, _, _ := strings.Cut(t.Name(), "/")
	if why, ok := invalidOnPurpose[test]; ok {
		h.contract.InvalidOnPurpose(test + ": " + why)
	}
	h.core = s
	h.handler = h.contract.Handler(s.Handler())
	h.srv = httptest.NewServer(h.handler)
	t.Cleanup(h.srv.Close)
	return h
}

// invalidOnPurpose names the tests that send requests the contract calls
// invalid on purpose, and what they send. The checker exempts their
// requests from request validation only while the server refuses them
// (4xx): an invalid request the server accepts still fails the test, and
// every answer is validated. These tests predate internal/contract and
// send such requests through helpers (raw, fuzzServe, http.DefaultClient,
// raw connections) that cannot mark them one by one; a new test marks
// each request with contract.Exempt instead of joining this list.
var invalidOnPurpose = map[string]string{
	"TestEnroll":                       "malformed, unknown-field, trailing-data and oversized bodies, a wrong media type, a wrong method, an unknown path, invalid fields",
	"TestUpdateAuthAndQuery":           "missing and malformed bearer tokens, missing, malformed and unknown query parameters",
	"TestBlobAccess":                   "no bearer token, a blob name that is not a digest",
	"TestStatusErrors":                 "no bearer token, malformed and oversized bodies, a wrong media type, an unknown state, failed without a reason",
	"TestUnauthenticatedEveryEndpoint": "missing and malformed bearer tokens on every endpoint, an empty bootstrap token",
	"TestHostileClients":               "slow bodies cut off by the read timeout",
	"TestOversizeRequests":             "a body announced at 1 GiB",
	"FuzzEnrollHandler":                "fuzzed bodies and media types",
	"FuzzStatusHandler":                "fuzzed bodies",
	"FuzzUpdateHandler":                "fuzzed queries",
	"FuzzBlobRequest":                  "fuzzed blob paths and Range, If-Range and If-None-Match headers",
	"FuzzBearerToken":                  "fuzzed Authorization headers",
}

func (h *harness) clock() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now }

func (h *harness) advance(d time.Duration) { h.mu.Lock(); h.now = h.now.Add(d); h.mu.Unlock() }

func (h *harness) rebuild() {
	h.cat.set(catalog.BuildWith(clusterWide, []otav1.Rollout{h.rollout}, []otav1.FirmwareRelease{h.release, h.previous}, h.keys))
}

func (h *harness) makeRelease(blobs blobstore.Store, name, version string, secVer int64, img []byte) otav1.FirmwareRelease {
	t := h.t
	key, _ := envelope.NewKey()
	var enc bytes.Buffer
	if _, err := envelope.Encrypt(&enc, bytes.NewReader(img), key); err != nil {
		t.Fatal(err)
	}
	w, err := blobs.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(enc.Bytes())
	info, err := w.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256(img)
	uid := "uid-" + name
	secName := name + "-key"
	h.keys["ns/"+secName] = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: secName, Labels: map[string]string{otav1.LabelReleaseUID: uid}},
		Data:       map[string][]byte{otav1.ContentKeyField: key},
	}
	return otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: k8stypes.UID(uid)},
		Spec: otav1.FirmwareReleaseSpec{
			Version: version, SecurityVersion: secVer,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
			Signature:     otav1.Signature{Value: "c2lnbmF0dXJl"},
		},
		Status: otav1.FirmwareReleaseStatus{
			Artifact: &otav1.Artifact{PlainSHA256: hex.EncodeToString(plain[:]), Size: int64(len(img)),
				EncryptedSHA256: info.Digest, EncryptedSize: info.Size, Suite: envelope.Suite, KeySecretName: secName, Version: version, SecurityVersion: secVer},
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
}

// device returns an enrolled device whose rank in the rollout is inside
// (inWave) or outside the first wave.
func (h *harness) device(id string, inWave bool) *devicetest.Device {
	h.t.Helper()
	id = h.idIn(id, inWave)
	d, err := devicetest.New(h.srv.URL, id, "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	if err != nil {
		h.t.Fatal(err)
	}
	d.SecurityFloor = 2
	resp, err := d.Enroll(context.Background(), bootstrap)
	if err != nil || resp.Status != 201 {
		h.t.Fatalf("enroll %s: %v %d %s", id, err, resp.Status, resp.Body)
	}
	return d
}

func catalogWith(h *harness, more ...otav1.Rollout) *catalog.Snapshot {
	return catalog.BuildWith(clusterWide, append([]otav1.Rollout{h.rollout}, more...), []otav1.FirmwareRelease{h.release, h.previous}, h.keys)
}

// verifierKey is the public key devices trust for assignments.
func (h *harness) verifierKey() crypto.PublicKey { return h.pub }

// idIn returns id, or id with a suffix, whose rank is inside (inWave) or
// outside the first wave.
func (h *harness) idIn(id string, inWave bool) string {
	for i := 0; ; i++ {
		cand := id
		if i > 0 {
			cand = id + "-" + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i)})
		}
		if r := rollout.Rank(string(h.rollout.UID), cand); (r <= h.cutoffs.c[0]) == inWave {
			return cand
		}
	}
}
