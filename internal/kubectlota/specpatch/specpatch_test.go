package specpatch

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// rollout has waves a (manual gate), b (timed pause), c (manual gate),
// d (last); edit tunes spec and status.
func rollout(edit func(ro *otav1.Rollout)) *otav1.Rollout {
	ro := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "ro", Namespace: "ns"},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "rel"},
			Waves: []otav1.Wave{
				{Name: "a", Devices: intstr.FromInt32(1), Pause: &otav1.WavePause{}},
				{Name: "b", Devices: intstr.FromString("10%"), Pause: &otav1.WavePause{Duration: &metav1.Duration{Duration: time.Hour}}},
				{Name: "c", Devices: intstr.FromString("50%"), Pause: &otav1.WavePause{}},
				{Name: "d", Devices: intstr.FromString("100%"), Pause: &otav1.WavePause{}},
			},
		},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
	}
	if edit != nil {
		edit(ro)
	}
	return ro
}

var done = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

// atGate: wave i completed and the rollout waits at its gate.
func atGate(i int) func(ro *otav1.Rollout) {
	return func(ro *otav1.Rollout) {
		ro.Status.Phase = otav1.RolloutPaused
		ro.Status.CurrentWave = int32(i)
		for j := 0; j <= i; j++ {
			ro.Status.Waves = append(ro.Status.Waves, otav1.WaveStatus{Name: ro.Spec.Waves[j].Name, StartedAt: &done, CompletedAt: &done})
		}
	}
}

func both(fs ...func(*otav1.Rollout)) func(*otav1.Rollout) {
	return func(ro *otav1.Rollout) {
		for _, f := range fs {
			f(ro)
		}
	}
}

func TestFor(t *testing.T) {
	phase := func(p otav1.RolloutPhase) func(*otav1.Rollout) {
		return func(ro *otav1.Rollout) { ro.Status.Phase = p }
	}
	spec := func(f func(*otav1.RolloutSpec)) func(*otav1.Rollout) {
		return func(ro *otav1.Rollout) { f(&ro.Spec) }
	}
	for _, tc := range []struct {
		name    string
		ro      *otav1.Rollout
		action  Action
		wave    string
		patch   string // the expected patch, or
		refused string // a part of the expected refusal
	}{
		{"approve the waiting wave", rollout(atGate(0)), Approve, "", `{"spec":{"approvedWave":"a"}}`, ""},
		{"approve the waiting wave while paused by spec", rollout(both(atGate(2), spec(func(s *otav1.RolloutSpec) { s.Paused = true; s.ApprovedWave = "a" }))), Approve, "", `{"spec":{"approvedWave":"c"}}`, ""},
		{"approve with no wave waiting", rollout(nil), Approve, "", "", "no wave of rollout ro waits for approval (phase Progressing, wave 1/4 a)"},
		{"approve at a timed pause", rollout(atGate(1)), Approve, "", "", "no wave of rollout ro waits for approval"},
		{"approve a wave still open", rollout(func(ro *otav1.Rollout) {
			ro.Status.Waves = []otav1.WaveStatus{{Name: "a", StartedAt: &done}}
		}), Approve, "", "", "no wave of rollout ro waits"},
		{"approve in advance", rollout(nil), Approve, "c", `{"spec":{"approvedWave":"c"}}`, ""},
		{"approve in advance through a timed pause", rollout(spec(func(s *otav1.RolloutSpec) { s.ApprovedWave = "a" })), Approve, "c", `{"spec":{"approvedWave":"c"}}`, ""},
		{"approve a wave without a gate left", rollout(spec(func(s *otav1.RolloutSpec) { s.ApprovedWave = "a" })), Approve, "b", "", "nothing to approve: no wave of rollout ro up to b has a manual gate"},
		{"approve the last wave's ignored gate", rollout(spec(func(s *otav1.RolloutSpec) { s.ApprovedWave = "c" })), Approve, "d", "", "nothing to approve"},
		{"approve again", rollout(spec(func(s *otav1.RolloutSpec) { s.ApprovedWave = "c" })), Approve, "c", "", "already approved (spec.approvedWave is c)"},
		{"approve an earlier wave", rollout(spec(func(s *otav1.RolloutSpec) { s.ApprovedWave = "c" })), Approve, "a", "", "would withdraw the approval"},
		{"approve an unknown wave", rollout(nil), Approve, "z", "", `rollout ro has no wave "z" (waves: a, b, c, d)`},
		{"approve a succeeded rollout", rollout(phase(otav1.RolloutSucceeded)), Approve, "c", "", "succeeded: no gate is left"},
		{"approve an aborted rollout", rollout(both(atGate(0), phase(otav1.RolloutAborted))), Approve, "", "", "aborted for good: nothing to approve"},

		{"pause", rollout(nil), Pause, "", `{"spec":{"paused":true}}`, ""},
		{"pause a succeeded rollout", rollout(phase(otav1.RolloutSucceeded)), Pause, "", `{"spec":{"paused":true}}`, ""},
		{"pause twice", rollout(spec(func(s *otav1.RolloutSpec) { s.Paused = true })), Pause, "", "", "already paused"},
		{"pause an aborted rollout", rollout(phase(otav1.RolloutAborted)), Pause, "", "", "aborted for good: nothing to pause"},
		{"pause a rollout being aborted", rollout(spec(func(s *otav1.RolloutSpec) { s.Abort = true })), Pause, "", "", "aborted for good"},

		{"resume", rollout(spec(func(s *otav1.RolloutSpec) { s.Paused = true })), Resume, "", `{"spec":{"paused":false}}`, ""},
		{"resume what waits for approval", rollout(atGate(0)), Resume, "", "", "it waits for approval of wave a (kubectl ota approve ro a)"},
		{"resume a timed pause", rollout(both(atGate(1), func(ro *otav1.Rollout) { ro.Status.PausedUntil = &done })), Resume, "", "", "timed pause until 2026-01-01T00:00:00Z"},
		{"resume what is not paused", rollout(nil), Resume, "", "", "rollout ro is not paused"},

		{"abort", rollout(nil), Abort, "", `{"spec":{"abort":true}}`, ""},
		{"abort after success", rollout(phase(otav1.RolloutSucceeded)), Abort, "", `{"spec":{"abort":true}}`, ""},
		{"abort twice", rollout(phase(otav1.RolloutAborted)), Abort, "", "", "already aborted"},
		{"abort while the abort is pending", rollout(spec(func(s *otav1.RolloutSpec) { s.Abort = true })), Abort, "", "", "already aborted"},

		{"commit", rollout(nil), Commit, "", `{"spec":{"commit":true}}`, ""},
		{"commit a pending rollout", rollout(phase(otav1.RolloutPending)), Commit, "", `{"spec":{"commit":true}}`, ""},
		{"commit a succeeded rollout", rollout(phase(otav1.RolloutSucceeded)), Commit, "", "", "succeeded, which commits the security floor already"},
		{"commit an aborted rollout", rollout(phase(otav1.RolloutAborted)), Commit, "", "", "never commits"},
		{"commit twice", rollout(spec(func(s *otav1.RolloutSpec) { s.Commit = true })), Commit, "", "", "already committed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := For(tc.ro, tc.action, tc.wave)
			if tc.refused != "" {
				if err == nil {
					t.Fatalf("not refused; patch %s", plan.Patch())
				}
				if !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("refused with %q, want it to say %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got := string(plan.Patch()); got != tc.patch {
				t.Errorf("patch %s, want %s", got, tc.patch)
			}
		})
	}
}

func TestKubectl(t *testing.T) {
	p := Plan{Field: "approvedWave", Value: "canary"}
	want := `kubectl patch rollout sensor-2.1.0-eu -n fleet-eu --type=merge -p '{"spec":{"approvedWave":"canary"}}'`
	if got := p.Kubectl("fleet-eu", "sensor-2.1.0-eu"); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for in, want := range map[string]string{
		"plain-name.1": "plain-name.1",
		"":             "''",
		"it's":         `'it'\''s'`,
		"a b":          "'a b'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if got, want := (Plan{Field: "paused", Value: true}).YAML(), "spec:\n  paused: true"; got != want {
		t.Errorf("YAML %q, want %q", got, want)
	}
}

func TestGitOpsOwners(t *testing.T) {
	entry := func(manager, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	const specPaused = `{"f:spec":{".":{},"f:paused":{},"f:waves":{}}}`
	const specOnly = `{"f:spec":{"f:releaseRef":{"f:name":{}},"f:waves":{}}}`
	const statusPaused = `{"f:status":{"f:paused":{}}}`
	for _, tc := range []struct {
		name    string
		managed []metav1.ManagedFieldsEntry
		field   string
		want    []string
	}{
		{"flux owns the field", []metav1.ManagedFieldsEntry{entry("kustomize-controller", specPaused)}, "paused", []string{"kustomize-controller (Flux)"}},
		{"helm-controller", []metav1.ManagedFieldsEntry{entry("helm-controller", specPaused)}, "paused", []string{"helm-controller (Flux)"}},
		{"argo cd, both names, once each", []metav1.ManagedFieldsEntry{
			entry("argocd-controller", specPaused), entry("argocd-application-controller", specPaused), entry("argocd-controller", specPaused),
		}, "paused", []string{"argocd-controller (Argo CD)", "argocd-application-controller (Argo CD)"}},
		{"flux applies the object but not the field", []metav1.ManagedFieldsEntry{entry("kustomize-controller", specOnly)}, "paused", nil},
		{"another field", []metav1.ManagedFieldsEntry{entry("kustomize-controller", specPaused)}, "abort", nil},
		{"a status field of the same name", []metav1.ManagedFieldsEntry{entry("kustomize-controller", statusPaused)}, "paused", nil},
		{"not a gitops manager", []metav1.ManagedFieldsEntry{entry("kubectl", specPaused), entry("kubectl-ota", specPaused)}, "paused", nil},
		{"broken fields", []metav1.ManagedFieldsEntry{entry("kustomize-controller", `{`)}, "paused", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := GitOpsOwners(tc.managed, tc.field)
			if len(got) != len(tc.want) {
				t.Fatalf("owners %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Errorf("owner %d is %s, want %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestWarning(t *testing.T) {
	w := Plan{Field: "paused", Value: true}.Warning([]Owner{{Manager: "kustomize-controller", Tool: "Flux"}})
	want := "spec.paused is managed by kustomize-controller (Flux): the live change will be reverted at its next sync unless it goes into git; set in the Rollout's manifest:\n  spec:\n    paused: true"
	if w != want {
		t.Errorf("got\n%s\nwant\n%s", w, want)
	}
}
