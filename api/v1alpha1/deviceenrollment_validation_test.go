package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func validDDIEnrollment(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ota.otaflow.io/v1alpha1",
		"kind":       "DeviceEnrollment",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"tokenSecretRef": map[string]any{"name": "factory-token"},
			"ddi": map[string]any{
				"deviceType":            "sensor-v1",
				"targetTokensSecretRef": map[string]any{"name": "ddi-targets"},
				"labels":                map[string]any{"region": "eu", "example.com/line": "l-2"},
			},
		},
	}}
}

// TestDDIEnrollmentRefused: spec.ddi mistakes are refused at apply time,
// each with its rule's message.
func TestDDIEnrollmentRefused(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*unstructured.Unstructured)
		want   string
	}{
		{"no device type", unset("spec.ddi.deviceType"), "spec.ddi.deviceType: Required value"},
		{"device type with space", set("spec.ddi.deviceType", "sensor v1"), "spec.ddi.deviceType in body should match"},
		{"device type too long", set("spec.ddi.deviceType", strings.Repeat("a", 64)), "spec.ddi.deviceType: Too long"},
		{"no way in", unset("spec.ddi.targetTokensSecretRef"), "ddi needs targetTokensSecretRef or gatewayToken: true"},
		{"gateway false, no target tokens", func(u *unstructured.Unstructured) {
			unset("spec.ddi.targetTokensSecretRef")(u)
			set("spec.ddi.gatewayToken", false)(u)
		}, "ddi needs targetTokensSecretRef or gatewayToken: true"},
		{"target Secret name invalid", set("spec.ddi.targetTokensSecretRef.name", "Not_A_Name"), "spec.ddi.targetTokensSecretRef.name in body should match"},
		{"target Secret name empty", set("spec.ddi.targetTokensSecretRef.name", ""), "spec.ddi.targetTokensSecretRef.name"},
		{"label key with space", set("spec.ddi.labels", map[string]any{"my region": "eu"}), "labels keys must be label keys"},
		{"label key prefix uppercase", set("spec.ddi.labels", map[string]any{"Example.com/region": "eu"}), "labels keys must be label keys"},
		{"label key name too long", set("spec.ddi.labels", map[string]any{strings.Repeat("k", 64): "eu"}), "labels keys must be label keys"},
		{"label key empty name", set("spec.ddi.labels", map[string]any{"example.com/": "eu"}), "labels keys must be label keys"},
		{"label value too long", set("spec.ddi.labels", map[string]any{"region": strings.Repeat("v", 64)}), "labels values must be label values"},
		{"label value ends with dash", set("spec.ddi.labels", map[string]any{"region": "eu-"}), "labels values must be label values"},
		{"too many labels", set("spec.ddi.labels", labels(33)), "spec.ddi.labels: Too many"},
	}
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := validDDIEnrollment(fmt.Sprintf("ddi-invalid-%d", i))
			tc.mutate(obj)
			err := k8s.Create(ctx, obj)
			if err == nil {
				_ = k8s.Delete(ctx, obj)
				t.Fatalf("apiserver accepted the object; want refusal with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q; want message containing %q", err, tc.want)
			}
		})
	}
}

// TestDDIEnrollmentAccepted: the base object above and the edges of the
// rules are valid, so each refusal is due to its mutation; gatewayToken
// defaults to false.
func TestDDIEnrollmentAccepted(t *testing.T) {
	ctx := context.Background()
	big := map[string]any{}
	for i := range 32 { // the most labels, at the longest keys and values
		big[fmt.Sprintf("%s.example.com/%s%02d", strings.Repeat("p", 241), strings.Repeat("n", 61), i)] = strings.Repeat("V", 63)
	}
	for name, mutate := range map[string]func(*unstructured.Unstructured){
		"base": func(*unstructured.Unstructured) {},
		"gateway only": func(u *unstructured.Unstructured) {
			unset("spec.ddi.targetTokensSecretRef")(u)
			set("spec.ddi.gatewayToken", true)(u)
		},
		"both":             set("spec.ddi.gatewayToken", true),
		"no labels":        unset("spec.ddi.labels"),
		"largest labels":   set("spec.ddi.labels", big),
		"odd label values": set("spec.ddi.labels", map[string]any{"a": "", "0/1": "2", "x_y.z": "A-1"}),
		"dotted type":      set("spec.ddi.deviceType", "Sensor.v1_b-2"),
	} {
		t.Run(name, func(t *testing.T) {
			obj := validDDIEnrollment("ddi-valid-" + strings.ReplaceAll(name, " ", "-"))
			mutate(obj)
			if err := k8s.Create(ctx, obj); err != nil {
				t.Fatalf("valid DeviceEnrollment refused: %v", err)
			}
		})
	}
	got := &unstructured.Unstructured{}
	got.SetAPIVersion("ota.otaflow.io/v1alpha1")
	got.SetKind("DeviceEnrollment")
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ddi-valid-base"}, got); err != nil {
		t.Fatal(err)
	}
	if v, found, _ := unstructured.NestedBool(got.Object, "spec", "ddi", "gatewayToken"); !found || v {
		t.Fatalf("spec.ddi.gatewayToken = %v (present %v), want defaulted to false", v, found)
	}
}
