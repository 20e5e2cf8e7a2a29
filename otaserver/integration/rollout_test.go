package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/otaserver/reporter"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readyRelease publishes a signed image and waits for the controller to
// make the release Ready.
func readyRelease(t *testing.T, ns string) ([]byte, *otav1.FirmwareRelease) {
	key := releasetest.NewEd25519Key(t)
	must(t, k8s.Create(rootCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-keys"},
		Data: map[string][]byte{"cosign.pub": key.PEM}}))
	img := make([]byte, 200_000)
	_, _ = rand.Read(img)
	rel := releasetest.Release(ns, "fw-2", "2.0.0", 4, images.Put("/"+ns+"/fw.bin", img), img, key.Sign(t, img))
	must(t, k8s.Create(rootCtx, rel))
	releasetest.WaitReady(t, k8s, rel, 30*time.Second)
	return img, rel
}

// openWave plays the Rollout controller's part: it applies the fields the
// controller owns, with its field manager.
func openWave(t *testing.T, ro *otav1.Rollout, wave int) {
	waves := []any{}
	for _, w := range ro.Spec.Waves {
		waves = append(waves, map[string]any{"name": w.Name})
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
		"phase": "Progressing", "currentWave": int64(wave), "waves": waves,
	}}}
	u.SetAPIVersion(otav1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(ro.Namespace)
	u.SetName(ro.Name)
	must(t, k8s.Status().Apply(rootCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("otaflow-manager"), client.ForceOwnership))
}

func TestRolloutEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(rootCtx)
	defer cancel()
	ns := releasetest.NewNamespace(t, k8s, "ota-")
	img, rel := readyRelease(t, ns)

	ro := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "eu"},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: rel.Name},
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			Waves: []otav1.Wave{
				{Name: "canary", Devices: intstr.FromInt32(2), Pause: &otav1.WavePause{}},
				{Name: "all", Devices: intstr.FromString("100%")},
			},
		},
	}
	must(t, k8s.Create(ctx, ro))
	openWave(t, ro, 0)

	// The OTA server, wired as cmd/otaserver wires it.
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "devices.db"), sqlite.Options{})
	must(t, err)
	defer store.Close()
	cat, err := catalog.NewWithOptions(cfg, scheme, []string{ns}, catalog.Options{Build: catalog.BuildOptions{ClusterWideDevices: true}})
	must(t, err)
	go func() { _ = cat.Start(ctx) }()
	if !cat.WaitForSync(ctx) {
		t.Fatal("catalog did not sync")
	}
	reg := prometheus.NewRegistry()
	rep, err := reporter.New(reporter.Config{Client: k8s, Catalog: cat, Store: store, Interval: 200 * time.Millisecond, Heartbeat: time.Second, Log: logr.Discard(), Registerer: reg})
	must(t, err)
	go func() { _ = rep.Run(ctx) }()
	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := assignment.NewSigner(signKey)
	verifier, _ := assignment.NewVerifier(signKey.Public())
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"t": []byte("enroll-me-0123456789abcdef0123456789")})
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: cat, Cutoffs: rep, Blobs: blobs, Signer: signer, Tokens: tokens,
		Metrics: otaserver.NewMetrics(reg), Log: logr.Discard(), DeviceRate: 100, DeviceBurst: 100,
	})
	must(t, err)
	go func() { _ = srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	// Six devices in the fleet, one outside the selector.
	var fleet []*devicetest.Device
	for i := range 7 {
		region := "eu"
		if i == 6 {
			region = "us"
		}
		d, err := devicetest.New(hs.URL, fmt.Sprintf("dev-%d", i), "sensor-v1", "1.0.0", map[string]string{"region": region})
		must(t, err)
		d.SecurityFloor = 1
		if r, err := d.Enroll(ctx, "enroll-me-0123456789abcdef0123456789"); err != nil || r.Status != 201 {
			t.Fatalf("enroll: %v %d %s", err, r.Status, r.Body)
		}
		fleet = append(fleet, d)
	}
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	uid := string(ro.UID)
	// The canary is the two lowest ranks among the six matching devices.
	eu := slices.Clone(fleet[:6])
	sort.Slice(eu, func(i, j int) bool { return rollout.Rank(uid, eu[i].ID) < rollout.Rank(uid, eu[j].ID) })
	canary := map[string]bool{eu[0].ID: true, eu[1].ID: true}
	// Until the reporter has counted the fleet, count waves offer nothing.
	releasetest.Eventually(t, 10*time.Second, func() error {
		if c, ok := rep.Cutoffs(uid); !ok || c[0] == rollout.MaxRank {
			return fmt.Errorf("cutoffs not computed: %v", c)
		}
		return nil
	})

	for _, d := range fleet {
		r, u, err := d.Check(ctx, "")
		must(t, err)
		if !canary[d.ID] {
			if r.Status != 204 {
				t.Fatalf("%s (not in canary) got %d %s", d.ID, r.Status, r.Body)
			}
			continue
		}
		if r.Status != 200 || u.Action != "install" {
			t.Fatalf("%s (canary) got %d %s", d.ID, r.Status, r.Body)
		}
		a, err := d.Verify(verifier, u.Assignment)
		must(t, err)
		if a.Version != "2.0.0" || a.EncryptedSHA256 != rel.Status.Artifact.EncryptedSHA256 || a.VendorSignature != rel.Spec.Signature.Value {
			t.Fatalf("assignment %+v", a)
		}
		blob, err := d.Download(ctx, a, a.EncryptedSize/3) // resume mid-blob
		must(t, err)
		plain, err := d.Decrypt(a, blob)
		must(t, err)
		if sum := sha256.Sum256(plain); hex.EncodeToString(sum[:]) != a.PlainSHA256 || len(plain) != len(img) {
			t.Fatal("decrypted image differs")
		}
		for i, st := range []protov1.State{"downloading", "downloaded", "installing", "installed", "succeeded"} {
			r, err := d.Report(ctx, protov1.StatusReport{ReportID: fmt.Sprint(i), Rollout: u.Rollout, State: st})
			if err != nil || r.Status != 200 {
				t.Fatalf("report %s: %v %d %s", st, err, r.Status, r.Body)
			}
		}
		d.Version = "2.0.0"
		if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
			t.Fatalf("check-in on new version: %d", r.Status)
		}
	}

	want := []otav1.WaveStatus{
		{Name: "canary", Targeted: 2, Offered: 2, Succeeded: 2},
		{Name: "all", Targeted: 4},
	}
	releasetest.Eventually(t, 15*time.Second, func() error {
		var got otav1.Rollout
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			return err
		}
		return checkStatus(got.Status, want, 6, 0)
	})

	// Nothing changes now, yet the server's heartbeat keeps reportedAt
	// moving: the controller tells a quiet fleet from a silent server.
	var quiet otav1.Rollout
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(ro), &quiet))
	before := quiet.Status.Fleet.ReportedAt.Time
	releasetest.Eventually(t, 10*time.Second, func() error {
		var got otav1.Rollout
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			return err
		}
		if !got.Status.Fleet.ReportedAt.After(before) {
			return fmt.Errorf("reportedAt still %s", got.Status.Fleet.ReportedAt)
		}
		return checkStatus(got.Status, want, 6, 0)
	})

	// Open wave 1: the other four are offered; fail one, leave the rest.
	openWave(t, ro, 1)
	releasetest.Eventually(t, 10*time.Second, func() error {
		r, _, err := eu[2].Check(ctx, "")
		if err != nil || r.Status != 200 {
			return fmt.Errorf("wave 1 not open yet: %v %d", err, r.Status)
		}
		return nil
	})
	if r, _ := eu[2].Report(ctx, protov1.StatusReport{ReportID: "f", Rollout: ns + "/eu", State: "failed", Reason: "flash write error"}); r.Status != 200 {
		t.Fatalf("failure report: %d", r.Status)
	}
	for _, d := range eu[3:] {
		if r, _, _ := d.Check(ctx, ""); r.Status != 200 {
			t.Fatalf("%s in wave 1: %d", d.ID, r.Status)
		}
	}
	want = []otav1.WaveStatus{
		{Name: "canary", Targeted: 2, Offered: 2, Succeeded: 2},
		{Name: "all", Targeted: 4, Offered: 4, InProgress: 3, Failed: 1},
	}
	var final otav1.Rollout
	releasetest.Eventually(t, 15*time.Second, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), &final); err != nil {
			return err
		}
		return checkStatus(final.Status, want, 6, 1)
	})
	if f := final.Status.RecentFailures; len(f) != 1 || f[0].Device != eu[2].ID || f[0].Wave != "all" || f[0].Reason != "flash write error" {
		t.Fatalf("recentFailures %+v", f)
	}
	// The controller's fields are untouched, and each manager owns its own.
	if final.Status.Phase != otav1.RolloutProgressing || final.Status.CurrentWave != 1 {
		t.Fatalf("controller fields changed: %+v", final.Status)
	}
	managers := map[string]bool{}
	for _, mf := range final.ManagedFields {
		if mf.Subresource == "status" {
			managers[mf.Manager] = true
		}
	}
	if !managers[reporter.FieldOwner] || !managers["otaflow-manager"] {
		t.Fatalf("status managers %v", managers)
	}
}

func checkStatus(s otav1.RolloutStatus, want []otav1.WaveStatus, size int64, observed int32) error {
	if s.Fleet == nil || s.Fleet.Size != size || s.Fleet.ObservedWave != observed {
		return fmt.Errorf("fleet %+v, want size %d observedWave %d", s.Fleet, size, observed)
	}
	if len(s.Waves) != len(want) {
		return fmt.Errorf("waves %+v", s.Waves)
	}
	for i, w := range want {
		g := s.Waves[i]
		g.StartedAt, g.CompletedAt = nil, nil
		if g != w {
			return fmt.Errorf("wave %d: %+v, want %+v", i, g, w)
		}
	}
	return nil
}
