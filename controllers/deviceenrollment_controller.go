package controllers

import (
	"context"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
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
	"github.com/otaflow/otaflow/internal/menderkey"
)

// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments,verbs=get;list;watch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments/status,verbs=get;update;patch

// indexEnrollmentSecret lists the Secrets a DeviceEnrollment reads: its
// token's and its DDI target tokens'.
const indexEnrollmentSecret = "spec.secretNames"

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
	if status, reason, msg, err := r.assessDDI(ctx, e, tok); err != nil || status != "" {
		return status, reason, msg, 0, err
	}
	if msg := menderKeyProblems(e); msg != "" {
		return metav1.ConditionFalse, otav1.ReasonPreauthorizedKeyInvalid, msg, 0, nil
	}
	msg := "devices enrolling with this token join namespace " + e.Namespace
	if e.Spec.MaxDevices != nil {
		msg += fmt.Sprintf(", at most %d devices", *e.Spec.MaxDevices)
	}
	if e.Spec.AllowedDeviceIDs != nil {
		msg += fmt.Sprintf(", only the %d allowed device IDs", len(e.Spec.AllowedDeviceIDs))
	}
	if d := e.Spec.DDI; d != nil {
		msg += "; hawkBit DDI devices register as type " + d.DeviceType
		if d.GatewayToken {
			msg += ", with the token as GatewayToken"
		}
	}
	if m := e.Spec.Mender; m != nil {
		msg += "; Mender devices register as type " + m.DeviceType
		switch {
		case m.AutoAccept:
			msg += ", accepted with the token as tenant token"
		default:
			msg += fmt.Sprintf(", only the %d preauthorized keys accepted", len(m.PreauthorizedKeys))
		}
	}
	var requeue time.Duration
	if e.Spec.ExpiresAt != nil {
		requeue = e.Spec.ExpiresAt.Sub(now) + time.Second
		msg += ", until " + e.Spec.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return metav1.ConditionTrue, otav1.ReasonEnrollmentActive, msg, requeue, nil
}

// assessDDI checks the target-tokens Secret of spec.ddi: a status, reason
// and message when it is missing or has unusable entries (named by key,
// never by token), "" when fine. The OTA server drops the same entries and
// keeps the others.
func (r *DeviceEnrollmentReconciler) assessDDI(ctx context.Context, e *otav1.DeviceEnrollment, enrollToken []byte) (metav1.ConditionStatus, string, string, error) {
	if e.Spec.DDI == nil || e.Spec.DDI.TargetTokensSecretRef == nil {
		return "", "", "", nil
	}
	name := e.Spec.DDI.TargetTokensSecretRef.Name
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return metav1.ConditionFalse, otav1.ReasonTargetTokensSecretAbsent, fmt.Sprintf("DDI target-tokens Secret %q not found in namespace %s: no DDI device authenticates with a TargetToken", name, e.Namespace), nil
		}
		return "", "", "", fmt.Errorf("read target-tokens Secret %s: %w", name, err)
	}
	if bad := badTargetTokens(s.Data, enrollToken); len(bad) > 0 {
		shown := bad[:min(len(bad), maxBadKeysShown)]
		msg := fmt.Sprintf("DDI target-tokens Secret %q: %d unusable entries (the others work): %s", name, len(bad), strings.Join(shown, "; "))
		if len(bad) > len(shown) {
			msg += fmt.Sprintf(" (and %d more)", len(bad)-len(shown))
		}
		return metav1.ConditionFalse, otav1.ReasonTargetTokensInvalid, msg, nil
	}
	return "", "", "", nil
}

// maxBadKeysShown bounds the keys a condition message names.
const maxBadKeysShown = 3

// badTargetTokens describes the unusable entries of a target-tokens
// Secret, sorted by key: keys that are no device IDs, tokens breaking the
// rules, the enrollment token reused, a token in two entries.
func badTargetTokens(data map[string][]byte, enrollToken []byte) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := map[string]string{} // token → first key
	var bad []string
	for _, k := range keys {
		tok := data[k]
		if why := enrolltoken.CheckDDITarget(k, tok); why != "" {
			bad = append(bad, fmt.Sprintf("key %q: %s", k, why))
			continue
		}
		if subtle.ConstantTimeCompare(tok, enrollToken) == 1 {
			bad = append(bad, fmt.Sprintf("key %q: the token is the enrollment token", k))
			continue
		}
		if first, dup := seen[string(tok)]; dup {
			bad = append(bad, fmt.Sprintf("key %q: same token as key %q", k, first))
			continue
		}
		seen[string(tok)] = k
	}
	return bad
}

// SetupWithManager registers the controller; a change of a token or
// target-tokens Secret re-assesses the DeviceEnrollments naming it.
func (r *DeviceEnrollmentReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &otav1.DeviceEnrollment{}, indexEnrollmentSecret, func(o client.Object) []string {
		e := o.(*otav1.DeviceEnrollment)
		names := []string{e.Spec.TokenSecretRef.Name}
		if e.Spec.DDI != nil && e.Spec.DDI.TargetTokensSecretRef != nil {
			names = append(names, e.Spec.DDI.TargetTokensSecretRef.Name)
		}
		return names
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

// menderKeyProblems names the preauthorized keys of spec.mender the OTA
// server cannot use ("" when all are usable): those devices would be
// answered 401 as if never preauthorized.
func menderKeyProblems(e *otav1.DeviceEnrollment) string {
	if e.Spec.Mender == nil {
		return ""
	}
	var bad []string
	for i, k := range e.Spec.Mender.PreauthorizedKeys {
		if _, err := menderkey.Parse([]byte(k)); err != nil {
			bad = append(bad, fmt.Sprintf("preauthorizedKeys[%d]: %v", i, err))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	shown := bad[:min(len(bad), 3)]
	msg := fmt.Sprintf("%d unusable preauthorized keys (the others work): %s", len(bad), strings.Join(shown, "; "))
	if len(bad) > len(shown) {
		msg += fmt.Sprintf(" (and %d more)", len(bad)-len(shown))
	}
	return msg
}
