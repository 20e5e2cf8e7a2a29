package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/enrolltoken"
)

// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments,verbs=get;list;watch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments/status,verbs=get;update;patch

const indexEnrollmentSecret = "spec.tokenSecretRef.name"

// DeviceEnrollmentReconciler reports whether a DeviceEnrollment's token
// enrolls devices: the Secret exists, holds the key, the token follows the
// rules, and the object is neither suspended nor expired. The OTA server
// reads the token itself and applies the same rules; this controller only
// tells people what it will do.
type DeviceEnrollmentReconciler struct {
	client.Client
	Clock clock.PassiveClock
}

// Reconcile computes the Ready condition.
func (r *DeviceEnrollmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	var e otav1.DeviceEnrollment
	if err := r.Get(ctx, req.NamespacedName, &e); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &e)
	defer func() {
		if perr := patcher.Patch(ctx, &e); perr != nil && err == nil {
			err = perr
		}
	}()
	status, reason, msg, requeue, err := r.assess(ctx, &e)
	if err != nil {
		return ctrl.Result{}, err
	}
	meta.SetStatusCondition(&e.Status.Conditions, metav1.Condition{
		Type: otav1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: e.Generation,
	})
	e.Status.ObservedGeneration = e.Generation
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// assess returns the Ready condition's status, reason and message, and when
// to look again (at expiry).
func (r *DeviceEnrollmentReconciler) assess(ctx context.Context, e *otav1.DeviceEnrollment) (metav1.ConditionStatus, string, string, time.Duration, error) {
	now := r.Clock.Now()
	if e.Spec.Suspend {
		return metav1.ConditionFalse, otav1.ReasonEnrollmentPaused, "spec.suspend is set: no device enrolls", 0, nil
	}
	if e.Spec.ExpiresAt != nil && !now.Before(e.Spec.ExpiresAt.Time) {
		return metav1.ConditionFalse, otav1.ReasonEnrollmentExpired, fmt.Sprintf("expired at %s: no device enrolls; devices enrolled earlier keep working", e.Spec.ExpiresAt.UTC().Format(time.RFC3339)), 0, nil
	}
	var s corev1.Secret
	ref := e.Spec.TokenSecretRef
	if err := r.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return metav1.ConditionFalse, otav1.ReasonTokenSecretAbsent, fmt.Sprintf("Secret %q not found in namespace %s", ref.Name, e.Namespace), 0, nil
		}
		return "", "", "", 0, fmt.Errorf("read token Secret %s: %w", ref.Name, err)
	}
	tok, ok := s.Data[e.TokenKey()]
	if !ok {
		return metav1.ConditionFalse, otav1.ReasonTokenKeyAbsent, fmt.Sprintf("Secret %q has no key %q", ref.Name, e.TokenKey()), 0, nil
	}
	if reason, err := enrolltoken.Check(tok); err != nil {
		return metav1.ConditionFalse, reason, fmt.Sprintf("Secret %q key %q: %v", ref.Name, e.TokenKey(), err), 0, nil
	}
	msg := "devices enrolling with this token join namespace " + e.Namespace
	if e.Spec.MaxDevices != nil {
		msg += fmt.Sprintf(", at most %d devices", *e.Spec.MaxDevices)
	}
	if e.Spec.AllowedDeviceIDs != nil {
		msg += fmt.Sprintf(", only the %d allowed device IDs", len(e.Spec.AllowedDeviceIDs))
	}
	var requeue time.Duration
	if e.Spec.ExpiresAt != nil {
		requeue = e.Spec.ExpiresAt.Sub(now) + time.Second
		msg += ", until " + e.Spec.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return metav1.ConditionTrue, otav1.ReasonEnrollmentActive, msg, requeue, nil
}

// SetupWithManager registers the controller; a change of a token Secret
// re-assesses the DeviceEnrollments naming it.
func (r *DeviceEnrollmentReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &otav1.DeviceEnrollment{}, indexEnrollmentSecret, func(o client.Object) []string {
		return []string{o.(*otav1.DeviceEnrollment).Spec.TokenSecretRef.Name}
	}); err != nil {
		return fmt.Errorf("index DeviceEnrollments by Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&otav1.DeviceEnrollment{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.enrollmentsOfSecret)).
		Named("deviceenrollment").
		Complete(r)
}

func (r *DeviceEnrollmentReconciler) enrollmentsOfSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return referrers(ctx, r.Client, &otav1.DeviceEnrollmentList{}, indexEnrollmentSecret, o)
}
