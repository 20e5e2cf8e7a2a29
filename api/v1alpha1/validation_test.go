package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s, err = client.New(env.Config, client.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

func validRelease(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ota.otaflow.io/v1alpha1",
		"kind":       "FirmwareRelease",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"version":         "2.1.0-rc.1+build.7",
			"securityVersion": int64(7),
			"compatibility":   map[string]any{"deviceTypes": []any{"sensor-v1"}},
			"source": map[string]any{
				"url":    "https://firmware.example.com/sensor.bin",
				"sha256": strings.Repeat("ab", 32),
				"size":   int64(1024),
			},
			"signature": map[string]any{
				"value":      "MEUCIQDk+/==",
				"publicKeys": []any{map[string]any{"secretRef": map[string]any{"name": "vendor-keys", "key": "cosign.pub"}}},
			},
		},
	}}
}

func validRollout(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ota.otaflow.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"releaseRef": map[string]any{"name": "sensor-2.1.0"},
			"selector":   map[string]any{"matchLabels": map[string]any{"region": "eu"}},
			"waves": []any{
				map[string]any{"name": "canary", "devices": int64(10), "pause": map[string]any{}},
				map[string]any{"name": "early", "devices": "10%", "pause": map[string]any{"duration": "30m"}},
				map[string]any{"name": "all", "devices": "100%"},
			},
			"successThreshold": "99.5%",
			"failureThreshold": "5%",
			"approvedWave":     "canary",
		},
	}}
}

func set(path string, v any) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		if err := unstructured.SetNestedField(u.Object, v, strings.Split(path, ".")...); err != nil {
			panic(err)
		}
	}
}

func unset(path string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		unstructured.RemoveNestedField(u.Object, strings.Split(path, ".")...)
	}
}

func waves(ws ...any) func(*unstructured.Unstructured) {
	return set("spec.waves", ws)
}

func wave(name string, devices any) map[string]any {
	return map[string]any{"name": name, "devices": devices}
}

// TestInvalidObjectsRefused sends objects that break one rule each and checks
// the apiserver refuses them with the rule's message.
func TestInvalidObjectsRefused(t *testing.T) {
	cases := []struct {
		name   string
		kind   string // "release" or "rollout"
		mutate func(*unstructured.Unstructured)
		want   string
	}{
		{"version not semver", "release", set("spec.version", "2.1"), "version must be a semantic version"},
		{"version with v prefix", "release", set("spec.version", "v2.1.0"), "version must be a semantic version"},
		{"version leading zero", "release", set("spec.version", "2.01.0"), "version must be a semantic version"},
		{"sha256 uppercase", "release", set("spec.source.sha256", strings.Repeat("AB", 32)), "sha256 must be 64 lowercase hex characters"},
		{"sha256 short", "release", set("spec.source.sha256", "abcd"), "sha256 must be 64 lowercase hex characters"},
		{"url ftp", "release", set("spec.source.url", "ftp://example.com/fw.bin"), "url must be an absolute http or https URL"},
		{"url relative", "release", set("spec.source.url", "fw.bin"), "url must be an absolute http or https URL"},
		{"negative size", "release", set("spec.source.size", int64(-1)), "spec.source.size in body should be greater than or equal to 0"},
		{"negative security version", "release", set("spec.securityVersion", int64(-3)), "spec.securityVersion in body should be greater than or equal to 0"},
		{"no device types", "release", set("spec.compatibility.deviceTypes", []any{}), "spec.compatibility.deviceTypes in body should have at least 1 items"},
		{"bad device type", "release", set("spec.compatibility.deviceTypes", []any{"sensor v1"}), "spec.compatibility.deviceTypes[0] in body should match"},
		{"signature value and bundle", "release", set("spec.signature.bundleRef", map[string]any{"name": "b", "key": "bundle.json"}), "exactly one of value or bundleRef must be set"},
		{"signature missing", "release", unset("spec.signature.value"), "exactly one of value or bundleRef must be set"},
		{"signature not base64", "release", set("spec.signature.value", "not base64!"), "value must be standard base64"},
		{"signature bad padding", "release", set("spec.signature.value", "abcde"), "value must be standard base64"},
		{"no trusted keys", "release", set("spec.signature.publicKeys", []any{}), "spec.signature.publicKeys in body should have at least 1 items"},

		{"duplicate wave names", "rollout", waves(wave("a", int64(5)), wave("a", "100%")), "Duplicate value"},
		{"last wave not 100%", "rollout", waves(wave("a", int64(5)), wave("b", "50%")), "the last wave must be \"100%\""},
		{"percentages decrease", "rollout", waves(wave("a", "50%"), wave("b", "20%"), wave("c", "100%")), "percentage waves must strictly increase"},
		{"percentages repeat", "rollout", waves(wave("a", "50%"), wave("b", "50%"), wave("c", "100%")), "percentage waves must strictly increase"},
		{"counts decrease", "rollout", waves(wave("a", int64(50)), wave("b", int64(20)), wave("c", "100%")), "count waves must strictly increase"},
		{"percentage over 100", "rollout", waves(wave("a", "150%"), wave("c", "100%")), "devices must be a count of at least 1 or a percentage from 1% to 100%"},
		{"zero devices", "rollout", waves(wave("a", int64(0)), wave("c", "100%")), "devices must be a count of at least 1 or a percentage from 1% to 100%"},
		{"devices not a number", "rollout", waves(wave("a", "ten"), wave("c", "100%")), "devices must be a count of at least 1 or a percentage from 1% to 100%"},
		{"wave name uppercase", "rollout", waves(wave("Canary", int64(1)), wave("c", "100%")), "spec.waves[0].name in body should match"},
		{"no waves", "rollout", waves(), "spec.waves: Required value"},
		{"success threshold over 100", "rollout", set("spec.successThreshold", "120%"), "successThreshold must be a percentage from 0% to 100%"},
		{"success threshold without %", "rollout", set("spec.successThreshold", "95"), "successThreshold must be a percentage from 0% to 100%"},
		{"failure threshold not a number", "rollout", set("spec.failureThreshold", "abc%"), "failureThreshold must be a percentage from 0% to 100%"},
		{"approved wave unknown", "rollout", set("spec.approvedWave", "nope"), "approvedWave must name one of the waves"},
		{"zero pause", "rollout", set("spec.waves", []any{map[string]any{"name": "a", "devices": int64(1), "pause": map[string]any{"duration": "0s"}}, wave("b", "100%")}), "pause duration must be positive"},
		{"device timeout too short", "rollout", set("spec.deviceTimeout", "10s"), "deviceTimeout must be at least 1m"},
		{"min failures zero", "rollout", set("spec.minFailures", int64(0)), "spec.minFailures in body should be greater than or equal to 1"},
		{"max offers zero", "rollout", set("spec.maxOffersPerMinute", int64(0)), "spec.maxOffersPerMinute in body should be greater than or equal to 1"},
		{"no release", "rollout", unset("spec.releaseRef"), "spec.releaseRef: Required value"},
	}
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("invalid-%d", i)
			obj := validRelease(name)
			if tc.kind == "rollout" {
				obj = validRollout(name)
			}
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

// TestValidObjectsAccepted makes sure the base objects above are valid, so
// each refusal is due to its one mutation.
func TestValidObjectsAccepted(t *testing.T) {
	ctx := context.Background()
	for _, obj := range []*unstructured.Unstructured{validRelease("valid-release"), validRollout("valid-rollout")} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetKind(), err)
		}
	}
	// Defaults are applied by the apiserver.
	got := &unstructured.Unstructured{}
	got.SetAPIVersion("ota.otaflow.io/v1alpha1")
	got.SetKind("Rollout")
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "valid-rollout"}, got); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{"spec.minFailures": int64(3), "spec.deviceTimeout": "2h", "spec.rollbackOnAbort": true} {
		v, _, _ := unstructured.NestedFieldNoCopy(got.Object, strings.Split(path, ".")...)
		if v != want {
			t.Errorf("%s defaulted to %v, want %v", path, v, want)
		}
	}
}

func TestReleaseRefImmutable(t *testing.T) {
	ctx := context.Background()
	ro := validRollout("immutable-ref")
	if err := k8s.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	set("spec.releaseRef.name", "other-release")(ro)
	err := k8s.Update(ctx, ro)
	if err == nil || !strings.Contains(err.Error(), "releaseRef is immutable") {
		t.Fatalf("update of releaseRef: got %v, want refusal saying releaseRef is immutable", err)
	}
	// Other fields stay mutable (approvals, pause, abort are spec fields).
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
		t.Fatal(err)
	}
	set("spec.paused", true)(ro)
	if err := k8s.Update(ctx, ro); err != nil {
		t.Fatalf("pause a rollout: %v", err)
	}
}

// TestSamplesAccepted applies every object in config/samples.
func TestSamplesAccepted(t *testing.T) {
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(data)), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err != nil {
				break
			}
			if len(obj.Object) == 0 {
				continue
			}
			ns := "samples"
			obj.SetNamespace(ns)
			if n == 0 {
				nsObj := &unstructured.Unstructured{}
				nsObj.SetAPIVersion("v1")
				nsObj.SetKind("Namespace")
				nsObj.SetName(ns)
				if err := k8s.Create(ctx, nsObj); err != nil {
					t.Fatal(err)
				}
			}
			if err := k8s.Create(ctx, obj); err != nil {
				t.Errorf("%s: %s %s refused: %v", filepath.Base(f), obj.GetKind(), obj.GetName(), err)
			}
			n++
		}
	}
	if n < 3 {
		t.Fatalf("found %d sample objects, want at least 3", n)
	}
}
