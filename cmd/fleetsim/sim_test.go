package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/otaflow/otaflow/agent"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

type staticCatalog struct{ s *catalog.Snapshot }

func (c staticCatalog) Snapshot() *catalog.Snapshot { return c.s }

type fixedCutoffs []uint64

func (f fixedCutoffs) Cutoffs(string) ([]uint64, bool) { return f, true }

// testServer runs an OTA server with a static catalog: release 2.0.0
// (securityVersion 3) rolled out to every sensor-v1 device, one open wave.
// With commit the rollout's spec.commit is set: devices that succeeded get
// a commit and raise their security floor to 3.
func testServer(t *testing.T, commit bool) (url string, assignPEM, vendorPEM []byte) {
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
	img := make([]byte, 50_000)
	_, _ = rand.Read(img)
	key, _ := envelope.NewKey()
	var enc bytes.Buffer
	if _, err := envelope.Encrypt(&enc, bytes.NewReader(img), key); err != nil {
		t.Fatal(err)
	}
	w, _ := blobs.Create(ctx)
	_, _ = w.Write(enc.Bytes())
	info, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vpub, vpriv, _ := ed25519.GenerateKey(rand.Reader)
	vendorPEM, _ = assignment.MarshalPublicKeyPEM(vpub)
	plain := sha256.Sum256(img)
	rel := otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw-2", UID: "uid-fw-2"},
		Spec: otav1.FirmwareReleaseSpec{Version: "2.0.0", SecurityVersion: 3,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
			Signature:     otav1.Signature{Value: base64.StdEncoding.EncodeToString(ed25519.Sign(vpriv, img))}},
		Status: otav1.FirmwareReleaseStatus{
			Artifact: &otav1.Artifact{PlainSHA256: hex.EncodeToString(plain[:]), Size: int64(len(img)),
				EncryptedSHA256: info.Digest, EncryptedSize: info.Size, Suite: envelope.Suite, KeySecretName: "fw-2-key",
				Version: "2.0.0", SecurityVersion: 3},
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
	keys := map[string]*corev1.Secret{"ns/fw-2-key": {
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw-2-key", Labels: map[string]string{controllers.LabelReleaseUID: "uid-fw-2"}},
		Data:       map[string][]byte{controllers.ContentKeyField: key},
	}}
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ro", UID: "rollout-uid", CreationTimestamp: metav1.Now()},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "fw-2"}, Selector: &metav1.LabelSelector{},
			Waves: []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}, Commit: commit},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
	}
	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := assignment.NewSigner(signKey)
	assignPEM, _ = assignment.MarshalPublicKeyPEM(signKey.Public())
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"a": []byte(bootTok)})
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: staticCatalog{catalog.BuildWith(catalog.BuildOptions{ClusterWideDevices: true}, []otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, keys)},
		Cutoffs: fixedCutoffs(rollout.Cutoffs([]rollout.WaveSize{{Percent: 100}}, nil)), Blobs: blobs, Signer: signer,
		Tokens: tokens, Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(), DeviceRate: 1000, DeviceBurst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, assignPEM, vendorPEM
}

// TestFleetsimAgainstServer runs the whole command against a real OTA
// server: 20 devices, us devices fail to install, one device in eu gets
// corrupted downloads, and reverts hit nobody. The rollout does not
// commit, so updated devices keep their floor (1) with 3 pending.
func TestFleetsimAgainstServer(t *testing.T) {
	url, assignPEM, vendorPEM := testServer(t, false)
	dir := t.TempDir()
	ak, vk, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "v.pem"), filepath.Join(dir, "summary.json")
	_ = os.WriteFile(ak, assignPEM, 0o600)
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run([]string{"--server", url, "--bootstrap-token", bootTok, "--assignment-key", ak, "--vendor-key", vk,
		"--devices", "20", "--labels", "region=eu:75,region=us:25", "--poll-interval", "100ms", "--security-floor", "1",
		"--install-failure", "1@region=us", "--revert", "0", "--duration", "4s", "--progress", "plain", "--summary-json", out,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var sum Summary
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Devices != 20 || sum.ByVersion["2.0.0"] != 15 || sum.ByVersion["1.0.0"] != 5 {
		t.Fatalf("byVersion %v (after %s)\n%s", sum.ByVersion, time.Since(start), stdout.String())
	}
	if sum.ByState["succeeded"] != 15 || sum.ByState["failed"] != 5 || sum.Refusals[agent.RefuseInstall] != 5 {
		t.Fatalf("byState %v refusals %v", sum.ByState, sum.Refusals)
	}
	for _, d := range sum.DevicesDetail {
		switch d.Version {
		case "2.0.0":
			// The floor is not raised at boot: it waits for the rollout's
			// commit, which this rollout never sends.
			if d.SecurityFloor != 1 || d.PendingFloor != 3 || d.LastState != "succeeded" {
				t.Fatalf("updated device %+v", d)
			}
		default:
			if d.SecurityFloor != 1 || d.PendingFloor != 0 || !strings.Contains(d.LastReason, "simulated flash write error") {
				t.Fatalf("failed device %+v", d)
			}
		}
	}
	if !strings.Contains(stdout.String(), "version") || !strings.Contains(stdout.String(), "2.0.0=15") {
		t.Fatalf("table:\n%s", stdout.String())
	}
}

// TestFleetsimCommit: with the rollout's spec.commit set, the server sends
// each device that succeeded a commit, and the simulated devices (through
// the agent library) raise their floor to the release's securityVersion.
// This depends on the OTA server sending commit answers.
func TestFleetsimCommit(t *testing.T) {
	url, assignPEM, vendorPEM := testServer(t, true)
	dir := t.TempDir()
	ak, vk, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "v.pem"), filepath.Join(dir, "summary.json")
	_ = os.WriteFile(ak, assignPEM, 0o600)
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--server", url, "--bootstrap-token", bootTok, "--assignment-key", ak, "--vendor-key", vk,
		"--devices", "5", "--poll-interval", "100ms", "--security-floor", "1",
		"--duration", "4s", "--progress", "none", "--summary-json", out,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var sum Summary
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.ByVersion["2.0.0"] != 5 || sum.ByState["succeeded"] != 5 || len(sum.Refusals) != 0 {
		t.Fatalf("byVersion %v byState %v refusals %v", sum.ByVersion, sum.ByState, sum.Refusals)
	}
	for _, d := range sum.DevicesDetail {
		if d.SecurityFloor != 3 || d.PendingFloor != 0 {
			t.Fatalf("device not committed: %+v", d)
		}
	}
}

// TestFleetsimLiveSummary: with --summary-interval the summary file is
// rewritten while the fleet runs, so a caller can watch the devices commit
// their floor before stopping them; the final summary replaces it on exit.
func TestFleetsimLiveSummary(t *testing.T) {
	url, assignPEM, vendorPEM := testServer(t, true)
	dir := t.TempDir()
	ak, vk, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "v.pem"), filepath.Join(dir, "summary.json")
	_ = os.WriteFile(ak, assignPEM, 0o600)
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	var stdout, stderr bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"--server", url, "--bootstrap-token", bootTok, "--assignment-key", ak, "--vendor-key", vk,
			"--devices", "5", "--poll-interval", "100ms", "--security-floor", "1",
			"--duration", "4s", "--progress", "none", "--summary-json", out, "--summary-interval", "50ms",
		}, &stdout, &stderr)
	}()
	committed := false
	for !committed {
		select {
		case code := <-exited:
			t.Fatalf("fleetsim exited (%d) before a live summary showed every floor committed: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		b, err := os.ReadFile(out)
		if err != nil {
			continue // not written yet
		}
		var sum Summary
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatalf("partial live summary: %v\n%s", err, b)
		}
		committed = sum.Devices == 5
		for _, d := range sum.DevicesDetail {
			committed = committed && d.Version == "2.0.0" && d.SecurityFloor == 3
		}
	}
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "live summary") {
		t.Fatalf("stderr: %s", stderr.String())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".summary.json") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

// bootTok is the cluster-wide bootstrap token of the simulated fleet.
const bootTok = "fleetsim-bootstrap-0123456789abcdef0123456789"
