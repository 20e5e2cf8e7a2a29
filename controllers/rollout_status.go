package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

// ManagerFieldOwner is the controller's field manager for Rollout status.
// The OTA server applies its counters under its own manager, so neither
// overwrites the other's fields.
const ManagerFieldOwner = "otaflow-manager"

// ownedStatus returns only the Rollout status fields the controller owns.
func ownedStatus(s *otav1.RolloutStatus) otav1.RolloutStatus {
	out := otav1.RolloutStatus{
		ObservedGeneration: s.ObservedGeneration,
		Phase:              s.Phase,
		CurrentWave:        s.CurrentWave,
		WaveSummary:        s.WaveSummary,
		Progress:           s.Progress,
		PausedUntil:        s.PausedUntil,
		AbortReason:        s.AbortReason,
		RollbackRequested:  s.RollbackRequested,
		Conditions:         s.Conditions,
	}
	for _, w := range s.Waves {
		out.Waves = append(out.Waves, otav1.WaveStatus{Name: w.Name, StartedAt: w.StartedAt, CompletedAt: w.CompletedAt})
	}
	return out
}

// desiredStatus applies a decision to the controller-owned status.
func desiredStatus(ro *otav1.Rollout, d rollout.Decision) otav1.RolloutStatus {
	cur := ownedStatus(&ro.Status)
	s := otav1.RolloutStatus{
		ObservedGeneration: ro.Generation,
		Phase:              otav1.RolloutPhase(d.Phase),
		CurrentWave:        int32(d.CurrentWave),
		WaveSummary:        d.WaveSummary,
		Progress:           d.Progress,
		PausedUntil:        metaTime(d.PausedUntil),
		AbortReason:        d.AbortReason,
		RollbackRequested:  d.RollbackRequested,
		Conditions:         append([]metav1.Condition(nil), cur.Conditions...),
	}
	for _, w := range d.Waves {
		s.Waves = append(s.Waves, otav1.WaveStatus{Name: w.Name, StartedAt: metaTime(w.StartedAt), CompletedAt: metaTime(w.CompletedAt)})
	}
	setRolloutCondition(&s.Conditions, otav1.ConditionReady, d.Ready, ro.Generation)
	setRolloutCondition(&s.Conditions, otav1.ConditionReconciling, d.Reconciling, ro.Generation)
	setRolloutCondition(&s.Conditions, otav1.ConditionStalled, d.Stalled, ro.Generation)
	return s
}

func setRolloutCondition(conds *[]metav1.Condition, typ string, c rollout.Condition, gen int64) {
	if !c.Present {
		meta.RemoveStatusCondition(conds, typ)
		return
	}
	status := metav1.ConditionFalse
	if c.True {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: c.Reason, Message: c.Message, ObservedGeneration: gen})
}

// applyStatus writes the controller-owned status with server-side apply,
// unless it already holds. Every owned field is sent each time, so a field
// the controller no longer sets (pausedUntil after a pause) is removed.
func applyStatus(ctx context.Context, c client.Client, ro *otav1.Rollout, s otav1.RolloutStatus) (bool, error) {
	if statusEqual(ownedStatus(&ro.Status), s) {
		return false, nil
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return false, fmt.Errorf("encode status: %w", err)
	}
	var status map[string]any
	if err := json.Unmarshal(raw, &status); err != nil {
		return false, fmt.Errorf("decode status: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetAPIVersion(otav1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(ro.Namespace)
	u.SetName(ro.Name)
	// A decision made from a stale cached object must not be applied (it
	// could reopen a wave with a new startedAt): the resourceVersion makes
	// the apply fail with a conflict, and the reconcile runs again.
	u.SetResourceVersion(ro.ResourceVersion)
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(ManagerFieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply rollout status: %w", err)
	}
	return true, nil
}

// statusEqual compares owned statuses the way the apiserver stores them
// (times at second precision).
func statusEqual(a, b otav1.RolloutStatus) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return false
	}
	var ma, mb any
	if json.Unmarshal(ja, &ma) != nil || json.Unmarshal(jb, &mb) != nil {
		return false
	}
	return reflect.DeepEqual(ma, mb)
}

func metaTime(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}
