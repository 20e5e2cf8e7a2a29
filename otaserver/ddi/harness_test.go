package ddi_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/ddi"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const (
	tenant    = "fleet"
	bootstrap = "bootstrap-token-1-0123456789abcdef0123"
)

// fakeAuth admits "tt-<id>" as the TargetToken of controller <id> of the
// tenant, and "gw-<tenant>" as its GatewayToken when gateway is set. It
// stands in for otaserver's DeviceEnrollment-backed authenticator, which
// has its own tests.
type fakeAuth struct {
	mu      sync.Mutex
	gateway bool
	max     int64
	refuse  string
}

func (f *fakeAuth) AuthenticateDDI(header, ns, id string, _ time.Time) (ddi.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	scheme, tok, _ := strings.Cut(header, " ")
	g := ddi.Grant{Namespace: tenant, Enrollment: "factory", MaxDevices: f.max, DeviceType: "sensor-v1", Labels: map[string]string{"region": "eu"}}
	switch {
	case strings.EqualFold(scheme, "TargetToken") && tok == "tt-"+id && ns == tenant:
	case strings.EqualFold(scheme, "GatewayToken") && f.gateway && tok == "gw-"+tenant && ns == tenant:
		g.Gateway = true
	default:
		return ddi.Grant{}, ddi.ErrUnauthenticated
	}
	g.RegisterRefused = f.refuse
	return g, nil
}

type swappable struct {
	mu sync.Mutex
	s  *catalog.Snapshot
}

func (s *swappable) Snapshot() *catalog.Snapshot { s.mu.Lock(); defer s.mu.Unlock(); return s.s }

type allOpen struct{}

func (allOpen) Cutoffs(string) ([]uint64, bool) { return []uint64{rollout.MaxRank}, true }

type harness struct {
	t        *testing.T
	srv      *httptest.Server
	store    *sqlite.Store
	core     *otaserver.Server
	auth     *fakeAuth
	cat      *swappable
	keys     map[string]*corev1.Secret
	image    []byte
	release  otav1.FirmwareRelease
	previous otav1.FirmwareRelease
	rollout  otav1.Rollout
	blobs    blobstore.Store
}

// newHarness serves a SWUpdate release 2.0.0 (fw-2) in a rollout of one
// 100% wave in namespace fleet selecting region=eu, and release 1.0.0
// (fw-1) for rollbacks, through the native API and the DDI front.
func newHarness(t *testing.T) *harness {
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
	h := &harness{t: t, store: store, keys: map[string]*corev1.Secret{}, blobs: blobs, auth: &fakeAuth{}, cat: &swappable{}}
	h.image = make([]byte, 300_000) // several envelope chunks
	_, _ = rand.Read(h.image)
	h.release = h.makeRelease("fw-2", "2.0.0", otav1.FormatSWUpdate, h.image)
	h.previous = h.makeRelease("fw-1", "1.0.0", otav1.FormatSWUpdate, []byte("old firmware image"))
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
	signer := newSigner(t)
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"a": []byte(bootstrap)})
	core, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: h.cat, Cutoffs: allOpen{}, Blobs: blobs, Signer: signer, Tokens: tokens,
		Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: testr.New(t), DeviceRate: 1000, DeviceBurst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.core = core
	front, err := ddi.New(ddi.Config{Core: core, Auth: h.auth, Fallback: core.Handler(), PollInterval: 5 * time.Minute, ActivePollInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Every request and answer is held to the contracts (contract_test.go).
	h.srv = httptest.NewServer(checked(t, front))
	t.Cleanup(h.srv.Close)
	return h
}

func newSigner(t *testing.T) *assignment.Signer {
	t.Helper()
	_, priv, err := ed25519Key()
	if err != nil {
		t.Fatal(err)
	}
	s, err := assignment.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (h *harness) rebuild() {
	h.cat.mu.Lock()
	defer h.cat.mu.Unlock()
	h.cat.s = catalog.Build([]otav1.Rollout{h.rollout}, []otav1.FirmwareRelease{h.release, h.previous}, h.keys)
}

func (h *harness) makeRelease(name, version string, format otav1.ReleaseFormat, img []byte) otav1.FirmwareRelease {
	t := h.t
	key, _ := envelope.NewKey()
	var enc bytes.Buffer
	if _, err := envelope.Encrypt(&enc, bytes.NewReader(img), key); err != nil {
		t.Fatal(err)
	}
	w, err := h.blobs.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(enc.Bytes())
	info, err := w.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s256, s1, m5 := sha256.Sum256(img), sha1.Sum(img), md5.Sum(img)
	uid := "uid-" + name
	secName := name + "-key"
	h.keys[tenant+"/"+secName] = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: secName, Labels: map[string]string{otav1.LabelReleaseUID: uid}},
		Data:       map[string][]byte{otav1.ContentKeyField: key},
	}
	a := &otav1.Artifact{PlainSHA256: hex.EncodeToString(s256[:]), Size: int64(len(img)),
		EncryptedSHA256: info.Digest, EncryptedSize: info.Size, Suite: envelope.Suite, KeySecretName: secName, Version: version, SecurityVersion: 1}
	if format.DDI() {
		a.PlainSHA1, a.PlainMD5, a.Filename = hex.EncodeToString(s1[:]), hex.EncodeToString(m5[:]), name+"-"+version+format.Extension()
	}
	return otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name, UID: k8stypes.UID(uid)},
		Spec: otav1.FirmwareReleaseSpec{
			Version: version, SecurityVersion: 1, Format: format,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
			Signature:     otav1.Signature{Value: "c2lnbmF0dXJl"},
		},
		Status: otav1.FirmwareReleaseStatus{
			Artifact:   a,
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
}

// resp is an answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", r.status, r.body, err)
	}
}

// do sends a request; href may be absolute (as in the answers' links).
func (h *harness) do(method, href, auth string, body string, hdr ...string) resp {
	h.t.Helper()
	if !strings.HasPrefix(href, "http") {
		href = h.srv.URL + href
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, href, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Accept", "application/json")
	if body != "" {
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
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func base(id string) string { return "/" + tenant + "/controller/v1/" + id }

func target(id string) string { return "TargetToken tt-" + id }

// poll GETs the root and returns it.
func (h *harness) poll(id string) ddi.Root {
	h.t.Helper()
	r := h.do(http.MethodGet, base(id), target(id), "")
	if r.status != http.StatusOK {
		h.t.Fatalf("poll %s: %d %s", id, r.status, r.body)
	}
	var root ddi.Root
	r.json(h.t, &root)
	return root
}

// identify PUTs the attributes SWUpdate sends from its identify section.
func (h *harness) identify(id, version string) {
	h.t.Helper()
	body := `{ "id": "", "time": "20261202T083000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "" ] }, "data" : {  "version": "` + version + `" } }`
	if r := h.do(http.MethodPut, base(id)+"/configData", target(id), body); r.status != http.StatusOK {
		h.t.Fatalf("configData: %d %s", r.status, r.body)
	}
}

func (h *harness) record(id string) devicestore.Record {
	h.t.Helper()
	rec, err := h.store.Record(context.Background(), string(h.rollout.UID), id)
	if err != nil {
		h.t.Fatalf("record of %s: %v", id, err)
	}
	return rec
}

// swuFeedback is SWUpdate's deployment feedback body.
func swuFeedback(id, execution, finished string, details ...string) string {
	q := make([]string, len(details))
	for i, d := range details {
		q[i] = `"` + d + `"`
	}
	return fmt.Sprintf(`{ "id": %s, "time": "20261202T083000", "status": { "result": { "progress": { "cnt" : 0, "of" : 1 }, "finished": "%s" }, "execution": "%s", "details" : [ %s ] } }`, id, finished, execution, strings.Join(q, ","))
}

// rhuFeedback is rauc-hawkbit-updater's feedback body.
func rhuFeedback(id, execution, finished, detail string) string {
	return fmt.Sprintf(`{"id":%q,"time":"20261202T083000","status":{"result":{"finished":%q},"execution":%q,"details":[%q]}}`, id, finished, execution, detail)
}

// lastSegment is the id at the end of a link.
func lastSegment(href string) string { return href[strings.LastIndex(href, "/")+1:] }

// enrollNative enrolls a native (otaflow agent) device through the
// cluster-wide bootstrap token.
func enrollNative(h *harness, id string) error {
	d, err := devicetest.New(h.srv.URL, id, "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	if err != nil {
		return err
	}
	r, err := d.Enroll(context.Background(), bootstrap)
	if err != nil {
		return err
	}
	if r.Status != http.StatusCreated {
		return fmt.Errorf("enroll %s: %d %s", id, r.Status, r.Body)
	}
	return nil
}

// offered registers the controller on 1.0.0 and returns the deploymentBase
// href its next poll links and the action id.
func (h *harness) offered(id string) (dep, aid string) {
	h.t.Helper()
	h.poll(id)
	h.identify(id, "1.0.0")
	dep = h.poll(id).Links["deploymentBase"].Href
	if dep == "" {
		h.t.Fatalf("%s: no deploymentBase after identify", id)
	}
	return dep, lastSegment(dep)
}
