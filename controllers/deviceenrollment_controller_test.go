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
		"secret-name":   {TokenSecretRef: otav1.TokenSecretReference{Name: "Not_A_Name"}},
		"no-secret":     {},
		"zero-max":      {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, MaxDevices: ptr.To[int64](0)},
		"empty-id":      {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, AllowedDeviceIDs: []string{""}},
		"duplicate-id":  {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, AllowedDeviceIDs: []string{"a", "a"}},
		"ddi-no-way-in": {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, DDI: &otav1.DDIEnrollment{DeviceType: "sensor-v1"}},
		"ddi-no-type":   {TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, DDI: &otav1.DDIEnrollment{GatewayToken: true}},
	} {
		e := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		if err := k8s.Create(ctx, e); err == nil {
			t.Errorf("%s: created %+v", name, spec)
		}
	}
}

// TestDeviceEnrollmentDDIConditions: spec.ddi's target-tokens Secret is
// assessed after the enrollment token: missing, then with unusable entries
// (named by key, the tokens never shown), then fixed; each Secret change
// is noticed without touching the DeviceEnrollment.
func TestDeviceEnrollmentDDIConditions(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	token := strings.Repeat("k", otav1.MinEnrollmentTokenLength)
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-token"},
		Data: map[string][]byte{"token": []byte(token)}}); err != nil {
		t.Fatal(err)
	}
	e := &otav1.DeviceEnrollment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory"},
		Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: "factory-token"},
			DDI: &otav1.DDIEnrollment{DeviceType: "sensor-v1", TargetTokensSecretRef: &otav1.LocalSecretReference{Name: "factory-ddi"}}},
	}
	if err := k8s.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(e)
	waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTargetTokensSecretAbsent)

	good := func(s string) []byte { return []byte("device-token-" + s + "-0123456789abcdefghij") }
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-ddi"}, Data: map[string][]byte{
		"dev-1":    good("1"),
		"bad..key": good("x"), // not a Secret key the API server refuses, and a valid device ID
		"dev-2":    []byte("short-secret"),
		"dev-3":    append(good("3"), '\n'),
		"dev-4":    good("1"),     // same token as dev-1
		"dev-5":    []byte(token), // the enrollment token
		"dev-6":    good("6"),
	}}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got := waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTargetTokensInvalid)
	msg := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady).Message
	for _, want := range []string{"4 unusable entries", `key "dev-2"`, `key "dev-3"`, `key "dev-4": same token as key "dev-1"`, "(and 1 more)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %s", msg, want)
		}
	}
	for _, secret := range []string{"short-secret", "0123456789abcdefghij", token} {
		if strings.Contains(msg, secret) {
			t.Fatalf("the condition shows a token: %q", msg)
		}
	}

	sec.Data = map[string][]byte{"dev-1": good("1"), "bad..key": good("x"), "dev-6": good("6")}
	if err := k8s.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got = waitEnrollment(t, key, metav1.ConditionTrue, otav1.ReasonEnrollmentActive)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "DDI devices register as type sensor-v1") {
		t.Fatalf("message %q does not describe spec.ddi", c.Message)
	}
	// A key that is no device ID (too long: Secret keys may have 253).
	sec.Data[strings.Repeat("d", 129)] = good("long")
	if err := k8s.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got = waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTargetTokensInvalid)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "not a device ID") {
		t.Fatalf("message %q does not say the key is no device ID", c.Message)
	}
	if err := k8s.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonTargetTokensSecretAbsent)
}
