// Package config holds the kustomize bases; this test renders them with
// kubectl's built-in kustomize and checks the wiring between the pieces.
package config

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
)

func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func TestDefaultDeploysManagerWithOTAServerSidecar(t *testing.T) {
	objs := render(t, "default")
	for _, want := range [][2]string{
		{"CustomResourceDefinition", "firmwarereleases.ota.otaflow.io"},
		{"CustomResourceDefinition", "rollouts.ota.otaflow.io"},
		{"ServiceAccount", "otaflow-controller-manager"},
		{"ClusterRole", "otaflow-manager-role"},
		{"ClusterRole", "otaflow-otaserver-role"},
		{"ClusterRoleBinding", "otaflow-otaserver-rolebinding"},
		{"Service", "otaflow-ota-devices"},
		{"PersistentVolumeClaim", "otaflow-data"},
	} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("config/default has no %s %s", want[0], want[1])
		}
	}
	d := deployment(t, objs)
	if d.Namespace != "otaflow-system" {
		t.Errorf("deployed to %q", d.Namespace)
	}
	spec := d.Spec.Template.Spec
	byName := map[string]corev1.Container{}
	for _, c := range spec.Containers {
		byName[c.Name] = c
	}
	mgr, ota := byName["manager"], byName["otaserver"]
	if mgr.Name == "" || ota.Name == "" {
		t.Fatalf("%d containers, want manager and otaserver", len(spec.Containers))
	}
	// Both share the data volume, and the manager writes blobs where the
	// OTA server reads them (<data-dir>/blobs).
	mount := func(c corev1.Container, vol string) string {
		for _, m := range c.VolumeMounts {
			if m.Name == vol {
				return m.MountPath
			}
		}
		return ""
	}
	if mount(mgr, "data") == "" || mount(mgr, "data") != mount(ota, "data") {
		t.Errorf("data volume mounted at %q (manager) and %q (otaserver)", mount(mgr, "data"), mount(ota, "data"))
	}
	if !slices.Contains(mgr.Args, "--blob-dir="+mount(mgr, "data")+"/blobs") || !slices.Contains(ota.Args, "--data-dir="+mount(ota, "data")) {
		t.Errorf("blob locations disagree: manager %v, otaserver %v", mgr.Args, ota.Args)
	}
	if !slices.Contains(mgr.Args, "--leader-elect") {
		t.Error("manager runs without leader election")
	}
	if mount(ota, "device-tls") == "" || !slices.Contains(ota.Args, "--tls-cert-file="+mount(ota, "device-tls")+"/tls.crt") {
		t.Errorf("otaserver does not serve TLS from the mounted certificate: %v", ota.Args)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s is not locked down: %+v", c.Name, sc)
		}
	}
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Error("pod may run as root")
	}
}

func TestCertManagerOverlayIssuesTheDeviceCertificate(t *testing.T) {
	objs := render(t, "certmanager")
	cert := find(objs, "Certificate", "otaflow-device-tls")
	if cert == nil {
		t.Fatal("no device Certificate")
	}
	secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	mounted := false
	for _, v := range deployment(t, objs).Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == secret)
	}
	if !mounted {
		t.Errorf("the Deployment does not mount the Certificate's Secret %q", secret)
	}
	if cert.GetNamespace() != "otaflow-system" {
		t.Errorf("Certificate in namespace %q", cert.GetNamespace())
	}
	issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	if find(objs, "Issuer", issuer) == nil {
		t.Errorf("Certificate refers to missing Issuer %q", issuer)
	}
}

func TestArgoCDHealthChecksRender(t *testing.T) {
	objs := render(t, "argocd")
	cm := find(objs, "ConfigMap", "argocd-cm")
	if cm == nil {
		t.Fatal("no argocd-cm")
	}
	for _, k := range []string{"resource.customizations.health.ota.otaflow.io_Rollout", "resource.customizations.health.ota.otaflow.io_FirmwareRelease"} {
		if v, _, _ := unstructured.NestedString(cm.Object, "data", k); !strings.Contains(v, "hs.status") {
			t.Errorf("argocd-cm key %s missing or not a health script", k)
		}
	}
}

func deployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u := find(objs, "Deployment", "otaflow-controller-manager")
	if u == nil {
		t.Fatal("no manager Deployment")
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}
