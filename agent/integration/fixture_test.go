package integration_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/agent"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixture is one namespace with a Ready release 2.0.0 (securityVersion 4)
// of a random image, signed by a vendor key, and a rollout of it to every
// sensor-v1 device in region eu, with its only wave open.
type fixture struct {
	ns        string
	image     []byte
	vendorPEM []byte
	vendorKey releasetest.VendorKey
	release   *otav1.FirmwareRelease
	rollout   *otav1.Rollout
}

// pubPEM encodes a public key as agents are given vendor keys.
var pubPEM = releasetest.PublicPEM

func newFixture(t *testing.T, size int) *fixture {
	t.Helper()
	ctx := rootCtx
	f := &fixture{ns: releasetest.NewNamespace(t, k8s, "agent-")}
	key := releasetest.NewEd25519Key(t)
	f.vendorPEM, f.vendorKey = key.PEM, key
	must(t, k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "vendor-keys"},
		Data: map[string][]byte{"cosign.pub": f.vendorPEM}}))
	f.image = make([]byte, size)
	_, _ = rand.Read(f.image)
	url := images.Put("/"+f.ns+"/fw.bin", f.image)
	f.release = releasetest.Release(f.ns, "fw-2", "2.0.0", 4, url, f.image, key.Sign(t, f.image))
	must(t, k8s.Create(ctx, f.release))
	releasetest.WaitReady(t, k8s, f.release, 30*time.Second)
	f.rollout = &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "eu"},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: f.release.Name},
			Selector:   &metav1.LabelSelector{MatchLabels: f.labels()},
			Waves:      []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}},
		},
	}
	must(t, k8s.Create(ctx, f.rollout))
	f.setPhase(t, "Progressing")
	// Wait until the OTA server's catalog sees the open wave.
	releasetest.Eventually(t, 10*time.Second, func() error {
		ro := cat.Snapshot().Rollout(f.rolloutKey())
		if ro == nil || ro.View.Phase != rollout.Progressing || !ro.View.ReleaseReady {
			return fmt.Errorf("catalog has not seen the open rollout yet")
		}
		if c, ok := rep.Cutoffs(ro.UID); !ok || len(c) != 1 {
			return fmt.Errorf("cutoffs not computed yet")
		}
		return nil
	})
	return f
}

// setPhase plays the Rollout controller: wave 0 open, in the phase given,
// applied with its field manager; then waits for the catalog to see it.
func (f *fixture) setPhase(t *testing.T, phase string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
		"phase": phase, "currentWave": int64(0), "waves": []any{map[string]any{"name": "all", "startedAt": "2026-01-01T00:00:00Z"}},
	}}}
	u.SetAPIVersion(otav1.GroupVersion.String())
	u.SetKind("Rollout")
	u.SetNamespace(f.ns)
	u.SetName(f.rollout.Name)
	must(t, k8s.Status().Apply(rootCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("otaflow-manager"), client.ForceOwnership))
	releasetest.Eventually(t, 10*time.Second, func() error {
		if ro := cat.Snapshot().Rollout(f.rolloutKey()); ro == nil || string(ro.View.Phase) != phase {
			return fmt.Errorf("catalog has not seen phase %s yet", phase)
		}
		return nil
	})
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
	releasetest.Eventually(t, 15*time.Second, func() error {
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
