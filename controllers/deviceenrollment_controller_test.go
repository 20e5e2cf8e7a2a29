package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

func waitEnrollment(t *testing.T, key client.ObjectKey, status metav1.ConditionStatus, reason string) *otav1.DeviceEnrollment {
	t.Helper()
	e := &otav1.DeviceEnrollment{}
	releasetest.Eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), key, e); err != nil {
			return err
		}
		c := meta.FindStatusCondition(e.Status.Conditions, otav1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != e.Generation {
			return fmt.Errorf("Ready is %+v, want %s/%s", c, status, reason)
		}
		return nil
	})
	return e
}

// TestDeviceEnrollmentConditions walks a DeviceEnrollment through what
// people get wrong: a missing Secret, a missing key, a short token, then a
// good one, suspension and expiry; each is a Ready reason, and fixing the
// Secret is noticed without touching the DeviceEnrollment.
func TestDeviceEnrollmentConditions(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	e := &otav1.DeviceEnrollment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory"},
		Spec:       otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: "factory-token"}, MaxDevices: ptr.To[int64](100)},
	}
	if err := k8s.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(e)
	waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTokenSecretAbsent)

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-token"}, Data: map[string][]byte{"other": []byte("x")}}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTokenKeyAbsent)

	sec.Data = map[string][]byte{"token": []byte("short")}
	if err := k8s.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got := waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTokenTooShort)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); strings.Contains(c.Message, "short") {
		t.Fatalf("the condition shows the token: %q", c.Message)
	}

	sec.Data = map[string][]byte{"token": []byte(strings.Repeat("k", otav1.MinEnrollmentTokenLength))}
	if err := k8s.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got = waitEnrollment(t, key, metav1.ConditionTrue, otav1.ReasonEnrollmentActive)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "at most 100 devices") {
		t.Fatalf("message %q does not state the quota", c.Message)
	}

	got.Spec.Suspend = true
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonEnrollmentPaused)

	got.Spec.Suspend = false
	got.Spec.ExpiresAt = ptr.To(metav1.NewTime(time.Now().Add(3 * time.Second)))
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitEnrollment(t, key, metav1.ConditionTrue, otav1.ReasonEnrollmentActive)
	// Expiry is noticed by a requeue at expiresAt, with no event.
	waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonEnrollmentExpired)
}

// TestDeviceEnrollmentValidation: mistakes the API server refuses at apply
// time.
func TestDeviceEnrollmentValidation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	for name, spec := range map[string]otav1.DeviceEnrollmentSpec{
		"secret-name":  {TokenSecretRef: otav1.TokenSecretReference{Name: "Not_A_Name"}},
		"no-secret":    {},
		"zero-max":     {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, MaxDevices: ptr.To[int64](0)},
		"empty-id":     {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, AllowedDeviceIDs: []string{""}},
		"duplicate-id": {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, AllowedDeviceIDs: []string{"a", "a"}},
	} {
		e := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		if err := k8s.Create(ctx, e); err == nil {
			t.Errorf("%s: created %+v", name, spec)
		}
	}
}
