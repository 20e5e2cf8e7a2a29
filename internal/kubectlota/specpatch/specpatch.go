// Package specpatch turns `kubectl ota approve|pause|resume|abort|commit`
// into the JSON merge patch of one Rollout spec field, refuses the ones that
// would mean nothing (by the rules of docs/rollouts.md), and says which
// GitOps controller owns the field, so the user knows the live change will
// not last unless it goes into git.
package specpatch

import (
	"encoding/json"
	"fmt"
	"strings"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/rolloutview"
)

// FieldManager is the field manager of every patch the plugin sends.
const FieldManager = "kubectl-ota"

// Action is a spec change.
type Action string

// Actions.
const (
	Approve Action = "approve"
	Pause   Action = "pause"
	Resume  Action = "resume"
	Abort   Action = "abort"
	Commit  Action = "commit"
)

// Plan is one spec field to set.
type Plan struct {
	Action Action
	// Field is the spec field's JSON name ("paused").
	Field string
	// Value is what it is set to: a string or a bool.
	Value any
}

// Patch is the JSON merge patch: {"spec":{"<field>":<value>}}.
func (p Plan) Patch() []byte {
	b, err := json.Marshal(map[string]map[string]any{"spec": {p.Field: p.Value}})
	if err != nil {
		panic(fmt.Sprintf("marshal a string or bool: %v", err)) // cannot happen
	}
	return b
}

// Path is the field's path, as managedFields and humans name it.
func (p Plan) Path() string { return "spec." + p.Field }

// Kubectl is the kubectl command that sends the same patch.
func (p Plan) Kubectl(namespace, name string) string {
	return fmt.Sprintf("kubectl patch rollout %s -n %s --type=merge -p %s",
		shellQuote(name), shellQuote(namespace), shellQuote(string(p.Patch())))
}

// YAML is the field as it goes into the Rollout's manifest in git.
func (p Plan) YAML() string {
	b, err := json.Marshal(p.Value)
	if err != nil {
		panic(fmt.Sprintf("marshal a string or bool: %v", err)) // cannot happen
	}
	return fmt.Sprintf("spec:\n  %s: %s", p.Field, b)
}

// For plans action on ro, or says why the action means nothing for ro.
// wave is approve's optional argument.
func For(ro *otav1.Rollout, action Action, wave string) (Plan, error) {
	switch action {
	case Approve:
		return approve(ro, wave)
	case Pause:
		return pause(ro)
	case Resume:
		return resume(ro)
	case Abort:
		return abort(ro)
	case Commit:
		return commit(ro)
	}
	return Plan{}, fmt.Errorf("unknown action %q", action)
}

func approve(ro *otav1.Rollout, wave string) (Plan, error) {
	plan := Plan{Action: Approve, Field: "approvedWave"}
	if err := refuseFinished(ro, "approve"); err != nil {
		return plan, err
	}
	if wave == "" {
		w, ok := rolloutview.WaitingForApproval(ro)
		if !ok {
			return plan, fmt.Errorf("no wave of rollout %s waits for approval (phase %s%s); name a wave to approve its gate in advance",
				ro.Name, orUnset(string(ro.Status.Phase)), currentWave(ro))
		}
		plan.Value = w
		return plan, nil
	}
	i := rolloutview.WaveIndex(ro, wave)
	if i < 0 {
		return plan, fmt.Errorf("rollout %s has no wave %q (waves: %s)", ro.Name, wave, strings.Join(rolloutview.WaveNames(ro), ", "))
	}
	approved := rolloutview.ApprovedIndex(ro)
	if i == approved {
		return plan, fmt.Errorf("wave %s of rollout %s is already approved (spec.approvedWave is %s)", wave, ro.Name, ro.Spec.ApprovedWave)
	}
	if i < approved {
		return plan, fmt.Errorf("spec.approvedWave is %s, a later wave, so the gate after %s is already approved; setting it to %s would withdraw the approval of the gates after it",
			ro.Spec.ApprovedWave, wave, wave)
	}
	for j := approved + 1; j <= i; j++ {
		if rolloutview.ManualGate(ro, j) {
			plan.Value = wave
			return plan, nil
		}
	}
	return plan, fmt.Errorf("nothing to approve: no wave of rollout %s up to %s has a manual gate (pause: {}) that is not approved yet", ro.Name, wave)
}

func pause(ro *otav1.Rollout) (Plan, error) {
	plan := Plan{Action: Pause, Field: "paused", Value: true}
	if err := refuseFinished(ro, "pause"); err != nil {
		return plan, err
	}
	if ro.Spec.Paused {
		return plan, fmt.Errorf("rollout %s is already paused (spec.paused is true); kubectl ota resume %s resumes it", ro.Name, ro.Name)
	}
	return plan, nil
}

func resume(ro *otav1.Rollout) (Plan, error) {
	plan := Plan{Action: Resume, Field: "paused", Value: false}
	if err := refuseFinished(ro, "resume"); err != nil {
		return plan, err
	}
	if ro.Spec.Paused {
		return plan, nil
	}
	if w, ok := rolloutview.WaitingForApproval(ro); ok {
		return plan, fmt.Errorf("rollout %s is not paused by spec.paused: it waits for approval of wave %s (kubectl ota approve %s %s)", ro.Name, w, ro.Name, w)
	}
	if ro.Status.Phase == otav1.RolloutPaused && ro.Status.PausedUntil != nil {
		return plan, fmt.Errorf("rollout %s is not paused by spec.paused: it is in a timed pause until %s, which resume does not shorten (edit the wave's pause to change it)",
			ro.Name, ro.Status.PausedUntil.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return plan, fmt.Errorf("rollout %s is not paused (spec.paused is not set)", ro.Name)
}

func abort(ro *otav1.Rollout) (Plan, error) {
	plan := Plan{Action: Abort, Field: "abort", Value: true}
	if rolloutview.Aborted(ro) {
		return plan, fmt.Errorf("rollout %s is already aborted", ro.Name)
	}
	return plan, nil
}

func commit(ro *otav1.Rollout) (Plan, error) {
	plan := Plan{Action: Commit, Field: "commit", Value: true}
	switch {
	case rolloutview.Aborted(ro):
		return plan, fmt.Errorf("rollout %s is aborted: an aborted rollout never commits (its devices may be rolled back)", ro.Name)
	case ro.Status.Phase == otav1.RolloutSucceeded:
		return plan, fmt.Errorf("rollout %s succeeded, which commits the security floor already; commit is for before success", ro.Name)
	case ro.Spec.Commit:
		return plan, fmt.Errorf("rollout %s is already committed (spec.commit is true)", ro.Name)
	}
	return plan, nil
}

// refuseFinished refuses what an aborted or succeeded rollout ignores.
// Pausing a succeeded rollout still stops offers to devices that were
// offline through it, so only approve refuses success.
func refuseFinished(ro *otav1.Rollout, verb string) error {
	if rolloutview.Aborted(ro) {
		return fmt.Errorf("rollout %s is aborted for good: nothing to %s", ro.Name, verb)
	}
	if verb == "approve" && ro.Status.Phase == otav1.RolloutSucceeded {
		return fmt.Errorf("rollout %s succeeded: no gate is left to approve", ro.Name)
	}
	return nil
}

func currentWave(ro *otav1.Rollout) string {
	if len(ro.Spec.Waves) == 0 || ro.Status.Phase == "" || ro.Status.Phase == otav1.RolloutPending {
		return ""
	}
	i := rolloutview.CurrentWave(ro)
	return fmt.Sprintf(", wave %d/%d %s", i+1, len(ro.Spec.Waves), ro.Spec.Waves[i].Name)
}

func orUnset(s string) string {
	if s == "" {
		return "not set yet"
	}
	return s
}

// shellQuote quotes s for a POSIX shell unless it is plainly safe.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
