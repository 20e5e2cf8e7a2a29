package kubectlota

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func TestStatus(t *testing.T) {
	ns := namespace(t, "fleet-eu")
	createRelease(t, ns)
	ro := newRollout(ns)
	ro.Spec.ApprovedWave = "canary"
	createRollout(t, ro, progressingStatus())

	var tr transcript
	args := []string{"status", rolloutName, "-n", ns}
	r := run(t, args...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	tr.add(args, r)
	golden(t, "status", tr.b.String())
	for _, want := range []string{
		"Release:    sensor-2.1.0, version 2.1.0, securityVersion 8",
		"Phase:      Progressing (WaveProgressing)",
		"wave early: 2 of 34 offered devices failed or timed out (5.9%); 1 more failure aborts the rollout",
		"[##########x>>>>>>--~]",
		"sensor-0107  early  timed out after 2h0m0s",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
}

func TestStatusOutput(t *testing.T) {
	ns := namespace(t, "status-output")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), awaitingApprovalStatus())

	r := run(t, "status", rolloutName, "-n", ns, "-o", "json")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(r.out), &obj); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, r.out)
	}
	var ro otav1.Rollout
	if err := json.Unmarshal([]byte(r.out), &ro); err != nil {
		t.Fatal(err)
	}
	if ro.APIVersion != "ota.otaflow.io/v1alpha1" || ro.Kind != "Rollout" || ro.Name != rolloutName || ro.Namespace != ns {
		t.Errorf("printed %s %s %s/%s", ro.APIVersion, ro.Kind, ro.Namespace, ro.Name)
	}
	if ro.Status.Phase != otav1.RolloutPaused || len(ro.Spec.Waves) != 3 || ro.Status.Waves[0].Succeeded != 10 {
		t.Errorf("printed spec/status %+v / %+v", ro.Spec, ro.Status)
	}
	if len(ro.ManagedFields) != 0 {
		t.Errorf("managedFields printed without --show-managed-fields")
	}

	r = run(t, "status", rolloutName, "-n", ns, "-o", "yaml", "--show-managed-fields")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var y otav1.Rollout
	if err := yaml.Unmarshal([]byte(r.out), &y); err != nil {
		t.Fatalf("-o yaml is not YAML: %v", err)
	}
	if y.Kind != "Rollout" || y.Status.Phase != otav1.RolloutPaused || len(y.ManagedFields) == 0 {
		t.Errorf("yaml: kind %q, phase %q, %d managedFields entries", y.Kind, y.Status.Phase, len(y.ManagedFields))
	}

	r = run(t, "status", rolloutName, "-n", ns, "-o", "wide")
	if r.err == nil || !strings.Contains(r.err.Error(), "wide") {
		t.Errorf("-o wide: %v", r.err)
	}
}

func TestStatusNotFound(t *testing.T) {
	ns := namespace(t, "status-missing")
	r := run(t, "status", "nope", "-n", ns)
	if r.err == nil || !strings.Contains(r.err.Error(), "rollout nope not found in namespace status-missing") {
		t.Fatalf("error %v", r.err)
	}

	// A rollout whose release does not exist (yet) still shows.
	createRollout(t, newRollout(ns), otav1.RolloutStatus{})
	r = run(t, "status", rolloutName, "-n", ns)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.out, "sensor-2.1.0 (FirmwareRelease not found)") || !strings.Contains(r.out, "(not reconciled yet)") {
		t.Errorf("status of a new rollout:\n%s", r.out)
	}
}
