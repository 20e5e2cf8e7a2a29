// Package ddi runs hawkBit DDI clients against otaflow as it runs in a
// cluster — a real kube-apiserver and etcd, the manager and the OTA server
// (with --ddi) as separate processes — beside native devices, and asserts
// exact counts in Rollout status. TestSWUpdate runs the real SWUpdate.
package ddi

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
)

var stack *harness.Stack

func TestMain(m *testing.M) {
	os.Exit(harness.RunWithStack(m, "otaflow-ddi-", harness.StackOptions{Tenants: true, DDI: true, ReportInterval: time.Second}, &stack))
}

// tenant creates namespace ns with a DeviceEnrollment "factory" whose
// spec.ddi gives each controller of ids its own target token (returned)
// and registers them as sensor-v1 devices labelled region=eu; the
// enrollment token (also returned) enrolls native devices.
func tenant(t *testing.T, ns string, ids []string) (enrollToken string, targets map[string]string) {
	t.Helper()
	ctx := context.Background()
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	targets = map[string]string{}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ddi-target-tokens"}, Data: map[string][]byte{}}
	for _, id := range ids {
		tok, err := harness.RandomToken()
		if err != nil {
			t.Fatal(err)
		}
		targets[id] = tok
		sec.Data[id] = []byte(tok)
	}
	if err := stack.CP.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	tok, err := stack.CreateDeviceEnrollmentWith(ctx, ns, "factory", func(e *otav1.DeviceEnrollment) {
		e.Spec.DDI = &otav1.DDIEnrollment{
			DeviceType:            "sensor-v1",
			TargetTokensSecretRef: &otav1.LocalSecretReference{Name: sec.Name},
			Labels:                map[string]string{"region": "eu"},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, targets
}
