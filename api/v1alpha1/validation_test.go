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

// expr sets a selector of one requirement; no values leaves values out.
func expr(key, op string, vals ...string) func(*unstructured.Unstructured) {
	req := map[string]any{"key": key, "operator": op}
	if len(vals) > 0 {
		vs := make([]any, len(vals))
		for i, v := range vals {
			vs[i] = v
		}
		req["values"] = vs
	}
	return set("spec.selector", map[string]any{"matchExpressions": []any{req}})
}

func labels(n int) map[string]any {
	m := map[string]any{}
	for i := range n {
		m[fmt.Sprintf("example.com/label-%d", i)] = "v"
	}
	return m
}

func values(n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("v%d", i)
	}
	return vs
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
		{"url ftp", "release", set("spec.source.url", "ftp://example.com/fw.bin"), "url must be an absolute http, https, s3 or oci URL"},
		{"url relative", "release", set("spec.source.url", "fw.bin"), "url must be an absolute http, https, s3 or oci URL"},
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
		{"target selection unknown", "rollout", set("spec.targetSelection", "Sometimes"), `spec.targetSelection: Unsupported value: "Sometimes"`},
		{"offline after too short", "rollout", set("spec.offlineAfter", "5s"), "offlineAfter must be at least 10s"},
		{"progress deadline too short", "rollout", set("spec.progressDeadline", "30s"), "progressDeadline must be at least 1m"},

		// Selectors, checked as the apiserver checks those of built-in kinds.
		{"selector operator lowercase", "rollout", expr("region", "in", "eu"), "matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist"},
		{"selector operator unknown", "rollout", expr("region", "Equals", "eu"), "matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist"},
		{"selector In without values", "rollout", expr("region", "In"), "matchExpressions with operator In or NotIn need at least one value"},
		{"selector NotIn with empty values", "rollout", set("spec.selector", map[string]any{"matchExpressions": []any{map[string]any{"key": "region", "operator": "NotIn", "values": []any{}}}}), "matchExpressions with operator In or NotIn need at least one value"},
		{"selector Exists with values", "rollout", expr("region", "Exists", "eu"), "Exists and DoesNotExist take none"},
		{"selector DoesNotExist with values", "rollout", expr("region", "DoesNotExist", "eu"), "Exists and DoesNotExist take none"},
		{"selector key starts with dash", "rollout", expr("-region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key with space", "rollout", expr("my region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key empty", "rollout", expr("", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key name too long", "rollout", expr(strings.Repeat("a", 64), "Exists"), "matchExpressions keys must be label keys"},
		{"selector key prefix uppercase", "rollout", expr("Example.com/region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key prefix empty", "rollout", expr("/region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key prefix too long", "rollout", expr(strings.Repeat("a", 254)+"/region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key two slashes", "rollout", expr("example.com/a/b", "Exists"), "matchExpressions keys must be label keys"},
		{"selector key prefix dot dash", "rollout", expr("example.-com/region", "Exists"), "matchExpressions keys must be label keys"},
		{"selector value with space", "rollout", expr("region", "In", "eu", "eu west"), "matchExpressions values must be label values"},
		{"selector value too long", "rollout", expr("region", "In", strings.Repeat("v", 64)), "matchExpressions values must be label values"},
		{"selector value ends with dot", "rollout", expr("region", "NotIn", "eu."), "matchExpressions values must be label values"},
		{"selector label key bad", "rollout", set("spec.selector", map[string]any{"matchLabels": map[string]any{"region!": "eu"}}), "matchLabels keys must be label keys"},
		{"selector label value bad", "rollout", set("spec.selector", map[string]any{"matchLabels": map[string]any{"region": "_eu"}}), "matchLabels values must be label values"},
		{"selector too many labels", "rollout", set("spec.selector", map[string]any{"matchLabels": labels(65)}), "selector may have at most 16 matchExpressions, 32 values per expression and 64 matchLabels"},
		{"selector too many values", "rollout", expr("region", "In", values(33)...), "selector may have at most 16 matchExpressions, 32 values per expression and 64 matchLabels"},
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
	for path, want := range map[string]any{
		"spec.minFailures": int64(3), "spec.deviceTimeout": "2h", "spec.rollbackOnAbort": true,
		"spec.targetSelection": "Snapshot", "spec.offlineAfter": "24h", "spec.progressDeadline": "48h",
	} {
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

// edit reads obj afresh, applies the mutations and updates it; the error is
// the apiserver's answer.
func edit(t *testing.T, obj *unstructured.Unstructured, mutate ...func(*unstructured.Unstructured)) error {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	for _, m := range mutate {
		m(obj)
	}
	return k8s.Update(context.Background(), obj)
}

func TestValidSelectorsAccepted(t *testing.T) {
	ctx := context.Background()
	var exprs []any
	for i := range 16 { // the largest selector allowed, at the longest key and value lengths
		vals := make([]any, 32)
		for j := range vals {
			vals[j] = fmt.Sprintf("%s-%02d", strings.Repeat("v", 60), j)
		}
		exprs = append(exprs, map[string]any{
			"key":      fmt.Sprintf("%s.example.com/%s%02d", strings.Repeat("p", 241), strings.Repeat("n", 61), i),
			"operator": "In", "values": vals,
		})
	}
	big := map[string]any{}
	for i := range 64 {
		big[fmt.Sprintf("%s.example.com/%s%02d", strings.Repeat("p", 241), strings.Repeat("n", 61), i)] = strings.Repeat("V", 63)
	}
	for name, sel := range map[string]map[string]any{
		"every operator": {
			"matchLabels": map[string]any{"example.com/region": "eu-west_1.a", "tier": "", "Ring": "0"},
			"matchExpressions": []any{
				map[string]any{"key": "app.kubernetes.io/name", "operator": "In", "values": []any{"sensor", "A-1", ""}},
				map[string]any{"key": "ring", "operator": "NotIn", "values": []any{"0"}},
				map[string]any{"key": "canary", "operator": "Exists"},
				map[string]any{"key": "x_y.z", "operator": "DoesNotExist", "values": []any{}},
			},
		},
		"largest":     {"matchExpressions": exprs, "matchLabels": big},
		"empty":       {},
		"single char": {"matchLabels": map[string]any{"a": "b", "0/1": "2"}},
	} {
		t.Run(name, func(t *testing.T) {
			ro := validRollout("selector-" + strings.ReplaceAll(name, " ", "-"))
			set("spec.selector", sel)(ro)
			if err := k8s.Create(ctx, ro); err != nil {
				t.Fatalf("valid selector refused: %v", err)
			}
		})
	}
}

// TestReleaseIdentityImmutable: what a rollout and device floors rely on
// cannot change; where the image comes from and who signed it can.
func TestReleaseIdentityImmutable(t *testing.T) {
	ctx := context.Background()
	rel := validRelease("identity")
	if err := k8s.Create(ctx, rel); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
		want   string
	}{
		{"version", set("spec.version", "2.1.1"), "version is immutable; create a new FirmwareRelease"},
		{"securityVersion", set("spec.securityVersion", int64(8)), "securityVersion is immutable; create a new FirmwareRelease"},
		{"securityVersion removed", unset("spec.securityVersion"), "securityVersion is immutable; create a new FirmwareRelease"},
		{"deviceTypes", set("spec.compatibility.deviceTypes", []any{"sensor-v1", "sensor-v2"}), "compatibility is immutable; create a new FirmwareRelease"},
		{"sha256", set("spec.source.sha256", strings.Repeat("cd", 32)), "source.sha256 is immutable (it pins the image); create a new FirmwareRelease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := edit(t, rel, tc.mutate)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("update of %s: got %v, want refusal with %q", tc.name, err, tc.want)
			}
		})
	}
	// Everything else stays editable.
	for _, e := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
	}{
		{"url", set("spec.source.url", "https://mirror.example.com/sensor.bin")},
		{"size", set("spec.source.size", int64(2048))},
		{"no size", unset("spec.source.size")},
		{"signature", set("spec.signature.value", "MEQCIA==")},
		{"keys", set("spec.signature.publicKeys", []any{map[string]any{"secretRef": map[string]any{"name": "other-keys", "key": "k.pub"}}})},
		{"bundle", func(u *unstructured.Unstructured) {
			unset("spec.signature.value")(u)
			set("spec.signature.bundleRef", map[string]any{"name": "sigs", "key": "bundle.json"})(u)
		}},
		{"labels", func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"team": "fw"}) }},
	} {
		if err := edit(t, rel, e.mutate); err != nil {
			t.Errorf("edit of %s refused: %v", e.name, err)
		}
	}

	// securityVersion is optional: setting it later is a change too, while
	// writing the 0 that an absent field means is not.
	bare := validRelease("identity-no-secver")
	unset("spec.securityVersion")(bare)
	if err := k8s.Create(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if err := edit(t, bare, set("spec.securityVersion", int64(0))); err != nil {
		t.Errorf("writing securityVersion 0 over an absent one refused: %v", err)
	}
	if err := edit(t, bare, set("spec.securityVersion", int64(3))); err == nil || !strings.Contains(err.Error(), "securityVersion is immutable") {
		t.Errorf("setting securityVersion after creation: got %v, want refusal", err)
	}
}

// TestWavesFixedOnceStarted: devices already ranked into a wave must stay in
// it, so a started rollout's waves are fixed except their gates.
func TestWavesFixedOnceStarted(t *testing.T) {
	ctx := context.Background()
	const msg = "waves cannot be changed once the rollout started (only a wave's pause may); create a new Rollout"
	ro := validRollout("fixed-waves")
	if err := k8s.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	setPhase := func(phase string) {
		t.Helper()
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			t.Fatal(err)
		}
		set("status.phase", phase)(ro)
		if err := k8s.Status().Update(ctx, ro); err != nil {
			t.Fatalf("status update to %s: %v", phase, err)
		}
	}
	threeWaves := waves(
		map[string]any{"name": "canary", "devices": int64(5), "pause": map[string]any{}},
		map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "30m"}},
		wave("all", "100%"),
	)

	// Before the controller started it (no status, then Pending) waves are free.
	for _, e := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
	}{
		{"devices", threeWaves},
		{"renamed", waves(wave("first", int64(5)), wave("all", "100%"))},
		{"fewer", waves(wave("all", "100%"))},
	} {
		if err := edit(t, ro, e.mutate, unset("spec.approvedWave")); err != nil {
			t.Errorf("edit of waves (%s) before start refused: %v", e.name, err)
		}
	}
	setPhase("Pending")
	if err := edit(t, ro, threeWaves); err != nil {
		t.Fatalf("edit of waves of a Pending rollout refused: %v", err)
	}

	setPhase("Progressing")
	for _, tc := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
	}{
		{"devices", set("spec.waves", []any{
			map[string]any{"name": "canary", "devices": int64(6), "pause": map[string]any{}},
			map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "30m"}},
			wave("all", "100%"),
		})},
		{"count to percentage", set("spec.waves", []any{
			map[string]any{"name": "canary", "devices": "5%", "pause": map[string]any{}},
			map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "30m"}},
			wave("all", "100%"),
		})},
		{"renamed", set("spec.waves", []any{
			map[string]any{"name": "canaries", "devices": int64(5), "pause": map[string]any{}},
			map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "30m"}},
			wave("all", "100%"),
		})},
		{"removed", set("spec.waves", []any{
			map[string]any{"name": "canary", "devices": int64(5), "pause": map[string]any{}},
			wave("all", "100%"),
		})},
		{"reordered", set("spec.waves", []any{
			map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "30m"}},
			map[string]any{"name": "canary", "devices": int64(5), "pause": map[string]any{}},
			wave("all", "100%"),
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := edit(t, ro, tc.mutate)
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Fatalf("edit of waves (%s) of a started rollout: got %v, want refusal with %q", tc.name, err, msg)
			}
		})
	}

	// Gates stay editable: a timed pause shortened, a manual gate made
	// timed, a gate removed.
	for _, e := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
	}{
		{"pause duration", set("spec.waves", []any{
			map[string]any{"name": "canary", "devices": int64(5), "pause": map[string]any{}},
			map[string]any{"name": "early", "devices": "20%", "pause": map[string]any{"duration": "5m"}},
			wave("all", "100%"),
		})},
		{"gates", set("spec.waves", []any{
			map[string]any{"name": "canary", "devices": int64(5), "pause": map[string]any{"duration": "1h"}},
			wave("early", "20%"),
			wave("all", "100%"),
		})},
		{"other fields", func(u *unstructured.Unstructured) {
			set("spec.paused", true)(u)
			set("spec.successThreshold", "90%")(u)
		}},
	} {
		if err := edit(t, ro, e.mutate); err != nil {
			t.Errorf("edit of %s of a started rollout refused: %v", e.name, err)
		}
	}
	// Appending passes this rule; since the last wave is "100%", the
	// ordering rule is what refuses it.
	err := edit(t, ro, func(u *unstructured.Unstructured) {
		ws, _, _ := unstructured.NestedSlice(u.Object, "spec", "waves")
		set("spec.waves", append(ws, wave("more", "100%")))(u)
	})
	if err == nil || strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "percentage waves must strictly increase") {
		t.Errorf("append a wave: got %v, want refusal by the ordering rule only", err)
	}

	// The rule covers every started phase.
	for _, phase := range []string{"Paused", "Succeeded", "Aborted"} {
		setPhase(phase)
		if err := edit(t, ro, set("spec.waves", []any{wave("canary", int64(7)), wave("early", "20%"), wave("all", "100%")})); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("edit of waves in phase %s: got %v, want refusal", phase, err)
		}
	}
}
