package otaserver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/otaserver"
)

// TestWatchCredentialsDDITargets runs the credential watch against a real
// API server: a key added to the target-tokens Secret authenticates its
// device, a key removed and a deleted Secret revoke, a Secret created
// again is read again, and spec.ddi changes (gateway on) and the object's
// deletion take effect.
func TestWatchCredentialsDDITargets(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme := releasetest.Scheme()
	k8s, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ns := releasetest.NewNamespace(t, k8s, "ddi-watch-")
	must(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-token"},
		Data: map[string][]byte{"token": []byte(tok("factory"))}}))
	targets := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-ddi"},
		Data: map[string][]byte{"dev-a": []byte(tok("dev-a"))}}
	must(k8s.Create(ctx, targets))
	e := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory"},
		Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: "factory-token"},
			DDI: &otav1.DDIEnrollment{DeviceType: "sensor-v1", TargetTokensSecretRef: &otav1.LocalSecretReference{Name: "factory-ddi"}}}}
	must(k8s.Create(ctx, e))

	creds, ddi := otaserver.NewCredentialSet(), otaserver.NewDDITokens()
	must(otaserver.WatchCredentials(ctx, env.Config, scheme, creds, otaserver.CredentialWatchOptions{
		Resync: 200 * time.Millisecond, DDITargets: ddi, Log: logr.Discard()}))
	auth := otaserver.DDIAuthenticator{Creds: creds, Targets: ddi}
	// expect waits until the header authenticates on cid's path (want
	// nil) or fails with want.
	expect := func(header, cid string, want error) {
		t.Helper()
		releasetest.Eventually(t, 10*time.Second, func() error {
			_, err := auth.AuthenticateDDI(header, ns, cid, time.Now())
			if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
				return fmt.Errorf("%s on %s: %v, want %v", header, cid, err, want)
			}
			return nil
		})
	}
	tokA, tokB := "TargetToken "+tok("dev-a"), "TargetToken "+tok("dev-b")
	gateway := "GatewayToken " + tok("factory")
	// The first set is built before WatchCredentials returns.
	if _, err := auth.AuthenticateDDI(tokA, ns, "dev-a", time.Now()); err != nil {
		t.Fatalf("dev-a right after the watch started: %v", err)
	}
	expect(tokB, "dev-b", otaserver.ErrDDIUnknownToken)
	expect(gateway, "new-1", otaserver.ErrDDIGatewayDisabled)

	// A key added is seen (by the resync: the server does not watch
	// Secrets); a key removed revokes its device only.
	targets.Data["dev-b"] = []byte(tok("dev-b"))
	must(k8s.Update(ctx, targets))
	expect(tokB, "dev-b", nil)
	delete(targets.Data, "dev-a")
	must(k8s.Update(ctx, targets))
	expect(tokA, "dev-a", otaserver.ErrDDIUnknownToken)
	expect(tokB, "dev-b", nil)

	// spec.ddi changes come through the DeviceEnrollment informer.
	must(k8s.Get(ctx, client.ObjectKeyFromObject(e), e))
	e.Spec.DDI.GatewayToken = true
	must(k8s.Update(ctx, e))
	expect(gateway, "new-1", nil)
	expect(gateway, "dev-b", otaserver.ErrDDIWrongTarget) // has its own token

	// A deleted Secret revokes all its tokens; created again, it is read
	// again.
	must(k8s.Delete(ctx, targets))
	expect(tokB, "dev-b", otaserver.ErrDDIUnknownToken)
	expect(gateway, "dev-b", nil) // no target token any more
	must(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory-ddi"},
		Data: map[string][]byte{"dev-c": []byte(tok("dev-c"))}}))
	expect("TargetToken "+tok("dev-c"), "dev-c", nil)

	// Deleting the DeviceEnrollment revokes its target and gateway tokens.
	must(k8s.Delete(ctx, e))
	expect("TargetToken "+tok("dev-c"), "dev-c", otaserver.ErrDDIUnknownToken)
	expect(gateway, "new-1", otaserver.ErrDDIUnknownToken)
}
