package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/agent"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fixture is one namespace with a Ready release 2.0.0 (securityVersion 4)
// of a random image, signed by a vendor key, and a rollout of it to every
// sensor-v1 device in region eu, with its only wave open.
type fixture struct {
	ns        string
	image     []byte
	vendorPEM []byte
	release   *otav1.FirmwareRelease
	rollout   *otav1.Rollout
}

func pubPEM(t *testing.T, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func newFixture(t *testing.T, size int) *fixture {
	t.Helper()
	ctx := rootCtx
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}
	must(t, k8s.Create(ctx, nsObj))
	f := &fixture{ns: nsObj.Name}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.vendorPEM = pubPEM(t, pub)
	must(t, k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "vendor-keys"},
		Data: map[string][]byte{"cosign.pub": f.vendorPEM}}))
	f.image = make([]byte, size)
	_, _ = rand.Read(f.image)
	url := images.put("/"+f.ns+"/fw.bin", f.image)
	sum := sha256.Sum256(f.image)
	f.release = &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "fw-2"},
		Spec: otav1.FirmwareReleaseSpec{
			Version: "2.0.0", SecurityVersion: 4,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
			Source:        otav1.Source{URL: url, SHA256: hex.EncodeToString(sum[:])},
			Signature: otav1.Signature{
				Value:      base64.StdEncoding.EncodeToString(ed25519.Sign(priv, f.image)),
				PublicKeys: []otav1.PublicKeySource{{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "cosign.pub"}}},
			},
		},
	}
	must(t, k8s.Create(ctx, f.release))
	eventually(t, 30*time.Second, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(f.release), f.release); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(f.release.Status.Conditions, otav1.ConditionReady) {
			return fmt.Errorf("release not Ready: %+v", f.release.Status.Conditions)
		}
		return nil
	})
	f.rollout = &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "eu"},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: f.release.Name},
			Selector:   &metav1.LabelSelector{MatchLabels: f.labels()},
			Waves:      []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}},
		},
	}
	must(t, k8s.Create(ctx, f.rollout))
	// Play the Rollout controller: open wave 0 with its field manager.
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
		"phase": "Progressing", "currentWave": int64(0), "waves": []any{map[string]any{"name": "all"}},
	}}}
	u.SetAPIVersion(otav1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(f.ns)
	u.SetName(f.rollout.Name)
	must(t, k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("otaflow-manager"), client.ForceOwnership))
	// Wait until the OTA server's catalog sees the open wave.
	eventually(t, 10*time.Second, func() error {
		ro := cat.Snapshot().Rollout(f.rolloutKey())
		if ro == nil || ro.View.Phase != otav1.RolloutProgressing || !ro.View.ReleaseReady {
			return fmt.Errorf("catalog has not seen the open rollout yet")
		}
		if c, ok := rep.Cutoffs(ro.UID); !ok || len(c) != 1 {
			return fmt.Errorf("cutoffs not computed yet")
		}
		return nil
	})
	return f
}

// labels select a fixture's devices: rollouts of other tests must not hold them.
func (f *fixture) labels() map[string]string {
	return map[string]string{"region": "eu", "fixture": f.ns}
}

func (f *fixture) rolloutKey() string { return f.ns + "/" + f.rollout.Name }

// status waits until the rollout's status satisfies cond.
func (f *fixture) waitStatus(t *testing.T, what string, cond func(otav1.RolloutStatus) bool) otav1.RolloutStatus {
	t.Helper()
	var ro otav1.Rollout
	eventually(t, 15*time.Second, func() error {
		if err := k8s.Get(rootCtx, client.ObjectKeyFromObject(f.rollout), &ro); err != nil {
			return err
		}
		if !cond(ro.Status) {
			return fmt.Errorf("%s: status %+v", what, ro.Status)
		}
		return nil
	})
	return ro.Status
}

// events records an agent's events.
type events struct {
	mu  sync.Mutex
	all []agent.Event
}

func (e *events) add(ev agent.Event) { e.mu.Lock(); e.all = append(e.all, ev); e.mu.Unlock() }

func (e *events) states() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.Kind == agent.EventState && (len(out) == 0 || out[len(out)-1] != ev.State) {
			out = append(out, ev.State)
		}
	}
	return out
}

func (e *events) reported() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.Kind == agent.EventReport && (len(out) == 0 || out[len(out)-1] != ev.State) {
			out = append(out, ev.State)
		}
	}
	return out
}

func (e *events) refusals() []agent.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []agent.Event
	for _, ev := range e.all {
		if ev.Kind == agent.EventRefusal {
			out = append(out, ev)
		}
	}
	return out
}

// recordingInstaller keeps what it was asked to install.
type recordingInstaller struct {
	mu        sync.Mutex
	running   string
	installed []agent.Image
}

func (r *recordingInstaller) Running(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, nil
}

func (r *recordingInstaller) Install(_ context.Context, img agent.Image) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.installed = append(r.installed, img)
	return nil
}

func (r *recordingInstaller) Confirm(context.Context, string) error { return nil }

func hasFailure(s otav1.RolloutStatus, device, reasonPart string) bool {
	return slices.ContainsFunc(s.RecentFailures, func(f otav1.DeviceFailure) bool {
		return f.Device == device && strings.Contains(f.Reason, reasonPart)
	})
}
