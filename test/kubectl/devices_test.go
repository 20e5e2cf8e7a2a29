package kubectl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/apimachinery/pkg/util/intstr"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/devicetest"
)

// TestDevicesWithKubectl: get, list with label and field selectors, wide
// output, pagination, describe and delete, with the real kubectl.
func TestDevicesWithKubectl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "fleet"
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tok, err := stack.CreateDeviceEnrollment(ctx, ns, "factory", 0)
	if err != nil {
		t.Fatal(err)
	}
	// 8 in eu, 4 in us; two eu devices still run 0.9.0.
	var eu, us []string
	devices := map[string]*devicetest.Device{}
	for i := range 12 {
		region, version := "eu", "1.0.0"
		if i >= 8 {
			region = "us"
		}
		if i < 2 {
			version = "0.9.0"
		}
		id := fmt.Sprintf("dev-%s-%02d", region, i)
		devices[id] = enroll(t, ctx, tok, id, version, map[string]string{"region": region})
		if region == "eu" {
			eu = append(eu, id)
		} else {
			us = append(us, id)
		}
	}
	// One eu device runs a newer version, one has a floor above the
	// release's securityVersion: the rollout below skips both.
	newer := enroll(t, ctx, tok, "dev-eu-newer", "3.0.0", map[string]string{"region": "eu"})
	floor := enroll(t, ctx, tok, "dev-eu-floor", "1.0.0", map[string]string{"region": "eu"})
	floor.SecurityFloor = 5
	eu = append(eu, "dev-eu-floor", "dev-eu-newer")
	slices.Sort(eu)
	// Another tenant's device is invisible here.
	otherTok := tenantToken(t, ctx, "elsewhere")
	enroll(t, ctx, otherTok, "dev-other-00", "1.0.0", map[string]string{"region": "eu"})

	out, err := kubectl(ctx, "get", "devices", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get devices -n %s:\n%s", ns, out)
	ls := lines(out)
	if len(ls) != 15 || !strings.HasPrefix(ls[0], "NAME") || !strings.Contains(ls[0], "VERSION") || !strings.Contains(ls[0], "LAST SEEN") {
		t.Fatalf("want a header and 14 devices:\n%s", out)
	}

	names := func(args ...string) []string {
		t.Helper()
		out, err := kubectl(ctx, append([]string{"get", "devices", "-n", ns, "-o", "name"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range lines(out) {
			ids = append(ids, strings.TrimPrefix(l, "device.devices.ota.otaflow.io/"))
		}
		slices.Sort(ids)
		return ids
	}
	if got := names("-l", "region=eu"); !slices.Equal(got, eu) {
		t.Errorf("-l region=eu: %v, want %v", got, eu)
	}
	if got := names("-l", "region!=eu"); !slices.Equal(got, us) {
		t.Errorf("-l region!=eu: %v, want %v", got, us)
	}
	if got := names("--field-selector", "status.version=0.9.0"); !slices.Equal(got, eu[:2]) {
		t.Errorf("--field-selector status.version=0.9.0: %v, want %v", got, eu[:2])
	}
	if got := names("--field-selector", "status.version!=0.9.0", "-l", "region=eu"); !slices.Equal(got, eu[2:]) {
		t.Errorf("status.version!=0.9.0,region=eu: %v, want %v", got, eu[2:])
	}
	if _, err := kubectl(ctx, "get", "devices", "-n", ns, "--field-selector", "status.colour=red"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("an unknown field selector: %v", err)
	}
	// kubectl pages with --chunk-size: 5 + 5 + 4 devices, each once.
	if got := names("--chunk-size=5"); len(got) != 14 || len(slices.Compact(slices.Clone(got))) != 14 {
		t.Errorf("paged by 5: %v", got)
	}
	checkRawPages(t, ctx, ns, 14)

	out, err = kubectl(ctx, "get", "devices", "-n", ns, "-o", "wide", "-l", "region=us")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get devices -o wide:\n%s", out)
	if h := lines(out)[0]; !strings.Contains(h, "PROTOCOL") || !strings.Contains(h, "FLOOR") || !strings.Contains(h, "ENROLLMENT") {
		t.Errorf("-o wide header: %s", h)
	}
	if !strings.Contains(out, "otaflow") || !strings.Contains(out, "factory") {
		t.Errorf("-o wide rows lack the protocol or enrollment:\n%s", out)
	}
	if _, err := kubectl(ctx, "get", "device", "dev-other-00", "-n", ns); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("another namespace's device: %v", err)
	}
	if got, err := kubectl(ctx, "get", "devices", "-A", "-o", "name", "-l", "region=eu"); err != nil || len(lines(got)) != 11 {
		t.Errorf("all namespaces, region=eu: %v\n%s", err, got)
	}

	// A rollout over eu: the fleet of 10 shrinks when a device is
	// decommissioned; records show in describe and select by field.
	if _, err := stack.PublishRelease(ctx, ns, "sensor-2.0.0", "2.0.0", 1, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: "sensor-2.0.0"}); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: "to-2.0.0"}
	if _, err := stack.CreateRollout(ctx, ns, key.Name, "sensor-2.0.0", func(ro *otav1.Rollout) {
		ro.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
		ro.Spec.Waves = []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}
		ro.Spec.MaxOffersPerMinute = nil
		ro.Spec.Paused = true
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, 10, 0); err != nil {
		t.Fatal(err)
	}
	decision := func(id string) devicesv1.DeviceDecision {
		t.Helper()
		out, err := kubectl(ctx, "get", "--raw", "/apis/devices.ota.otaflow.io/v1alpha1/namespaces/"+ns+"/devices/"+id+"/decision")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kubectl get --raw …/devices/%s/decision:\n%s", id, out)
		var d devicesv1.DeviceDecision
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decision(eu[0]); d.Action != "Nothing" || len(d.Rollouts) != 1 || d.Rollouts[0].Verdict != devicesv1.VerdictWait || d.Rollouts[0].Reason != "rollout not offering" {
		t.Errorf("a device of a paused rollout: %+v", d)
	}
	if d := decision(us[0]); len(d.Rollouts) != 1 || d.Rollouts[0].Verdict != devicesv1.VerdictNotInFleet || !strings.Contains(d.Rollouts[0].Reason, "selector") {
		t.Errorf("a device the selector leaves out: %+v", d)
	}
	patchRollout(t, ctx, key, func(ro *otav1.Rollout) { ro.Spec.Paused = false })
	waitOffering := time.Now().Add(time.Minute)
	for decision(eu[0]).Action != "Offer" {
		if time.Now().After(waitOffering) {
			t.Fatalf("never offered: %+v", decision(eu[0]))
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Reading the decision changed nothing: the device has no record yet.
	if out, _ := kubectl(ctx, "get", "device", eu[0], "-n", ns, "-o", "jsonpath={.status.rollouts}"); out != "" {
		t.Errorf("the decision wrote a record: %s", out)
	}
	for _, d := range []*devicetest.Device{newer, floor} {
		if r, _, err := d.Check(ctx, ""); err != nil || r.Status != http.StatusNoContent {
			t.Fatalf("check-in of %s: %v %d %s", d.ID, err, r.Status, r.Body)
		}
	}
	offered := eu[:2]
	for _, id := range offered {
		if r, _, err := devices[id].Check(ctx, ""); err != nil || r.Status != http.StatusOK {
			t.Fatalf("check-in of %s: %v %d %s", id, err, r.Status, r.Body)
		}
	}
	if got := names("--field-selector", "status.rollout=to-2.0.0,status.state=skipped"); !slices.Equal(got, []string{"dev-eu-floor", "dev-eu-newer"}) {
		t.Errorf("skipped in to-2.0.0: %v", got)
	}
	if got := names("--field-selector", "status.rollout=to-2.0.0,status.state=offered"); !slices.Equal(got, offered) {
		t.Errorf("offered in to-2.0.0: %v, want %v", got, offered)
	}
	if got := names("--field-selector", "status.rollout=to-2.0.0"); len(got) != 4 {
		t.Errorf("with a record in to-2.0.0: %v", got)
	}
	if got := names("--field-selector", "status.rollout=no-such-rollout"); len(got) != 0 {
		t.Errorf("in a rollout that does not exist: %v", got)
	}
	if d := decision("dev-eu-newer"); d.Rollouts[0].Verdict != devicesv1.VerdictSkip || d.Rollouts[0].Reason != rollout.ReasonSkipNotNewer {
		t.Errorf("the newer device: %+v", d)
	}
	if d := decision("dev-eu-floor"); d.Rollouts[0].Verdict != devicesv1.VerdictSkip || d.Rollouts[0].Reason != rollout.ReasonSkipBelowFloor {
		t.Errorf("the device with a higher floor: %+v", d)
	}
	if d := decision(eu[0]); d.Action != "Resend" || d.Rollout != key.Name || d.Rollouts[0].State != "offered" {
		t.Errorf("an offered device: %+v", d)
	}
	out, err = kubectl(ctx, "get", "devices", "-n", ns, "-o", "wide", "--field-selector", "status.state=skipped")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get devices -o wide --field-selector status.state=skipped:\n%s", out)
	if !strings.Contains(out, rollout.ReasonSkipNotNewer) || !strings.Contains(out, "to-2.0.0") {
		t.Errorf("the skip reason is not shown:\n%s", out)
	}

	out, err = kubectl(ctx, "describe", "device", eu[0], "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl describe device:\n%s", out)
	for _, want := range []string{"Name:", eu[0], "Namespace:", ns, "region=eu", "Version:", "0.9.0", "Protocol:", "otaflow", "Enrolled At:",
		"Rollouts:", "Rollout:", "to-2.0.0", "Release:", ns + "/sensor-2.0.0", "State:", "offered", "Previous Version:", "Offered At:"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q", want)
		}
	}

	victim := eu[7]
	if r, _, err := devices[victim].Check(ctx, ""); err != nil || r.Status != http.StatusOK {
		t.Fatalf("check-in of %s: %v %d %s", victim, err, r.Status, r.Body)
	}
	waitRollout(t, ctx, key, func(ro *otav1.Rollout) bool {
		return len(ro.Status.Waves) == 1 && ro.Status.Waves[0].Targeted == 10 && ro.Status.Waves[0].InProgress == 3
	})
	out, err = kubectl(ctx, "delete", "device", victim, "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `device.devices.ota.otaflow.io "`+victim+`" deleted`) {
		t.Errorf("delete said: %s", out)
	}
	if _, err := kubectl(ctx, "get", "device", victim, "-n", ns); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("a deleted device: %v", err)
	}
	if _, err := kubectl(ctx, "delete", "device", victim, "-n", ns); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("deleting it again: %v", err)
	}
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, 9, 0); err != nil {
		t.Fatalf("the fleet after a decommission: %v", err)
	}
	if got := names("-l", "region=eu"); len(got) != 9 || slices.Contains(got, victim) {
		t.Errorf("eu after the delete: %v", got)
	}
	// Its token no longer works, and it left the counts: 2 offered remain.
	if r, _, err := devices[victim].Check(ctx, ""); err != nil || r.Status != http.StatusUnauthorized {
		t.Errorf("a decommissioned device's check-in: %v %d %s", err, r.Status, r.Body)
	}
	ro := waitRollout(t, ctx, key, func(ro *otav1.Rollout) bool {
		return len(ro.Status.Waves) == 1 && ro.Status.Waves[0].Targeted == 9 && ro.Status.Waves[0].InProgress == 2
	})
	t.Logf("after the decommission: %+v", ro.Status.Waves[0])
}

// tenantToken makes namespace ns with an enrollment "factory".
func tenantToken(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tok, err := stack.CreateDeviceEnrollment(ctx, ns, "factory", 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkRawPages walks the list by limit/continue as a client does and
// checks each device comes once.
func checkRawPages(t *testing.T, ctx context.Context, ns string, want int) {
	t.Helper()
	seen := map[string]bool{}
	cont, pages := "", 0
	for {
		path := "/apis/devices.ota.otaflow.io/v1alpha1/namespaces/" + ns + "/devices?limit=5"
		if cont != "" {
			path += "&continue=" + cont
		}
		out, err := kubectl(ctx, "get", "--raw", path)
		if err != nil {
			t.Fatal(err)
		}
		var l devicesv1.DeviceList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		pages++
		if len(l.Items) > 5 {
			t.Fatalf("page %d has %d items, limit 5", pages, len(l.Items))
		}
		for _, d := range l.Items {
			if seen[d.Name] {
				t.Fatalf("device %s on two pages", d.Name)
			}
			seen[d.Name] = true
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if len(seen) != want || pages != 3 {
		t.Errorf("%d devices in %d pages, want %d in 3", len(seen), pages, want)
	}
	if _, err := kubectl(ctx, "get", "--raw", "/apis/devices.ota.otaflow.io/v1alpha1/namespaces/"+ns+"/devices?limit=5&continue=bogus"); err == nil || !strings.Contains(err.Error(), "continue") {
		t.Errorf("a bogus continue token: %v", err)
	}
}

// TestDeviceRBAC: a ServiceAccount without RBAC on devices is refused by
// the device API (through the API server's SubjectAccessReview); one with
// get/list reads but cannot delete.
func TestDeviceRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "rbac"
	tok := tenantToken(t, ctx, ns)
	enroll(t, ctx, tok, "dev-rbac-0", "1.0.0", nil)
	c := stack.CP.Client
	for _, name := range []string{"nobody", "reader"} {
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "device-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{devicesv1.GroupName}, Resources: []string{"devices", "devices/decision"}, Verbs: []string{"get", "list"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "device-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "reader"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	nobody, reader := saToken(t, ctx, ns, "nobody"), saToken(t, ctx, ns, "reader")

	_, err := kubectlAs(ctx, nobody, "get", "devices", "-n", ns)
	if err == nil || !strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), `cannot list resource "devices" in API group "devices.ota.otaflow.io"`) {
		t.Errorf("a ServiceAccount without RBAC listed devices: %v", err)
	}
	if _, err := kubectlAs(ctx, nobody, "get", "device", "dev-rbac-0", "-n", ns); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("a ServiceAccount without RBAC read a device: %v", err)
	}
	// RBAC takes a moment to reach the authorizer's cache.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := kubectlAs(ctx, reader, "get", "devices", "-n", ns, "-o", "name")
		if err == nil {
			if !strings.Contains(out, "dev-rbac-0") {
				t.Errorf("the reader sees: %s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader cannot list: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := kubectlAs(ctx, reader, "delete", "device", "dev-rbac-0", "-n", ns); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("the reader deleted a device: %v", err)
	}
	if _, err := kubectlAs(ctx, reader, "get", "devices", "-n", "fleet"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("the reader listed another namespace: %v", err)
	}
	if _, err := kubectl(ctx, "get", "device", "dev-rbac-0", "-n", ns); err != nil {
		t.Errorf("the device is gone after refused deletes: %v", err)
	}
}

// saToken requests a token for a ServiceAccount (TokenRequest API).
func saToken(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(stack.CP.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

func patchRollout(t *testing.T, ctx context.Context, key client.ObjectKey, change func(*otav1.Rollout)) {
	t.Helper()
	if err := harness.PatchRollout(ctx, stack.CP.Client, key, change); err != nil {
		t.Fatal(err)
	}
}

// waitRollout waits until the rollout's status satisfies done.
func waitRollout(t *testing.T, ctx context.Context, key client.ObjectKey, done func(*otav1.Rollout) bool) *otav1.Rollout {
	t.Helper()
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, key, nil,
		func(ro *otav1.Rollout) (bool, error) { return done(ro), nil })
	if err != nil {
		t.Fatalf("%v (OTA server log: %s)", err, stack.OTAServer.LogPath())
	}
	return ro
}
