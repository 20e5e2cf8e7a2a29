package integration_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/agent"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// device is an agent's configuration plus a simulated boot counter.
type device struct {
	cfg  agent.Config
	boot atomic.Int64
	ev   *events
}

func newDevice(t *testing.T, f *fixture, id string, store agent.StateStore, inst agent.Installer) *device {
	d := &device{ev: &events{}}
	d.cfg = agent.Config{
		ServerURL: serverURL, DeviceID: id, DeviceType: "sensor-v1", Labels: f.labels(),
		BootstrapToken: bootstrap, AssignmentKeyPEM: assignPEM, VendorKeysPEM: [][]byte{f.vendorPEM},
		Store: store, Installer: inst, Version: "1.0.0", SecurityFloor: 1,
		PollInterval: 100 * time.Millisecond, ProgressInterval: time.Millisecond,
		HTTPClient: &http.Client{Transport: http.DefaultTransport},
		BootID:     func() string { return strconv.FormatInt(d.boot.Load(), 10) },
		Reboot:     func(context.Context) error { d.boot.Add(1); return nil },
		OnEvent:    d.ev.add,
	}
	return d
}

func (d *device) start(t *testing.T) *agent.Agent {
	t.Helper()
	a, err := agent.New(d.cfg)
	must(t, err)
	return a
}

func TestHappyPath(t *testing.T) {
	ctx := rootCtx
	f := newFixture(t, 200_000)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	store, err := agent.NewDirStore(stateDir)
	must(t, err)
	slotsDir := filepath.Join(dir, "slots")
	must(t, agent.InitSlots(slotsDir, "1.0.0"))
	slots := &agent.ABSlots{Dir: slotsDir}
	d := newDevice(t, f, "dev-happy", store, slots)
	d.cfg.Staging = agent.FileStaging{Dir: stateDir}

	// Enroll, check, download, verify, install into slot b, reboot.
	if _, err := d.start(t).Step(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(slots.SlotPath("b"))
	must(t, err)
	if !bytes.Equal(got, f.image) {
		t.Fatal("slot b does not hold the image")
	}
	st, _ := store.Load()
	if st.Work == nil || st.Work.Phase != agent.PhaseInstalled || d.boot.Load() != 1 {
		t.Fatalf("after install: work %+v, boots %d", st.Work, d.boot.Load())
	}
	if m, _ := filepath.Glob(filepath.Join(stateDir, "staging-*")); len(m) != 0 {
		t.Fatalf("staging left behind: %v", m)
	}

	// The device restarts in the new boot: a new agent on the same state.
	if _, err := d.start(t).Step(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = store.Load()
	// The floor is not raised at boot: until the rollout commits, the
	// device can still be rolled back below securityVersion 4.
	if st.Version != "2.0.0" || st.SecurityFloor != 1 || st.PendingFloor != 4 || st.Work != nil || len(st.Pending) != 0 {
		t.Fatalf("after confirm: %+v", st)
	}
	// The rollout succeeds: the server sends the commit, the device raises
	// its floor to the release's securityVersion.
	f.setPhase(t, "Succeeded")
	releasetest.Eventually(t, 10*time.Second, func() error {
		if _, err := d.start(t).Step(ctx); err != nil {
			return err
		}
		if st, _ = store.Load(); st.SecurityFloor != 4 || st.PendingFloor != 0 {
			return fmt.Errorf("floor %d pending %d", st.SecurityFloor, st.PendingFloor)
		}
		return nil
	})
	ss, err := slots.Load()
	must(t, err)
	if ss.Active != "b" || ss.Trial || ss.Versions["b"] != "2.0.0" || ss.Versions["a"] != "1.0.0" {
		t.Fatalf("slots %+v", ss)
	}
	want := []string{"downloading", "downloaded", "installing", "installed", "succeeded"}
	if r := d.ev.reported(); !slices.Equal(r, want) {
		t.Fatalf("reports %v, want %v", r, want)
	}
	f.waitStatus(t, "succeeded counted", func(s otav1.RolloutStatus) bool {
		return len(s.Waves) == 1 && s.Waves[0].Succeeded == 1 && s.Waves[0].InProgress == 0
	})
	// Nothing more to do.
	if _, err := d.start(t).Step(ctx); err != nil {
		t.Fatal(err)
	}
	if s := d.ev.states(); s[len(s)-1] != agent.StateIdle {
		t.Fatalf("states %v", s)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	ctx := rootCtx
	f := newFixture(t, 300_000)
	stateDir := t.TempDir()
	store, err := agent.NewDirStore(stateDir)
	must(t, err)
	inst := &fileInstaller{}
	d := newDevice(t, f, "dev-resume", store, inst)
	d.cfg.Staging = agent.FileStaging{Dir: stateDir}
	d.cfg.CheckpointBytes = 1 // every verified chunk is durable
	tap := &blobTap{cutAfter: 100_000}
	d.cfg.HTTPClient = &http.Client{Transport: tap.wrap(http.DefaultTransport)}

	if _, err := d.start(t).Step(ctx); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("first step: %v", err)
	}
	st, _ := store.Load()
	if st.Work == nil || st.Work.Chunks == 0 || len(st.Work.Header) != envelope.HeaderSize {
		t.Fatalf("no progress kept: %+v", st.Work)
	}
	h, err := envelope.ParseHeader(st.Work.Header)
	must(t, err)
	kept := st.Work.Chunks

	// Restart: a new agent resumes from the chunk boundary.
	if _, err := d.start(t).Step(ctx); err != nil {
		t.Fatal(err)
	}
	wantRange := "bytes=" + strconv.FormatInt(envelope.ChunkOffset(h, kept), 10) + "-"
	if len(tap.ranges) != 2 || tap.ranges[0] != "" || tap.ranges[1] != wantRange {
		t.Fatalf("ranges %q, want [\"\" %q]", tap.ranges, wantRange)
	}
	redownloaded := tap.bytes - f.release.Status.Artifact.EncryptedSize
	if redownloaded < 0 || redownloaded >= int64(h.ChunkSize()+envelope.TagSize) {
		t.Fatalf("re-downloaded %d bytes; chunk is %d", redownloaded, h.ChunkSize())
	}
	sum := sha256.Sum256(f.image)
	if len(inst.digests) != 1 || inst.digests[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("installed %v", inst.digests)
	}
	t.Logf("cut after 100000 bytes, resumed at chunk %d, re-downloaded %d bytes", kept, redownloaded)
}

// fileInstaller hashes the staged file it is given.
type fileInstaller struct {
	recordingInstaller
	digests []string
}

func (f *fileInstaller) Install(ctx context.Context, img agent.Image) error {
	b, err := os.ReadFile(img.Path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	f.digests = append(f.digests, hex.EncodeToString(sum[:]))
	return f.recordingInstaller.Install(ctx, img)
}

func TestRefusals(t *testing.T) {
	ctx := rootCtx
	f := newFixture(t, 100_000)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherPEM := pubPEM(t, otherPub)
	cases := []struct {
		name, device string
		setup        func(*agent.Config)
		code, reason string
	}{
		{"tampered chunk", "dev-tamper", func(c *agent.Config) {
			tap := &blobTap{flipAt: 40_000}
			c.HTTPClient = &http.Client{Transport: tap.wrap(http.DefaultTransport)}
		}, agent.RefuseChunkAuth, "chunk 2 failed authentication"},
		{"bad vendor signature", "dev-vendor", func(c *agent.Config) {
			c.VendorKeysPEM = [][]byte{otherPEM}
		}, agent.RefuseVendorSignature, "vendor signature not verified"},
		{"assignment for another device", "dev-other", func(c *agent.Config) {
			c.HTTPClient = &http.Client{Transport: resign(http.DefaultTransport, func(a *assignment.Assignment) { a.DeviceID = "someone-else" })}
		}, agent.RefuseWrongDevice, "issued for another device"},
		{"expired assignment", "dev-expired", func(c *agent.Config) {
			c.Clock = func() time.Time { return time.Now().Add(3 * time.Hour) }
		}, agent.RefuseExpired, "assignment: expired"},
		{"security version below the floor", "dev-floor", func(c *agent.Config) {
			c.SecurityFloor = 3
			c.HTTPClient = &http.Client{Transport: resign(http.DefaultTransport, func(a *assignment.Assignment) { a.SecurityVersion = 2 })}
		}, agent.RefuseBelowFloor, "securityVersion 2 is below the device's security floor 3"},
		{"untrusted assignment key", "dev-key", func(c *agent.Config) {
			c.AssignmentKeyPEM = otherPEM
		}, agent.RefuseUntrustedKey, protov1.ReasonUntrustedSigningKey + ": assignment signed by key " + signer.KeyID()},
		{"replayed answer", "dev-nonce", func(c *agent.Config) {
			c.HTTPClient = &http.Client{Transport: resign(http.DefaultTransport, func(a *assignment.Assignment) { a.Nonce = strings.Repeat("ab", 16) })}
		}, agent.RefuseNonce, "nonce"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := &recordingInstaller{running: "1.0.0"}
			store := agent.NewMemStore()
			d := newDevice(t, f, tc.device, store, inst)
			tc.setup(&d.cfg)
			_, err := d.start(t).Step(ctx)
			r, ok := agent.AsRefusal(err)
			if !ok || r.Code != tc.code || !strings.Contains(r.Error(), tc.reason) {
				t.Fatalf("step: %v (refusal %v), want %s containing %q", err, ok, tc.code, tc.reason)
			}
			if len(inst.installed) != 0 {
				t.Fatal("installed a refused image")
			}
			st, _ := store.Load()
			if st.Work != nil || len(st.Pending) != 0 || st.SecurityFloor != d.cfg.SecurityFloor {
				t.Fatalf("state after refusal: work %+v, pending %+v, floor %d", st.Work, st.Pending, st.SecurityFloor)
			}
			if rep := d.ev.reported(); !slices.Contains(rep, string(protov1.StateFailed)) {
				t.Fatalf("reported %v, want failed", rep)
			}
		})
	}
	status := f.waitStatus(t, "every refusal in recentFailures", func(s otav1.RolloutStatus) bool {
		for _, tc := range cases {
			if !hasFailure(s, tc.device, tc.reason) {
				return false
			}
		}
		return true
	})
	if w := status.Waves[0]; w.Failed != int64(len(cases)) || w.Succeeded != 0 {
		t.Fatalf("wave %+v, want %d failed", w, len(cases))
	}
}
