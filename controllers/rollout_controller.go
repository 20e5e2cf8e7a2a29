package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

// RolloutReconciler turns a Rollout into waves. It owns phase, current
// wave, wave times, gates and conditions; the OTA server owns the device
// counters it decides from.
type RolloutReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Clock    clock.PassiveClock
	// StaleAfter: counts the OTA server reported longer ago than this are
	// stale, and no wave opens, completes or aborts on them (default
	// DefaultStaleAfter; the server heartbeats every 30s).
	StaleAfter time.Duration
}

// DefaultStaleAfter is four of the OTA server's 30s heartbeats.
const DefaultStaleAfter = 2 * time.Minute

// +kubebuilder:rbac:groups=ota.otaflow.io,resources=rollouts,verbs=get;list;watch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=rollouts/status,verbs=get;patch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=firmwarereleases,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the rollout's steps: read the release, decide, write the
// owned status, tell people, and come back at the next deadline.
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ro := &otav1.Rollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ro.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the OTA server stops offering once it is gone
	}
	rel, err := r.releaseState(ctx, ro)
	if err != nil {
		return ctrl.Result{}, err
	}
	in, err := planInput(ro, rel, r.Clock.Now())
	in.StaleAfter = r.StaleAfter
	if err != nil {
		// The API validates these fields; reaching here means a bug or a
		// hand-edited object, which a human must fix.
		log.FromContext(ctx).Error(err, "rollout spec cannot be planned")
		return ctrl.Result{}, nil
	}
	d := rollout.Decide(in)
	changed, err := applyStatus(ctx, r.Client, ro, desiredStatus(ro, d))
	if apierrors.IsConflict(err) {
		// Decided on a stale object; the newer one is on its way.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	// Events only after the status holding the transition is written, so a
	// failed write does not announce a transition twice.
	for _, e := range d.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ro, nil, typ, e.Reason, "Rollout", "%s", e.Message)
	}
	if changed {
		log.FromContext(ctx).V(1).Info("rollout status written", "phase", d.Phase, "wave", d.CurrentWave)
	}
	return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
}

// releaseState reads the referenced FirmwareRelease from the cache.
func (r *RolloutReconciler) releaseState(ctx context.Context, ro *otav1.Rollout) (rollout.Release, error) {
	var rel otav1.FirmwareRelease
	err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.ReleaseRef.Name}, &rel)
	if apierrors.IsNotFound(err) {
		return rollout.Release{Message: fmt.Sprintf("FirmwareRelease %s not found", ro.Spec.ReleaseRef.Name)}, nil
	}
	if err != nil {
		return rollout.Release{}, fmt.Errorf("get release %s: %w", ro.Spec.ReleaseRef.Name, err)
	}
	out := rollout.Release{Found: true}
	ready := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady)
	switch {
	case !rel.DeletionTimestamp.IsZero():
		out.Message = fmt.Sprintf("FirmwareRelease %s is being deleted", rel.Name)
	case rel.Status.ObservedGeneration != rel.Generation || rel.Status.Artifact != nil && rel.Status.Artifact.Generation != rel.Generation:
		out.Message = fmt.Sprintf("FirmwareRelease %s has changes not yet verified", rel.Name)
	case ready != nil && ready.Status == metav1.ConditionTrue && rel.Status.Artifact != nil:
		out.Ready = true
	case ready != nil:
		out.Message = fmt.Sprintf("FirmwareRelease %s is not Ready: %s: %s", rel.Name, ready.Reason, ready.Message)
	default:
		out.Message = fmt.Sprintf("FirmwareRelease %s has not been processed yet", rel.Name)
	}
	out.Stalled = meta.IsStatusConditionTrue(rel.Status.Conditions, otav1.ConditionStalled)
	return out, nil
}

// planInput converts the API object into the planner's input.
func planInput(ro *otav1.Rollout, rel rollout.Release, now time.Time) (rollout.Input, error) {
	spec, st := &ro.Spec, &ro.Status
	success, err := rollout.ParsePercent(defaultString(spec.SuccessThreshold, "95%"))
	if err != nil {
		return rollout.Input{}, fmt.Errorf("successThreshold: %w", err)
	}
	failure, err := rollout.ParsePercent(defaultString(spec.FailureThreshold, "5%"))
	if err != nil {
		return rollout.Input{}, fmt.Errorf("failureThreshold: %w", err)
	}
	in := rollout.Input{
		Now:                   now,
		SuccessThreshold:      success,
		FailureThreshold:      failure,
		MinFailures:           int64(spec.MinFailures),
		Paused:                spec.Paused,
		Abort:                 spec.Abort,
		RollbackOnAbort:       spec.RollbackOnAbort == nil || *spec.RollbackOnAbort,
		ProgressDeadline:      DefaultProgressDeadline,
		ProgressDeadlineAbort: spec.ProgressDeadlineAbort,
		ApprovedWave:          spec.ApprovedWave,
		Release:               rel,
		Phase:                 rollout.Phase(st.Phase),
		CurrentWave:           int(st.CurrentWave),
		AbortReason:           st.AbortReason,
		RollbackRequested:     st.RollbackRequested,
	}
	if spec.ProgressDeadline != nil && spec.ProgressDeadline.Duration > 0 {
		in.ProgressDeadline = spec.ProgressDeadline.Duration
	}
	if spec.Selector != nil {
		// The API validates selectors; one stored before it did is a
		// condition, never a reason to drop the rollout.
		if _, err := metav1.LabelSelectorAsSelector(spec.Selector); err != nil {
			in.SpecProblem = "selector: " + err.Error()
		}
	}
	if in.MinFailures < 1 {
		in.MinFailures = 3
	}
	if c := meta.FindStatusCondition(st.Conditions, otav1.ConditionReady); c != nil {
		in.ReadyReason = c.Reason
	}
	for _, w := range spec.Waves {
		ws := rollout.WaveSpec{Name: w.Name}
		if w.Pause != nil {
			if w.Pause.Duration == nil {
				ws.Gate = &rollout.Gate{Manual: true}
			} else {
				ws.Gate = &rollout.Gate{Duration: w.Pause.Duration.Duration}
			}
		}
		in.Waves = append(in.Waves, ws)
	}
	if len(in.Waves) == 0 {
		return rollout.Input{}, fmt.Errorf("no waves")
	}
	for _, w := range st.Waves {
		in.WaveStates = append(in.WaveStates, rollout.WaveState{
			Name:        w.Name,
			StartedAt:   timePtr(w.StartedAt),
			CompletedAt: timePtr(w.CompletedAt),
			Counts: rollout.Counts{
				Targeted: w.Targeted, Offered: w.Offered, InProgress: w.InProgress,
				Succeeded: w.Succeeded, Failed: w.Failed, TimedOut: w.TimedOut, Canceled: w.Canceled,
				Skipped: w.Skipped, Offline: w.Offline, RolledBack: w.RolledBack, RollbackFailed: w.RollbackFailed,
			},
		})
	}
	if f := st.Fleet; f != nil {
		in.FleetSize = f.Size
		in.ObservedWave = int(f.ObservedWave)
		in.ReportedAt = timePtr(f.ReportedAt)
	}
	return in, nil
}

// DefaultProgressDeadline applies when spec.progressDeadline is unset
// (the API server defaults it too).
const DefaultProgressDeadline = 48 * time.Hour

func timePtr(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.Time
	return &v
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// SetupWithManager registers the controller. Rollouts are watched without a
// generation filter: the OTA server's counter updates drive progress.
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.StaleAfter == 0 {
		r.StaleAfter = DefaultStaleAfter
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&otav1.Rollout{}).
		Watches(&otav1.FirmwareRelease{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsOfRelease)).
		Named("rollout").
		Complete(r)
}

func (r *RolloutReconciler) rolloutsOfRelease(ctx context.Context, o client.Object) []reconcile.Request {
	return referrers(ctx, r.Client, &otav1.RolloutList{}, indexRolloutRelease, o)
}
