package kubectlota

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// ownedBy reports whether manager's managedFields entry owns spec.<field>.
func ownedBy(ro *otav1.Rollout, manager, field string) bool {
	for _, e := range ro.ManagedFields {
		if e.Manager != manager || e.FieldsV1 == nil {
			continue
		}
		var set struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(e.FieldsV1.Raw, &set) == nil {
			if _, ok := set.Spec["f:"+field]; ok {
				return true
			}
		}
	}
	return false
}

// TestPatchCommands walks one rollout through every spec command, each
// checked on the stored object, and records the session for the docs.
func TestPatchCommands(t *testing.T) {
	ns := namespace(t, "patch-demo")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), awaitingApprovalStatus())

	var tr transcript
	for _, step := range []struct {
		args  []string
		field string
		check func(*otav1.Rollout) bool
		patch string
	}{
		{[]string{"approve", rolloutName}, "approvedWave", func(ro *otav1.Rollout) bool { return ro.Spec.ApprovedWave == "canary" },
			`kubectl patch rollout sensor-2.1.0-eu -n patch-demo --type=merge -p '{"spec":{"approvedWave":"canary"}}'`},
		{[]string{"pause", rolloutName}, "paused", func(ro *otav1.Rollout) bool { return ro.Spec.Paused },
			`kubectl patch rollout sensor-2.1.0-eu -n patch-demo --type=merge -p '{"spec":{"paused":true}}'`},
		{[]string{"resume", rolloutName}, "paused", func(ro *otav1.Rollout) bool { return !ro.Spec.Paused },
			`kubectl patch rollout sensor-2.1.0-eu -n patch-demo --type=merge -p '{"spec":{"paused":false}}'`},
		{[]string{"commit", rolloutName}, "commit", func(ro *otav1.Rollout) bool { return ro.Spec.Commit },
			`kubectl patch rollout sensor-2.1.0-eu -n patch-demo --type=merge -p '{"spec":{"commit":true}}'`},
		{[]string{"abort", rolloutName}, "abort", func(ro *otav1.Rollout) bool { return ro.Spec.Abort },
			`kubectl patch rollout sensor-2.1.0-eu -n patch-demo --type=merge -p '{"spec":{"abort":true}}'`},
	} {
		args := append(step.args, "-n", ns)
		before := get(t, ns)
		r := run(t, args...)
		tr.add(args, r)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		after := get(t, ns)
		if !step.check(after) {
			t.Errorf("%v: spec after the command: %+v", args, after.Spec)
		}
		if after.Generation != before.Generation+1 {
			t.Errorf("%v: generation %d → %d, want one spec change", args, before.Generation, after.Generation)
		}
		if !ownedBy(after, "kubectl-ota", step.field) {
			t.Errorf("%v: spec.%s is not owned by field manager kubectl-ota: %+v", args, step.field, after.ManagedFields)
		}
		if !strings.Contains(r.out, step.patch) {
			t.Errorf("%v: output lacks the equivalent patch %s:\n%s", args, step.patch, r.out)
		}
		if r.errOut != "" {
			t.Errorf("%v: unexpected stderr %q", args, r.errOut)
		}
		// The printed patch, sent as kubectl would, changes nothing more.
		data := step.patch[strings.Index(step.patch, "-p '")+4 : len(step.patch)-1]
		if err := env.k8s.Patch(context.Background(), after.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(data))); err != nil {
			t.Fatalf("the printed patch %s: %v", data, err)
		}
		if again := get(t, ns); again.Generation != after.Generation {
			t.Errorf("%v: the printed patch is not the one sent (generation %d → %d)", args, after.Generation, again.Generation)
		}
	}
	golden(t, "patch", tr.b.String())
}

func TestDryRun(t *testing.T) {
	ns := namespace(t, "dry-run")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), awaitingApprovalStatus())
	before := get(t, ns)

	var tr transcript
	for _, args := range [][]string{
		{"approve", rolloutName, "-n", ns, "--dry-run"},
		{"pause", rolloutName, "-n", ns, "--dry-run"},
		{"abort", rolloutName, "-n", ns, "--dry-run"},
	} {
		r := run(t, args...)
		tr.add(args, r)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		if !strings.Contains(r.out, "(dry run: nothing sent)") || !strings.Contains(r.out, "kubectl patch rollout sensor-2.1.0-eu -n dry-run --type=merge -p '{\"spec\":") {
			t.Errorf("%v: output %q", args, r.out)
		}
	}
	after := get(t, ns)
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("--dry-run changed the rollout: %+v", after.Spec)
	}
	golden(t, "dry-run", tr.b.String())
}

// apply sends a server-side apply of the rollout's manifest as manager, as
// Flux's kustomize-controller does with what is in git.
func apply(t *testing.T, ns, manifest, manager string) {
	t.Helper()
	key := &otav1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: rolloutName}}
	if err := env.k8s.Patch(context.Background(), key, client.RawPatch(types.ApplyPatchType, []byte(manifest)),
		client.FieldOwner(manager), client.ForceOwnership); err != nil {
		t.Fatalf("apply as %s: %v", manager, err)
	}
}

func fluxManifest(ns string) string {
	return `{"apiVersion":"ota.otaflow.io/v1alpha1","kind":"Rollout",
 "metadata":{"name":"` + rolloutName + `","namespace":"` + ns + `"},
 "spec":{"releaseRef":{"name":"` + releaseName + `"},"paused":false,
  "waves":[{"name":"canary","devices":10,"pause":{}},{"name":"early","devices":"25%","pause":{"duration":"30m"}},{"name":"all","devices":"100%"}]}}`
}

func TestGitOpsWarning(t *testing.T) {
	ns := namespace(t, "gitops")
	createRelease(t, ns)
	apply(t, ns, fluxManifest(ns), "kustomize-controller")
	deleteAtEnd(t, get(t, ns))
	setStatus(t, get(t, ns), progressingStatus())

	var tr transcript
	args := []string{"pause", rolloutName, "-n", ns}
	r := run(t, args...)
	tr.add(args, r)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.errOut, "Warning: spec.paused is managed by kustomize-controller (Flux): the live change will be reverted") ||
		!strings.Contains(r.errOut, "spec:\n    paused: true") {
		t.Errorf("no Flux warning on stderr: %q", r.errOut)
	}
	if !get(t, ns).Spec.Paused {
		t.Fatal("pause did not pause")
	}
	// What the warning says: Flux's next apply from git reverts the change.
	apply(t, ns, fluxManifest(ns), "kustomize-controller")
	if get(t, ns).Spec.Paused {
		t.Error("Flux's apply kept the live change; the warning would be wrong")
	}

	// Flux does not own spec.commit (git does not set it): no warning.
	args = []string{"commit", rolloutName, "-n", ns}
	r = run(t, args...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.errOut != "" {
		t.Errorf("warning for a field Flux does not own: %q", r.errOut)
	}
	golden(t, "gitops", tr.b.String())
}

func TestGitOpsWarningArgoCD(t *testing.T) {
	ns := namespace(t, "argocd")
	createRelease(t, ns)
	ro := newRollout(ns)
	ro.Spec.Waves[1].Pause = &otav1.WavePause{} // early: a manual gate too
	ro.Spec.ApprovedWave = "canary"
	// Argo CD's client-side apply: an Update by argocd-controller.
	createRollout(t, ro, progressingStatus(), client.FieldOwner("argocd-controller"))

	r := run(t, "approve", rolloutName, "early", "-n", ns)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.errOut, "Warning: spec.approvedWave is managed by argocd-controller (Argo CD)") {
		t.Errorf("no Argo CD warning: %q", r.errOut)
	}
	if got := get(t, ns).Spec.ApprovedWave; got != "early" {
		t.Errorf("approvedWave %q", got)
	}
}

func TestRefusals(t *testing.T) {
	var tr transcript
	for _, tc := range []struct {
		name   string
		status otav1.RolloutStatus
		spec   func(*otav1.RolloutSpec)
		args   []string
		want   string
	}{
		{"approve with no wave waiting", progressingStatus(), func(s *otav1.RolloutSpec) { s.ApprovedWave = "canary" }, []string{"approve", rolloutName},
			"no wave of rollout sensor-2.1.0-eu waits for approval (phase Progressing, wave 2/3 early); name a wave to approve its gate in advance"},
		{"approve a wave without a gate", progressingStatus(), func(s *otav1.RolloutSpec) { s.ApprovedWave = "canary" }, []string{"approve", rolloutName, "early"},
			"nothing to approve"},
		{"approve an unknown wave", awaitingApprovalStatus(), nil, []string{"approve", rolloutName, "late"},
			`rollout sensor-2.1.0-eu has no wave "late" (waves: canary, early, all)`},
		{"resume what is not paused", awaitingApprovalStatus(), nil, []string{"resume", rolloutName},
			"rollout sensor-2.1.0-eu is not paused by spec.paused: it waits for approval of wave canary (kubectl ota approve sensor-2.1.0-eu canary)"},
		{"pause twice", progressingStatus(), func(s *otav1.RolloutSpec) { s.Paused = true }, []string{"pause", rolloutName},
			"already paused"},
		{"commit a succeeded rollout", succeededStatus(), nil, []string{"commit", rolloutName},
			"rollout sensor-2.1.0-eu succeeded, which commits the security floor already; commit is for before success"},
		{"pause an aborted rollout", abortedStatus(), nil, []string{"pause", rolloutName},
			"rollout sensor-2.1.0-eu is aborted for good: nothing to pause"},
		{"abort twice", abortedStatus(), nil, []string{"abort", rolloutName},
			"rollout sensor-2.1.0-eu is already aborted"},
		{"a missing rollout", progressingStatus(), nil, []string{"pause", "nope"},
			"rollout nope not found in namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t, "refuse-"+strings.ReplaceAll(tc.name, " ", "-"))
			createRelease(t, ns)
			ro := newRollout(ns)
			if tc.spec != nil {
				tc.spec(&ro.Spec)
			}
			createRollout(t, ro, tc.status)
			before := get(t, ns)
			for _, dry := range []bool{false, true} {
				args := append(tc.args, "-n", ns)
				if dry {
					args = append(args, "--dry-run")
				}
				r := run(t, args...)
				if !dry {
					tr.add(args, r)
				}
				if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
					t.Errorf("%v: error %v, want it to say %q", args, r.err, tc.want)
				}
				if r.out != "" {
					t.Errorf("%v: a refused command printed %q", args, r.out)
				}
			}
			if after := get(t, ns); after.ResourceVersion != before.ResourceVersion {
				t.Errorf("a refused command changed the rollout: %+v", after.Spec)
			}
		})
	}
	golden(t, "refusals", tr.b.String())
}
