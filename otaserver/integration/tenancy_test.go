package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/otaserver/reporter"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// enrollment creates a DeviceEnrollment and its token Secret.
func enrollment(t *testing.T, ns, name, token string, mut func(*otav1.DeviceEnrollment)) {
	t.Helper()
	must(t, k8s.Create(rootCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token"},
		Data: map[string][]byte{"token": []byte(token)}}))
	e := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: name + "-token"}}}
	if mut != nil {
		mut(e)
	}
	must(t, k8s.Create(rootCtx, e))
}

func errCode(r devicetest.Response) string {
	var e protov1.Error
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// TestTenants: devices belong to the namespace of the DeviceEnrollment they
// enrolled through, and a Rollout offers only to its own namespace's
// devices — with a selector or an empty one — while cluster-wide devices
// (the cluster-wide Secret) are selected by nobody unless that mode is on.
// Enrollment limits (quota, expiry, allowlist, suspension, token rules,
// duplicate tokens) are enforced by the real server from the objects.
func TestTenants(t *testing.T) {
	ctx, cancel := context.WithCancel(rootCtx)
	defer cancel()
	// Tokens differ from earlier runs' DeviceEnrollments on the same API
	// server (-count): a token in two objects enrolls nothing.
	runID := rand.Text()
	token := func(prefix string) string { return prefix + "-" + runID + "-" + strings.Repeat("0123456789", 2) }
	nsA := releasetest.NewNamespace(t, k8s, "tenant-a-")
	nsB := releasetest.NewNamespace(t, k8s, "tenant-b-")
	_, relA := readyRelease(t, nsA)
	_, relB := readyRelease(t, nsB)
	mkRollout := func(ns, release string, sel *metav1.LabelSelector) *otav1.Rollout {
		ro := &otav1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "all"},
			Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: release}, Selector: sel,
				Waves: []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}}}
		must(t, k8s.Create(ctx, ro))
		openWave(t, ro, 0)
		return ro
	}
	roA := mkRollout(nsA, relA.Name, &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}})
	roB := mkRollout(nsB, relB.Name, nil) // empty selector: every device of B

	tokA, tokB, tokC := token("tenant-a"), token("tenant-b"), token("cluster")
	enrollment(t, nsA, "factory", tokA, func(e *otav1.DeviceEnrollment) { e.Spec.MaxDevices = ptr.To[int64](4) })
	enrollment(t, nsB, "factory", tokB, nil)
	enrollment(t, nsA, "short", "too-short", nil)
	enrollment(t, nsA, "paused", token("paused"), func(e *otav1.DeviceEnrollment) { e.Spec.Suspend = true })
	enrollment(t, nsA, "expired", token("expired"), func(e *otav1.DeviceEnrollment) {
		e.Spec.ExpiresAt = ptr.To(metav1.NewTime(time.Now().Add(-time.Minute)))
	})
	enrollment(t, nsA, "serials", token("serials"), func(e *otav1.DeviceEnrollment) { e.Spec.AllowedDeviceIDs = []string{"sn-1"} })
	enrollment(t, nsA, "dup-a", token("shared"), nil)
	enrollment(t, nsB, "dup-b", token("shared"), nil)

	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "devices.db"), sqlite.Options{})
	must(t, err)
	defer store.Close()
	cat, err := catalog.New(cfg, scheme, nil) // namespaced mode: the default
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
	creds := otaserver.NewCredentialSet()
	must(t, otaserver.WatchCredentials(ctx, cfg, scheme, creds, otaserver.CredentialWatchOptions{Resync: time.Second, Log: logr.Discard()}))
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"c": []byte(tokC)})
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: cat, Cutoffs: rep, Blobs: blobs, Signer: signer, Tokens: tokens, Credentials: creds,
		Metrics: otaserver.NewMetrics(reg), Log: logr.Discard(), DeviceRate: 100, DeviceBurst: 100,
		EnrollFailureBurst: 1000, // the refusals below all come from 127.0.0.1
	})
	must(t, err)
	go func() { _ = srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	dev := func(id string) *devicetest.Device {
		d, err := devicetest.New(hs.URL, id, "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
		must(t, err)
		return d
	}
	enroll := func(d *devicetest.Device, tok string, status int, code string) {
		t.Helper()
		r, err := d.Enroll(ctx, tok)
		must(t, err)
		if r.Status != status || (code != "" && errCode(r) != code) {
			t.Fatalf("enroll %s: %d %s, want %d %s", d.ID, r.Status, r.Body, status, code)
		}
	}
	// The credentials load asynchronously: wait for the first one to work.
	a1 := dev("a-1")
	releasetest.Eventually(t, 10*time.Second, func() error {
		r, err := a1.Enroll(ctx, tokA)
		if err != nil || r.Status != 201 {
			return fmt.Errorf("enroll through A: %v %d %s", err, r.Status, r.Body)
		}
		return nil
	})
	a := []*devicetest.Device{a1, dev("a-2"), dev("a-3")}
	for _, d := range a[1:] {
		enroll(d, tokA, 201, "")
	}
	b := []*devicetest.Device{dev("b-1"), dev("b-2")}
	for _, d := range b {
		enroll(d, tokB, 201, "")
	}
	c := dev("c-1")
	enroll(c, tokC, 201, "") // cluster-wide Secret: enrolls, but belongs to no tenant

	// Refusals, each with its reason.
	enroll(dev("x-1"), "too-short", 401, protov1.CodeBadBootstrap)
	enroll(dev("x-2"), token("paused"), 401, protov1.CodeBadBootstrap)
	enroll(dev("x-3"), token("shared"), 401, protov1.CodeBadBootstrap)
	enroll(dev("x-4"), token("expired"), 403, protov1.CodeForbidden)
	enroll(dev("sn-2"), token("serials"), 403, protov1.CodeForbidden)
	enroll(dev("sn-1"), token("serials"), 201, "")
	// b-1 (its own key) presents A's token: a device never changes
	// tenant, and its token keeps working (checked below).
	enroll(b[0], tokA, 409, protov1.CodeTenantMismatch)
	// Quota 4 for A's factory: three enrolled; one more, then refusals;
	// re-enrollment of a known device is not a new device.
	enroll(dev("a-4"), tokA, 201, "")
	enroll(dev("a-5"), tokA, 403, protov1.CodeEnrollmentQuota)
	enroll(a[0], tokA, 200, "")
	if n, err := store.EnrolledThrough(ctx, nsA, "factory"); err != nil || n != 4 {
		t.Fatalf("enrolled through %s/factory: %d, %v; want 4", nsA, n, err)
	}

	// Quota use shows in each DeviceEnrollment's status.
	es := &otaserver.EnrollmentStatus{Client: k8s, Store: store}
	must(t, es.Pass(ctx))
	for key, want := range map[client.ObjectKey]int64{{Namespace: nsA, Name: "factory"}: 4, {Namespace: nsB, Name: "factory"}: 2, {Namespace: nsA, Name: "serials"}: 1, {Namespace: nsA, Name: "paused"}: 0} {
		// The suite's client reads through a cache.
		releasetest.Eventually(t, 10*time.Second, func() error {
			var e otav1.DeviceEnrollment
			if err := k8s.Get(ctx, key, &e); err != nil {
				return err
			}
			if e.Status.EnrolledDevices != want {
				return fmt.Errorf("%s: status.enrolledDevices %d, want %d", key, e.Status.EnrolledDevices, want)
			}
			return nil
		})
	}

	// Offers: wait until both fleets are counted, then every device asks.
	for _, ro := range []*otav1.Rollout{roA, roB} {
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(ro), ro))
		uid := string(ro.UID)
		releasetest.Eventually(t, 10*time.Second, func() error {
			// One wave of 100%: its cutoff is the whole rank range once
			// computed.
			if cut, ok := rep.Cutoffs(uid); !ok || len(cut) != 1 || cut[0] != rollout.MaxRank {
				return fmt.Errorf("cutoffs of %s not computed: %v %v", ro.Namespace, cut, ok)
			}
			return nil
		})
	}
	offered := func(d *devicetest.Device) string {
		t.Helper()
		r, u, err := d.Check(ctx, "")
		must(t, err)
		switch r.Status {
		case 204:
			return ""
		case 200:
			return u.Rollout
		}
		t.Fatalf("%s: check-in %d %s", d.ID, r.Status, r.Body)
		return ""
	}
	for _, d := range a {
		if got := offered(d); got != nsA+"/all" {
			t.Errorf("%s (tenant A) offered %q, want %s/all", d.ID, got, nsA)
		}
	}
	for _, d := range b {
		if got := offered(d); got != nsB+"/all" {
			t.Errorf("%s (tenant B) offered %q, want %s/all", d.ID, got, nsB)
		}
	}
	if got := offered(c); got != "" {
		t.Errorf("cluster-wide device offered %q in the namespaced mode", got)
	}
	// Fleet sizes in status: A's rollout counts its 5 eu devices (a-1..a-4
	// and sn-1), B's its 2, neither the other's nor c-1.
	for ro, size := range map[*otav1.Rollout]int64{roA: 5, roB: 2} {
		releasetest.Eventually(t, 15*time.Second, func() error {
			var got otav1.Rollout
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
				return err
			}
			if got.Status.Fleet == nil || got.Status.Fleet.Size != size {
				return fmt.Errorf("%s fleet %+v, want size %d", ro.Namespace, got.Status.Fleet, size)
			}
			return nil
		})
	}

	// Rotating the token in its Secret: the old one stops enrolling within
	// the resync, the new one works, enrolled devices are untouched.
	var sec corev1.Secret
	must(t, k8s.Get(ctx, client.ObjectKey{Namespace: nsB, Name: "factory-token"}, &sec))
	newB := token("tenant-b-rotated")
	sec.Data["token"] = []byte(newB)
	must(t, k8s.Update(ctx, &sec))
	releasetest.Eventually(t, 10*time.Second, func() error {
		if r, _ := dev("b-3").Enroll(ctx, tokB); r.Status != 401 {
			return fmt.Errorf("old token still enrolls: %d", r.Status)
		}
		return nil
	})
	enroll(dev("b-4"), newB, 201, "")
	if got := offered(b[0]); got != nsB+"/all" {
		t.Errorf("b-1 after the rotation offered %q", got)
	}
}
