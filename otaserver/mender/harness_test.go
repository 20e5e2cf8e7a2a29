package mender_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/menderkey"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/mender"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const (
	tenant     = "fleet"
	enrollment = "factory"
	deviceType = "sensor-v1"
	// Tenant tokens of fakeAuth.
	tenantOK      = "tenant-ok"
	tenantPending = "tenant-pending"
	// Artifact names of the harness's releases.
	artifactNew = "release-2"
	artifactOld = "release-1"
)

// fakeAuth auto-accepts tenant token "tenant-ok"; knows "tenant-pending"
// but accepts none of its keys; without a tenant token admits the keys
// preauthorized (by device ID). It stands in for the DeviceEnrollment-
// backed authenticator, which otaserver's credential tests cover.
type fakeAuth struct {
	mu      sync.Mutex
	preauth map[string]bool
	max     int64
	refuse  string
	labels  map[string]string
}

func (f *fakeAuth) AcceptMender(tenantToken string, key menderkey.Key, _ time.Time) (mender.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case tenantToken == tenantOK:
	case tenantToken == "" && f.preauth[key.DeviceID()]:
	case tenantToken == "", tenantToken == tenantPending:
		return mender.Grant{}, fmt.Errorf("%w: not preauthorized", mender.ErrNotAccepted)
	default:
		return mender.Grant{}, mender.ErrUnknownTenant
	}
	return mender.Grant{
		Namespace: tenant, Enrollment: enrollment, MaxDevices: f.max, DeviceType: deviceType,
		Labels: maps.Clone(f.labels), RegisterRefused: f.refuse,
	}, nil
}

func (f *fakeAuth) EnrollmentLabels(namespace, name string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if namespace != tenant || name != enrollment {
		return nil
	}
	return maps.Clone(f.labels)
}

func (f *fakeAuth) set(fn func(f *fakeAuth)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type swappable struct {
	mu sync.Mutex
	s  *catalog.Snapshot
}

func (s *swappable) Snapshot() *catalog.Snapshot { s.mu.Lock(); defer s.mu.Unlock(); return s.s }

type allOpen struct{}

func (allOpen) Cutoffs(string) ([]uint64, bool) { return []uint64{rollout.MaxRank}, true }

type noBootstrap struct{}

func (noBootstrap) Valid(string) bool { return false }

// clock is the server's clock, moved by the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

const linkTTL = 10 * time.Minute

type harness struct {
	t        *testing.T
	srv      *httptest.Server
	store    *sqlite.Store
	core     *otaserver.Server
	auth     *fakeAuth
	tokens   *mender.TokenKeys
	k1       []byte // the token key "k1"
	clock    *clock
	cat      *swappable
	keys     map[string]*corev1.Secret
	blobs    blobstore.Store
	image    []byte
	release  otav1.FirmwareRelease
	previous otav1.FirmwareRelease
	rollout  otav1.Rollout
	// More rollouts and releases, after the harness's own.
	moreRollouts []otav1.Rollout
	moreReleases []otav1.FirmwareRelease
}

// option changes the harness's configuration before it is built.
type option func(cfg *otaserver.Config, front *mender.Config)

// newHarness serves Mender release 2.0.0 (fw-2, artifact release-2) in a
// rollout of one 100% wave in namespace fleet selecting region=eu, and
// release 1.0.0 (fw-1, artifact release-1) for rollbacks, through the
// Mender front with the native API as its fallback.
func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := sqlite.Open(ctx, filepath.Join(dir, "devices.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	blobs, err := blobstore.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, store: store, blobs: blobs, keys: map[string]*corev1.Secret{}, cat: &swappable{},
		auth:  &fakeAuth{preauth: map[string]bool{}, labels: map[string]string{"region": "eu"}},
		clock: &clock{now: time.Now().Truncate(time.Second)},
	}
	h.image = make([]byte, 300_000) // several envelope chunks
	_, _ = rand.Read(h.image)
	h.release = h.makeRelease("fw-2", "2.0.0", otav1.FormatMender, h.image, artifactNew, deviceType)
	h.previous = h.makeRelease("fw-1", "1.0.0", otav1.FormatMender, []byte("old firmware image"), artifactOld, deviceType)
	h.rollout = otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "ro", UID: "rollout-uid-1", CreationTimestamp: metav1.Now()},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "fw-2"},
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			Waves:      []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}},
		},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing, CurrentWave: 0},
	}
	h.rebuild()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := assignment.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	h.tokens, h.k1 = mender.NewTokenKeys(), randomKey()
	if err := h.tokens.Replace(map[string][]byte{"k1": h.k1}); err != nil {
		t.Fatal(err)
	}
	cfg := otaserver.Config{
		Store: store, Catalog: h.cat, Cutoffs: allOpen{}, Blobs: blobs, Signer: signer, Tokens: noBootstrap{},
		Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: testr.New(t), DeviceRate: 1000, DeviceBurst: 1000,
		EnrollFailureBurst: 1000, Now: h.clock.Now,
	}
	fcfg := mender.Config{Auth: h.auth, Keys: h.tokens, LinkTTL: linkTTL}
	for _, o := range opts {
		o(&cfg, &fcfg)
	}
	core, err := otaserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.core = core
	fcfg.Core, fcfg.Fallback = core, core.Handler()
	front, err := mender.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(checked(t, front))
	t.Cleanup(h.srv.Close)
	return h
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

func (h *harness) rebuild() {
	h.cat.mu.Lock()
	defer h.cat.mu.Unlock()
	h.cat.s = catalog.Build(append([]otav1.Rollout{h.rollout}, h.moreRollouts...),
		append([]otav1.FirmwareRelease{h.release, h.previous}, h.moreReleases...), h.keys)
}

// makeRelease stores img encrypted and returns a Ready release of it; a
// Mender release records the artifact's header (menderName, types).
func (h *harness) makeRelease(name, version string, format otav1.ReleaseFormat, img []byte, menderName string, types ...string) otav1.FirmwareRelease {
	t := h.t
	key, err := envelope.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if _, err := envelope.Encrypt(&enc, bytes.NewReader(img), key); err != nil {
		t.Fatal(err)
	}
	w, err := h.blobs.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(enc.Bytes()); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	uid := "uid-" + name
	secName := name + "-key"
	h.keys[tenant+"/"+secName] = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: secName, Labels: map[string]string{otav1.LabelReleaseUID: uid}},
		Data:       map[string][]byte{otav1.ContentKeyField: key},
	}
	a := &otav1.Artifact{PlainSHA256: hex.EncodeToString(sum[:]), Size: int64(len(img)), Filename: name + format.Extension(),
		EncryptedSHA256: info.Digest, EncryptedSize: info.Size, Suite: envelope.Suite, KeySecretName: secName, Version: version, SecurityVersion: 1}
	if format == otav1.FormatMender {
		a.Mender = &otav1.MenderArtifact{Name: menderName, DeviceTypes: types, PayloadTypes: []string{"rootfs-image"}}
	}
	return otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name, UID: k8stypes.UID(uid)},
		Spec: otav1.FirmwareReleaseSpec{
			Version: version, SecurityVersion: 1, Format: format,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{deviceType}},
			Signature:     otav1.Signature{Value: "c2lnbmF0dXJl"},
		},
		Status: otav1.FirmwareReleaseStatus{
			Artifact:   a,
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
}

func (h *harness) uid() string { return string(h.rollout.UID) }

// installID is the deployment id of the harness rollout's install.
func (h *harness) installID() string { return mender.DeploymentID(h.uid(), mender.KindInstall) }

// resp is an answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// do sends a request; href may be absolute (as download links are).
func (h *harness) do(method, href, token string, body []byte, hdr ...string) resp {
	h.t.Helper()
	if !strings.HasPrefix(href, "http") {
		href = h.srv.URL + href
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, href, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (h *harness) record(id string) devicestore.Record {
	h.t.Helper()
	rec, err := h.store.Record(context.Background(), h.uid(), id)
	if err != nil {
		h.t.Fatalf("record of %s: %v", id, err)
	}
	return rec
}

func (h *harness) device(id string) devicestore.Device {
	h.t.Helper()
	d, err := h.store.Device(context.Background(), id)
	if err != nil {
		h.t.Fatalf("device %s: %v", id, err)
	}
	return d
}

func (h *harness) failures() []devicestore.Failure {
	h.t.Helper()
	f, err := h.store.RecentFailures(context.Background(), h.uid(), 10)
	if err != nil {
		h.t.Fatal(err)
	}
	return f
}

// Paths of the Mender device API.
const (
	pathAuth      = "/api/devices/v1/authentication/auth_requests"
	pathNextV2    = "/api/devices/v2/deployments/device/deployments/next"
	pathNextV1    = "/api/devices/v1/deployments/device/deployments/next"
	pathInventory = "/api/devices/v1/inventory/device/attributes"
)

func deploymentPath(id, what string) string {
	return "/api/devices/v1/deployments/device/deployments/" + id + "/" + what
}

// client is a mender-client: its key, identity and last token.
type client struct {
	h      *harness
	signer crypto.Signer
	pem    string
	id     string
	mac    string
	token  string
}

// Keys of each kind mender-client makes; RSA 3072 takes a while to
// generate, so one is shared.
var rsa3072 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 3072) })

func newSigner(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var (
		s   crypto.Signer
		err error
	)
	switch kind {
	case "rsa":
		s, err = rsa3072()
	case "ecdsa-p256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publicPEM(t *testing.T, pub crypto.PublicKey) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), der
}

// deviceIDOf is "mender-" and 40 hex digits of the SHA-256 of the DER key.
func deviceIDOf(der []byte) string {
	sum := sha256.Sum256(der)
	return "mender-" + hex.EncodeToString(sum[:])[:40]
}

// newClient makes a client with an ECDSA P-256 key, or the kind given.
func (h *harness) newClient(kind ...string) *client {
	h.t.Helper()
	k := "ecdsa-p256"
	if len(kind) > 0 {
		k = kind[0]
	}
	s := newSigner(h.t, k)
	p, der := publicPEM(h.t, s.Public())
	mac := make([]byte, 6)
	_, _ = rand.Read(mac)
	return &client{h: h, signer: s, pem: p, id: deviceIDOf(der), mac: hex.EncodeToString(mac)}
}

// authBody is an auth request body as mender-client sends it.
func (c *client) authBody(tenantToken string) []byte {
	idData, _ := json.Marshal(map[string]string{"mac": c.mac})
	b, err := json.Marshal(mender.AuthRequest{IDData: string(idData), Pubkey: c.pem, TenantToken: tenantToken})
	if err != nil {
		c.h.t.Fatal(err)
	}
	return append(b, '\n')
}

// signature is X-MEN-Signature of body: RSA PKCS#1 v1.5 and ECDSA (ASN.1)
// over SHA-256, Ed25519 over the body.
func signature(t *testing.T, s crypto.Signer, body []byte) string {
	t.Helper()
	var (
		sig []byte
		err error
	)
	d := sha256.Sum256(body)
	switch k := s.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, d[:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, body)
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// postAuth sends an auth request with the signature given.
func (h *harness) postAuth(body []byte, sig string) resp {
	h.t.Helper()
	return h.do(http.MethodPost, pathAuth, "", body, "X-MEN-Signature", sig)
}

// auth sends the client's signed auth request with the tenant token.
func (c *client) auth(tenantToken string) resp {
	c.h.t.Helper()
	body := c.authBody(tenantToken)
	return c.h.postAuth(body, signature(c.h.t, c.signer, body))
}

// login authenticates through tenant-ok and keeps the token.
func (c *client) login() *client {
	c.h.t.Helper()
	r := c.auth(tenantOK)
	if r.status != http.StatusOK {
		c.h.t.Fatalf("auth of %s: %v", c.id, r)
	}
	c.token = string(r.body)
	return c
}

// next asks deployments/next (v2) as a client running artifact on devType.
func (c *client) next(artifact, devType string) resp {
	c.h.t.Helper()
	b, _ := json.Marshal(map[string]any{"device_provides": map[string]string{"artifact_name": artifact, "device_type": devType}, "update_control_map": false})
	return c.h.do(http.MethodPost, pathNextV2, c.token, b)
}

// offered asks next running release-1 and returns the deployment offered.
func (c *client) offered() mender.NextDeployment {
	c.h.t.Helper()
	r := c.next(artifactOld, deviceType)
	if r.status != http.StatusOK {
		c.h.t.Fatalf("next of %s: %v", c.id, r)
	}
	var nd mender.NextDeployment
	if err := json.Unmarshal(r.body, &nd); err != nil {
		c.h.t.Fatalf("next: %v: %s", err, r.body)
	}
	return nd
}

func (c *client) status(id, status string) resp {
	c.h.t.Helper()
	return c.h.do(http.MethodPut, deploymentPath(id, "status"), c.token, []byte(`{"status":"`+status+`"}`))
}

func (c *client) putLog(id string, msgs ...mender.LogMessage) resp {
	c.h.t.Helper()
	b, _ := json.Marshal(mender.DeploymentLog{Messages: msgs})
	return c.h.do(http.MethodPut, deploymentPath(id, "log"), c.token, b)
}

// inventory uploads attributes (name, value pairs) with PUT or PATCH.
func (c *client) inventory(method string, kv ...string) resp {
	c.h.t.Helper()
	attrs := []map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		attrs = append(attrs, map[string]string{"name": kv[i], "value": kv[i+1]})
	}
	b, _ := json.Marshal(attrs)
	return c.h.do(method, pathInventory, c.token, b)
}
