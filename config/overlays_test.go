package config

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const ns = "otaflow-system"

// overlays are every layout a user can apply, with what they must be.
var overlays = []struct {
	dir      string
	replicas int32
	shared   bool // SQLite and blobs on one ReadWriteOnce volume
	split    bool // the OTA server in its own Deployment
}{
	{dir: "default", replicas: 1, shared: true},
	{dir: "overlays/single", replicas: 1, shared: true},
	{dir: "overlays/scaled", replicas: 2},
	{dir: "overlays/split", replicas: 2, split: true},
	{dir: "certmanager", replicas: 1, shared: true},
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &out
}

func all[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) []*T {
	var out []*T
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, convert[T](t, o))
		}
	}
	return out
}

func container(spec corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// otaServerPod is the pod template that runs the OTA server.
func otaServerPod(t *testing.T, objs []*unstructured.Unstructured, split bool) *corev1.PodTemplateSpec {
	t.Helper()
	name := "otaflow-controller-manager"
	if split {
		name = "otaflow-otaserver"
	}
	u := find(objs, "Deployment", name)
	if u == nil {
		t.Fatalf("no Deployment %s", name)
	}
	return &convert[appsv1.Deployment](t, u).Spec.Template
}

// flagValue is the value of --name in args, "" when absent.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func portNumber(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestOverlays checks the wiring of each layout as rendered.
func TestOverlays(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			objs := render(t, ov.dir)
			mgr := deployment(t, objs)
			pod := otaServerPod(t, objs, ov.split)
			ota := container(pod.Spec, "otaserver")
			if ota == nil {
				t.Fatal("no otaserver container")
			}
			if got := ptrValue(mgr.Spec.Replicas); got != ov.replicas {
				t.Errorf("manager replicas %d, want %d", got, ov.replicas)
			}
			if hasSidecar := container(mgr.Spec.Template.Spec, "otaserver") != nil; hasSidecar == ov.split {
				t.Errorf("manager pod runs the OTA server sidecar: %v, want %v", hasSidecar, !ov.split)
			}

			// Readiness: /readyz on the port the OTA server serves probes on.
			probePort := portNumber(ota, "ota-probes")
			if rp := ota.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.StrVal != "ota-probes" {
				t.Errorf("otaserver readiness probe %+v", ota.ReadinessProbe)
			}
			if addr := flagValue(ota.Args, "health-probe-bind-address"); probePort == 0 || !strings.HasSuffix(addr, ":"+strconv.Itoa(int(probePort))) {
				t.Errorf("probes served on %q, probed on port %d", addr, probePort)
			}

			pvcs := all[corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim")
			pvcVolumes := 0
			for _, tmpl := range []corev1.PodTemplateSpec{mgr.Spec.Template, *pod} {
				for _, v := range tmpl.Spec.Volumes {
					if v.PersistentVolumeClaim != nil {
						pvcVolumes++
					}
				}
			}
			if ov.shared {
				if len(pvcs) != 1 || pvcs[0].Spec.AccessModes[0] != corev1.ReadWriteOnce {
					t.Errorf("want one ReadWriteOnce claim, got %d", len(pvcs))
				}
				if mgr.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("a ReadWriteOnce volume needs Recreate, got %s", mgr.Spec.Strategy.Type)
				}
			} else {
				if len(pvcs) != 0 || pvcVolumes != 0 {
					t.Errorf("replicated layout with a volume claim (%d claims, %d volumes)", len(pvcs), pvcVolumes)
				}
				checkExternalStores(t, objs, mgr, pod)
			}
			if ov.replicas > 1 {
				checkReplicated(t, objs, &mgr.Spec, "control-plane")
			}
			if ov.split {
				checkReplicated(t, objs, &convert[appsv1.Deployment](t, find(objs, "Deployment", "otaflow-otaserver")).Spec, "app.kubernetes.io/component")
			}
			checkNetworkPolicies(t, objs, mgr, pod)
			checkDeviceService(t, objs, mgr, pod)
			checkDeviceAPI(t, objs, pod, ov.dir == "certmanager")
			checkAggregation(t, objs, false)
		})
	}
}

// TestAggregateToEditComponent: the opt-in component makes the release and
// rollout editors part of edit; DeviceEnrollments stay with admin.
func TestAggregateToEditComponent(t *testing.T) {
	checkAggregation(t, render(t, "testdata/aggregate-to-edit"), true)
}

// checkAggregation: editor roles aggregate into admin; into edit only with
// the component (a namespace editor cannot ship firmware by default); the
// DeviceEnrollment editor never into edit.
func checkAggregation(t *testing.T, objs []*unstructured.Unstructured, edit bool) {
	t.Helper()
	want := map[string]bool{
		"otaflow-firmwarerelease-editor-role":  edit,
		"otaflow-rollout-editor-role":          edit,
		"otaflow-deviceenrollment-editor-role": false,
	}
	for _, r := range all[rbacv1.ClusterRole](t, objs, "ClusterRole") {
		toEdit := r.Labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
		w, editor := want[r.Name]
		if !editor {
			if toEdit {
				t.Errorf("ClusterRole %s aggregates into edit", r.Name)
			}
			continue
		}
		delete(want, r.Name)
		if toEdit != w {
			t.Errorf("ClusterRole %s aggregates into edit: %v, want %v", r.Name, toEdit, w)
		}
		if r.Labels["rbac.authorization.k8s.io/aggregate-to-admin"] != "true" {
			t.Errorf("ClusterRole %s does not aggregate into admin", r.Name)
		}
	}
	for name := range want {
		t.Errorf("no ClusterRole %s", name)
	}
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// checkReplicated: rolling updates that never drop below the desired
// count, a PodDisruptionBudget over the pods, preferred spreading.
func checkReplicated(t *testing.T, objs []*unstructured.Unstructured, d *appsv1.DeploymentSpec, key string) {
	t.Helper()
	ru := d.Strategy.RollingUpdate
	if d.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
		t.Errorf("strategy %+v, want RollingUpdate maxUnavailable 0 maxSurge 1", d.Strategy)
	}
	podLabels := labels.Set(d.Template.Labels)
	covered := false
	for _, pdb := range all[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget") {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		covered = covered || sel.Matches(podLabels)
	}
	if !covered {
		t.Errorf("no PodDisruptionBudget selects pods %v", podLabels)
	}
	keys := map[string]bool{}
	for _, c := range d.Template.Spec.TopologySpreadConstraints {
		sel, _ := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if c.WhenUnsatisfiable == corev1.ScheduleAnyway && sel.Matches(podLabels) && c.LabelSelector.MatchLabels[key] != "" {
			keys[c.TopologyKey] = true
		}
	}
	if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
		t.Errorf("pods not spread (preferred) over nodes and zones: %v", keys)
	}
}

// checkExternalStores: both processes name the same blob store and the OTA
// server gets its device store DSN from a Secret that is rendered.
func checkExternalStores(t *testing.T, objs []*unstructured.Unstructured, mgr *appsv1.Deployment, pod *corev1.PodTemplateSpec) {
	t.Helper()
	m, o := container(mgr.Spec.Template.Spec, "manager"), container(pod.Spec, "otaserver")
	for _, c := range []*corev1.Container{m, o} {
		if flagValue(c.Args, "blob-store") != "$(OTAFLOW_BLOB_STORE)" {
			t.Errorf("%s: --blob-store not from the blob-store ConfigMap: %v", c.Name, c.Args)
		}
		if flagValue(c.Args, "blob-dir") != "" || flagValue(c.Args, "data-dir") != "" {
			t.Errorf("%s still uses a local directory: %v", c.Name, c.Args)
		}
		var ref *corev1.ConfigMapKeySelector
		for _, e := range c.Env {
			if e.Name == "OTAFLOW_BLOB_STORE" && e.ValueFrom != nil {
				ref = e.ValueFrom.ConfigMapKeyRef
			}
		}
		if ref == nil || find(objs, "ConfigMap", ref.Name) == nil {
			t.Errorf("%s: OTAFLOW_BLOB_STORE not from a rendered ConfigMap", c.Name)
		}
		if len(c.EnvFrom) == 0 || c.EnvFrom[0].SecretRef == nil || find(objs, "Secret", c.EnvFrom[0].SecretRef.Name) == nil {
			t.Errorf("%s: no blob store credentials", c.Name)
		}
	}
	var dsn *corev1.SecretKeySelector
	for _, e := range o.Env {
		if e.Name == "OTASERVER_STORE_DSN" && e.ValueFrom != nil {
			dsn = e.ValueFrom.SecretKeyRef
		}
	}
	if dsn == nil {
		t.Fatal("OTASERVER_STORE_DSN (--store-dsn) not from a Secret")
	}
	sec := find(objs, "Secret", dsn.Name)
	if sec == nil {
		t.Fatalf("Secret %s of the device store DSN not rendered", dsn.Name)
	}
	s := convert[corev1.Secret](t, sec)
	v := string(s.Data[dsn.Key]) + s.StringData[dsn.Key]
	if !strings.HasPrefix(v, "postgres://") {
		t.Errorf("device store DSN placeholder %q is not a PostgreSQL URL", v)
	}
}

// checkNetworkPolicies: the device port and the device API group's port
// (kube-apiserver's address is not known) are open to all, metrics only to
// monitoring namespaces, and every pod is covered.
func checkNetworkPolicies(t *testing.T, objs []*unstructured.Unstructured, mgr *appsv1.Deployment, ota *corev1.PodTemplateSpec) {
	t.Helper()
	pols := all[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy")
	covers := func(l map[string]string) []*networkingv1.NetworkPolicy {
		var out []*networkingv1.NetworkPolicy
		for _, p := range pols {
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Matches(labels.Set(l)) {
				out = append(out, p)
			}
		}
		return out
	}
	for _, tmpl := range []*corev1.PodTemplateSpec{&mgr.Spec.Template, ota} {
		ps := covers(tmpl.Labels)
		if len(ps) == 0 {
			t.Errorf("no NetworkPolicy covers pods %v", tmpl.Labels)
			continue
		}
		hasDevices := container(tmpl.Spec, "otaserver") != nil
		for _, p := range ps {
			for _, r := range p.Spec.Ingress {
				open := len(r.From) == 0
				for _, port := range r.Ports {
					name := "every port"
					if port.Port != nil {
						name = port.Port.String()
					}
					public := name == "devices" || name == "device-api"
					switch {
					case public && !hasDevices:
						t.Errorf("%s admits device traffic to pods without the device API", p.Name)
					case !public && open:
						t.Errorf("%s admits port %s from anywhere", p.Name, name)
					case !public:
						for _, f := range r.From {
							if f.NamespaceSelector == nil || f.NamespaceSelector.MatchLabels["metrics"] != "enabled" || f.PodSelector != nil || f.IPBlock != nil {
								t.Errorf("%s admits %s from %+v", p.Name, name, f)
							}
						}
					}
				}
				if len(r.Ports) == 0 {
					t.Errorf("%s admits every port", p.Name)
				}
			}
		}
	}
}

// checkDeviceService: the devices' Service reaches the OTA server pods only.
func checkDeviceService(t *testing.T, objs []*unstructured.Unstructured, mgr *appsv1.Deployment, ota *corev1.PodTemplateSpec) {
	t.Helper()
	svc := find(objs, "Service", "otaflow-ota-devices")
	if svc == nil {
		t.Fatal("no device Service")
	}
	s := convert[corev1.Service](t, svc)
	sel := labels.SelectorFromSet(s.Spec.Selector)
	if !sel.Matches(labels.Set(ota.Labels)) {
		t.Errorf("device Service %v does not select the OTA server pods %v", s.Spec.Selector, ota.Labels)
	}
	if container(mgr.Spec.Template.Spec, "otaserver") == nil && sel.Matches(labels.Set(mgr.Spec.Template.Labels)) {
		t.Error("device Service selects manager pods that serve no devices")
	}
}

// checkDeviceAPI: the APIService of devices.ota.otaflow.io names a Service
// that selects the OTA server pods on the port the OTA server serves the
// group on; its delegation RoleBinding lives in kube-system; with
// cert-manager the API server verifies the serving certificate.
func checkDeviceAPI(t *testing.T, objs []*unstructured.Unstructured, ota *corev1.PodTemplateSpec, verified bool) {
	t.Helper()
	as := find(objs, "APIService", "v1alpha1.devices.ota.otaflow.io")
	if as == nil {
		t.Fatal("no APIService for the device API group")
	}
	svcName, _, _ := unstructured.NestedString(as.Object, "spec", "service", "name")
	svc := find(objs, "Service", svcName)
	if svc == nil {
		t.Fatalf("the APIService names Service %q, which is not rendered", svcName)
	}
	s := convert[corev1.Service](t, svc)
	if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(ota.Labels)) {
		t.Errorf("device API Service %v does not select the OTA server pods %v", s.Spec.Selector, ota.Labels)
	}
	c := container(ota.Spec, "otaserver")
	port := ""
	for _, p := range c.Ports {
		if p.Name == s.Spec.Ports[0].TargetPort.String() {
			port = strconv.Itoa(int(p.ContainerPort))
		}
	}
	if port == "" || !slices.Contains(c.Args, "--device-api-bind-address=:"+port) {
		t.Errorf("the OTA server does not serve the device API on the Service's target port %q (port %q, args %v)", s.Spec.Ports[0].TargetPort.String(), port, c.Args)
	}
	skip, _, _ := unstructured.NestedBool(as.Object, "spec", "insecureSkipTLSVerify")
	inject := as.GetAnnotations()["cert-manager.io/inject-ca-from"]
	if verified && (skip || inject == "" || !slices.Contains(c.Args, "--device-api-tls-cert-file=/etc/otaflow/device-api-tls/tls.crt")) {
		t.Errorf("with cert-manager the device API must be verified: insecureSkipTLSVerify %v, inject-ca-from %q", skip, inject)
	}
	for _, b := range all[rbacv1.RoleBinding](t, objs, "RoleBinding") {
		if b.RoleRef.Name == "extension-apiserver-authentication-reader" && b.Namespace != "kube-system" {
			t.Errorf("RoleBinding %s to extension-apiserver-authentication-reader is in %q, not kube-system", b.Name, b.Namespace)
		}
	}
}

// TestSplitServiceAccounts: in the split layout the OTA server has its own
// ServiceAccount, bound to the OTA server's roles only, and the manager's
// ServiceAccount is not bound to them.
func TestSplitServiceAccounts(t *testing.T) {
	objs := render(t, "overlays/split")
	pod := otaServerPod(t, objs, true)
	sa := pod.Spec.ServiceAccountName
	if sa == "" || sa == deployment(t, objs).Spec.Template.Spec.ServiceAccountName || find(objs, "ServiceAccount", sa) == nil {
		t.Fatalf("OTA server ServiceAccount %q: must exist and differ from the manager's", sa)
	}
	bound := map[string][]string{}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, b := range all[rbacv1.RoleBinding](t, objs, kind) {
			for _, s := range b.Subjects {
				if s.Kind == "ServiceAccount" {
					bound[s.Name] = append(bound[s.Name], b.RoleRef.Kind+"/"+b.RoleRef.Name)
				}
			}
		}
	}
	slices.Sort(bound[sa])
	// The device API group delegates authentication and authorization.
	if want := []string{"ClusterRole/otaflow-otaserver-role", "ClusterRole/system:auth-delegator", "Role/extension-apiserver-authentication-reader", "Role/otaflow-otaserver-role"}; !slices.Equal(bound[sa], want) {
		t.Errorf("OTA server ServiceAccount bound to %v, want %v", bound[sa], want)
	}
	for _, r := range bound["otaflow-controller-manager"] {
		if strings.Contains(r, "otaserver") {
			t.Errorf("manager ServiceAccount bound to %s", r)
		}
	}
}

// TestOverlaysApplyToAPIServer applies every rendered overlay to a real API
// server (server-side dry run: admission, schema and RBAC validation), then
// applies the split layout for real and asks the API server what the OTA
// server's ServiceAccount may do.
func TestOverlaysApplyToAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	start := time.Now()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	// kubectl returns stdout; stderr (warnings) is appended on failure.
	kubectl := func(stdin []byte, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	// Namespaced objects cannot be dry-run into a namespace that does not
	// exist yet (the dry-run Namespace is not stored).
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}

	rendered := map[string][]byte{}
	for _, ov := range overlays {
		out, err := exec.Command("kubectl", "kustomize", ov.dir).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", ov.dir, err)
		}
		rendered[ov.dir] = out
		if ov.dir == "certmanager" {
			continue // needs cert-manager's CRDs; its Deployment is default's
		}
		t.Run("dry-run/"+ov.dir, func(t *testing.T) {
			if out, err := kubectl(rendered[ov.dir], "apply", "--server-side", "--dry-run=server", "--field-manager=otaflow-test", "-f", "-"); err != nil {
				t.Fatalf("the API server refuses %s: %v\n%s", ov.dir, err, out)
			}
		})
	}

	// The check fails on a broken overlay: an invalid rolling update
	// (maxUnavailable and maxSurge both 0) is refused.
	t.Run("dry-run/refuses-broken", func(t *testing.T) {
		broken := bytes.Replace(rendered["overlays/scaled"], []byte("maxSurge: 1"), []byte("maxSurge: 0"), 1)
		if bytes.Equal(broken, rendered["overlays/scaled"]) {
			t.Fatal("could not break the overlay")
		}
		if out, err := kubectl(broken, "apply", "--server-side", "--dry-run=server", "--field-manager=otaflow-test", "-f", "-"); err == nil {
			t.Fatalf("a broken Deployment was accepted:\n%s", out)
		}
	})

	t.Run("split/rbac", func(t *testing.T) {
		if out, err := kubectl(rendered["overlays/split"], "apply", "--server-side", "--field-manager=otaflow-test", "-f", "-"); err != nil {
			t.Fatalf("apply split: %v\n%s", err, out)
		}
		// RBAC: the OTA server may do what it needs and nothing else.
		ota := "system:serviceaccount:" + ns + ":otaflow-otaserver"
		mgr := "system:serviceaccount:" + ns + ":otaflow-controller-manager"
		for _, tc := range []struct {
			as   string
			args []string
			want bool
		}{
			{ota, []string{"get", "secrets", "-n", "tenant-a"}, true}, // content keys, by name
			{ota, []string{"list", "secrets", "-n", "tenant-a"}, false},
			{ota, []string{"watch", "secrets", "--all-namespaces"}, false},
			{ota, []string{"list", "secrets", "-n", ns}, false},
			{ota, []string{"watch", "secrets/otaflow-enrollment-tokens", "-n", ns}, true},
			{ota, []string{"list", "secrets/otaflow-enrollment-tokens", "-n", ns}, true},
			{ota, []string{"watch", "secrets/otaflow-assignment-key", "-n", ns}, true}, // signing keys rotate without a restart
			{ota, []string{"update", "secrets/otaflow-assignment-key", "-n", ns}, false},
			{ota, []string{"watch", "secrets/otaflow-assignment-key", "-n", "tenant-a"}, false},
			{ota, []string{"watch", "secrets/otaflow-device-ca", "-n", ns}, false},
			{ota, []string{"create", "secrets", "-n", ns}, false},
			{ota, []string{"delete", "secrets", "-n", "tenant-a"}, false},
			{ota, []string{"update", "secrets", "-n", ns}, false},
			{ota, []string{"watch", "rollouts.ota.otaflow.io", "--all-namespaces"}, true},
			{ota, []string{"watch", "deviceenrollments.ota.otaflow.io", "--all-namespaces"}, true},
			{ota, []string{"update", "deviceenrollments.ota.otaflow.io", "-n", "tenant-a"}, false},
			{ota, []string{"patch", "deviceenrollments.ota.otaflow.io", "--subresource=status", "-n", "tenant-a"}, true}, // status.enrolledDevices
			{ota, []string{"update", "deviceenrollments.ota.otaflow.io", "--subresource=status", "-n", "tenant-a"}, false},
			{ota, []string{"list", "firmwarereleases.ota.otaflow.io", "--all-namespaces"}, true},
			{ota, []string{"patch", "rollouts.ota.otaflow.io", "--subresource=status", "-n", "tenant-a"}, true},
			{ota, []string{"update", "rollouts.ota.otaflow.io", "--subresource=status", "-n", "tenant-a"}, false},
			{ota, []string{"update", "rollouts.ota.otaflow.io", "-n", "tenant-a"}, false},
			{ota, []string{"patch", "rollouts.ota.otaflow.io", "-n", "tenant-a"}, false},
			{ota, []string{"patch", "firmwarereleases.ota.otaflow.io", "--subresource=status", "-n", "tenant-a"}, false},
			{ota, []string{"create", "leases.coordination.k8s.io", "-n", ns}, true}, // the reporter's leader election
			{ota, []string{"create", "leases.coordination.k8s.io", "-n", "tenant-a"}, false},
			{ota, []string{"delete", "leases.coordination.k8s.io", "-n", ns}, false},
			{ota, []string{"create", "tokenreviews.authentication.k8s.io"}, true}, // metrics authentication
			{ota, []string{"create", "subjectaccessreviews.authorization.k8s.io"}, true},
			{ota, []string{"get", "configmaps", "-n", "tenant-a"}, false},
			// The manager keeps its own role, which the OTA server lacks.
			{mgr, []string{"create", "secrets", "-n", "tenant-a"}, true},
			{mgr, []string{"create", "leases.coordination.k8s.io", "-n", ns}, true},
			{mgr, []string{"create", "tokenreviews.authentication.k8s.io"}, true},
		} {
			args := append([]string{"auth", "can-i", "--as=" + tc.as}, tc.args...)
			out, err := kubectl(nil, args...)
			got := strings.TrimSpace(out) == "yes"
			if !got && strings.TrimSpace(out) != "no" {
				t.Fatalf("kubectl %v: %v\n%s", args, err, out)
			}
			if got != tc.want {
				who := "otaserver"
				if tc.as == mgr {
					who = "manager"
				}
				t.Errorf("%s can %v: %v, want %v", who, tc.args, got, tc.want)
			}
		}
	})

	// The OTA server's own code runs with nothing but its role: the catalog
	// (informers of releases and rollouts, content keys read by name) and
	// the enrollment Secret's watch, as the split layout's ServiceAccount.
	t.Run("split/otaserver-runs-with-its-role", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		scheme := runtime.NewScheme()
		utilruntime.Must(clientgoscheme.AddToScheme(scheme))
		utilruntime.Must(otav1.AddToScheme(scheme))
		admin, err := client.New(env.Config, client.Options{Scheme: scheme})
		if err != nil {
			t.Fatal(err)
		}
		as := rest.CopyConfig(env.Config)
		as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":otaflow-otaserver"}

		tenant := "tenant-b"
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}))
		rel := &otav1.FirmwareRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "fw"},
			Spec: otav1.FirmwareReleaseSpec{
				Version: "1.2.3", SecurityVersion: 1,
				Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
				Source:        otav1.Source{URL: "https://firmware.example.com/fw.bin", SHA256: strings.Repeat("a", 64)},
				Signature: otav1.Signature{Value: "c2ln", PublicKeys: []otav1.PublicKeySource{
					{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "cosign.pub"}}}},
			},
		}
		must(admin.Create(ctx, rel))
		must(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "fw-key", Labels: map[string]string{otav1.LabelReleaseUID: string(rel.UID)}},
			Data:       map[string][]byte{otav1.ContentKeyField: bytes.Repeat([]byte{7}, 32)},
		}))
		rel.Status.Artifact = &otav1.Artifact{
			PlainSHA256: strings.Repeat("a", 64), Size: 1, EncryptedSHA256: strings.Repeat("b", 64), EncryptedSize: 100,
			Suite: "otaflow-enc/v1", KeySecretName: "fw-key", Version: "1.2.3", SecurityVersion: 1, Generation: rel.Generation,
		}
		rel.Status.Conditions = []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", Message: "ready", LastTransitionTime: metav1.Now()}}
		must(admin.Status().Update(ctx, rel))

		cat, err := catalog.New(as, scheme, nil)
		must(err)
		catDone := make(chan error, 1)
		cctx, ccancel := context.WithCancel(ctx)
		go func() { catDone <- cat.Start(cctx) }()
		defer func() { ccancel(); <-catDone }()
		if !cat.WaitForSync(ctx) {
			t.Fatal("catalog did not sync with the OTA server's role")
		}
		if err := cat.Ready(); err != nil {
			t.Fatal(err)
		}
		if r := cat.Snapshot().PreviousRelease(tenant, "1.2.3", "sensor-v1"); r == nil || len(r.ContentKey) != 32 {
			t.Fatalf("release not servable through the OTA server's role: %+v", r)
		}

		counts := make(chan int, 10)
		tokens := otaserver.NewTokenSet()
		must(otaserver.WatchTokenSecret(cctx, as, scheme, ns, "otaflow-enrollment-tokens", tokens, func(n int) { counts <- n }))
		must(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otaflow-enrollment-tokens"},
			Data: map[string][]byte{"factory": []byte("bootstrap-token-1-0123456789abcdef0123"), "line-2": []byte("bootstrap-token-2-0123456789abcdef0123"),
				"short": []byte("bootstrap-token-3")}, // refused: under 32 bytes
		}))
	wait:
		for {
			select {
			case n := <-counts:
				if n == 2 {
					break wait
				}
			case <-ctx.Done():
				t.Fatal("the enrollment Secret's watch saw nothing with the OTA server's role")
			}
		}

		// A tenant's DeviceEnrollment and its token Secret, read with the
		// role's DeviceEnrollment watch and Secret get.
		must(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "factory-token"},
			Data: map[string][]byte{"token": []byte("tenant-b-token-0123456789abcdef0123456789")}}))
		must(admin.Create(ctx, &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "factory"},
			Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: "factory-token"}}}))
		// The signing-key Secret, watched by name as the role allows.
		_, signKey, err := ed25519.GenerateKey(rand.Reader)
		must(err)
		pemKey, err := assignment.MarshalPrivateKeyPEM(signKey)
		must(err)
		must(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otaflow-assignment-key"},
			Data: map[string][]byte{"key.pem": pemKey}}))
		keys := otaserver.NewSigningKeys(nil)
		must(otaserver.WatchSigningKeySecret(cctx, as, scheme, ns, "otaflow-assignment-key", "key.pem", keys, logr.Discard()))
		if keys.Serial() != 1 {
			t.Fatalf("signing keys read with the OTA server's role: serial %d", keys.Serial())
		}

		creds := otaserver.NewCredentialSet()
		must(otaserver.WatchCredentials(cctx, as, scheme, creds, otaserver.CredentialWatchOptions{Resync: 200 * time.Millisecond}))
		for creds.Len() != 1 {
			select {
			case <-ctx.Done():
				t.Fatal("the DeviceEnrollment's token was not read with the OTA server's role")
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}
