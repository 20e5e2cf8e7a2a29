package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// The commit tests drive a device through install, boot confirmation and
// the rollout's commit against an httptest fake of protocol v1: the
// security floor is raised by the commit, never at boot, so a release that
// raised securityVersion can be rolled back until the commit.

// fakeRelease is a release the fake server can offer.
type fakeRelease struct {
	version   string
	secVer    int64
	image     []byte
	blob      []byte
	key       []byte
	vendorSig string
}

func releases(w *tamperWorld) (v1, v2 fakeRelease) {
	v1 = fakeRelease{"1.0.0", tmFloor, w.oldImage, w.oldBlob, w.oldKey, w.oldVendorSig}
	v2 = fakeRelease{"2.0.0", tmSecVer, w.image, w.blob, w.contentKey, w.vendorSig}
	return v1, v2
}

// fakeOTA is protocol v1 over HTTP: enrollment, update checks answered by
// answer (nil or a nil result: 204), blobs of the offered releases (with
// Range) and status reports.
type fakeOTA struct {
	t   *testing.T
	w   *tamperWorld
	srv *httptest.Server
	now time.Time

	mu      sync.Mutex
	pub     []byte
	blobs   map[string][]byte
	answer  func(q url.Values) *protov1.UpdateResponse
	edited  bool // answer edits the assignment: tampering, off-contract on purpose
	checks  []url.Values
	reports []protov1.StatusReport
}

func newFakeOTA(t *testing.T, w *tamperWorld) *fakeOTA {
	f := &fakeOTA{t: t, w: w, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), blobs: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOTA) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/v1/enroll":
		var req protov1.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(400, protov1.Error{Code: "malformed_json", Message: err.Error()})
			return
		}
		f.pub, _ = base64.StdEncoding.DecodeString(req.PublicKey)
		reply(201, sealedAnswer(f.t, req, strings.Repeat("t", 43), f.w.serverKeyID))
	case r.URL.Path == "/v1/update":
		q := r.URL.Query()
		f.checks = append(f.checks, q)
		var u *protov1.UpdateResponse
		if f.answer != nil {
			u = f.answer(q)
		}
		if u == nil {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if f.edited {
			contract.ExemptResponse(w.Header(), "the test edits the assignment to tamper with it")
		}
		reply(200, u)
	case strings.HasPrefix(r.URL.Path, "/v1/blobs/"):
		name := strings.TrimPrefix(r.URL.Path, "/v1/blobs/")
		b, ok := f.blobs[name]
		if !ok {
			reply(403, protov1.Error{Code: "not_assigned", Message: "this device holds no assignment to the blob"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+name+`"`)
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(b)-1)+"/"+strconv.Itoa(len(b)))
			w.WriteHeader(http.StatusPartialContent)
		}
		_, _ = w.Write(b[start:])
	case r.URL.Path == "/v1/status":
		var rep protov1.StatusReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			reply(400, protov1.Error{Code: "malformed_json", Message: err.Error()})
			return
		}
		f.reports = append(f.reports, rep)
		reply(200, protov1.StatusResponse{State: rep.State})
	default:
		reply(404, protov1.Error{Code: "not_found", Message: "no such endpoint"})
	}
}

// assignmentFor is the install assignment of rel for the enrolled device,
// bound to nonce. Call with f.mu held (from answer).
func (f *fakeOTA) assignmentFor(rel fakeRelease, nonce string) assignment.Assignment {
	blobSum, plainSum := sha256.Sum256(rel.blob), sha256.Sum256(rel.image)
	wrapped, err := keywrap.Wrap(keywrap.X25519, f.pub, rel.key, blobSum, tmDevice)
	if err != nil {
		f.t.Error(err) // not Fatal: this runs in the server's goroutine
	}
	digest := hex.EncodeToString(blobSum[:])
	f.blobs[digest] = rel.blob
	return assignment.Assignment{
		DeviceID: tmDevice, Rollout: tmRollout, Release: "fleet/fw-" + rel.version, Version: rel.version, SecurityVersion: rel.secVer,
		PlainSHA256: hex.EncodeToString(plainSum[:]), PlainSize: int64(len(rel.image)),
		EncryptedSHA256: digest, EncryptedSize: int64(len(rel.blob)),
		Suite: envelope.Suite, BlobURL: f.srv.URL + "/v1/blobs/" + digest, KEM: string(keywrap.X25519),
		WrappedKey: wrapped, VendorSignature: rel.vendorSig, Nonce: nonce,
		IssuedAt: f.now.Add(-time.Minute), ExpiresAt: f.now.Add(time.Hour),
	}
}

// sign signs a as the OTA server does, without Validate, so that tests
// can sign payloads a correct server never would.
func (f *fakeOTA) sign(a assignment.Assignment, key ed25519.PrivateKey) *assignment.Signed {
	payload, err := json.Marshal(a)
	if err != nil {
		f.t.Error(err)
	}
	return &assignment.Signed{Payload: payload, Signature: ed25519.Sign(key, append([]byte("otaflow-assignment/v1\n"), payload...)), KeyID: f.w.serverKeyID}
}

// offer answers every check with action for rel (install, rollback or
// commit: the flags follow the action), edited by edit.
func (f *fakeOTA) offer(action string, rel fakeRelease, edit func(a *assignment.Assignment, u *protov1.UpdateResponse)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edited = edit != nil
	f.answer = func(q url.Values) *protov1.UpdateResponse {
		a := f.assignmentFor(rel, q.Get("nonce"))
		a.Rollback, a.Commit = action == protov1.ActionRollback, action == protov1.ActionCommit
		u := &protov1.UpdateResponse{Action: action, Rollout: tmRollout}
		if edit != nil {
			edit(&a, u)
		}
		if u.Assignment == nil {
			u.Assignment = f.sign(a, f.w.serverKey)
		}
		return u
	}
}

func (f *fakeOTA) idle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer, f.edited = nil, false
}

func (f *fakeOTA) lastCheck() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks[len(f.checks)-1]
}

func (f *fakeOTA) reportStates() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for _, r := range f.reports {
		s = append(s, string(r.State))
	}
	return s
}

// simDevice is an installer and a bootloader: Install stages a version,
// the reboot hook boots it.
type simDevice struct {
	mu       sync.Mutex
	running  string
	staged   string
	boot     int
	installs []Image
}

func (d *simDevice) Running(context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running, nil
}

func (d *simDevice) Install(_ context.Context, img Image) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.staged = img.Version
	d.installs = append(d.installs, img)
	return nil
}

func (d *simDevice) Confirm(context.Context, string) error { return nil }

func (d *simDevice) reboot(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.boot++
	d.running = d.staged
	return nil
}

func (d *simDevice) bootID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strconv.Itoa(d.boot)
}

// commitRig is a device with a DirStore against a fakeOTA.
type commitRig struct {
	t        *testing.T
	w        *tamperWorld
	f        *fakeOTA
	dev      *simDevice
	dir      string
	events   []Event
	v1, v2   fakeRelease
	agent    *Agent
	stepErrs []error
	client   *http.Client // held to the contract
}

func newCommitRig(t *testing.T) *commitRig {
	w := newTamperWorld(t, mrand.New(mrand.NewPCG(11, 11)))
	r := &commitRig{t: t, w: w, f: newFakeOTA(t, w), dev: &simDevice{running: "1.0.0"}, dir: t.TempDir()}
	r.v1, r.v2 = releases(w)
	r.client = contractClient(t, r.f.srv.Client().Transport)
	r.restart()
	return r
}

// restart starts a new Agent on a reopened DirStore: a restarted device.
func (r *commitRig) restart() {
	store, err := NewDirStore(r.dir)
	mustT(r.t, err)
	r.agent, err = New(Config{
		ServerURL: r.f.srv.URL, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: r.w.serverPEM, VendorKeysPEM: [][]byte{r.w.vendorPEM},
		HTTPClient: r.client, Store: store, Installer: r.dev, Reboot: r.dev.reboot, BootID: r.dev.bootID,
		Version: "1.0.0", SecurityFloor: tmFloor, Clock: func() time.Time { return r.f.now },
		OnEvent: func(e Event) { r.events = append(r.events, e) },
	})
	mustT(r.t, err)
}

func (r *commitRig) step() error {
	r.t.Helper()
	_, err := r.agent.Step(context.Background())
	return err
}

func (r *commitRig) mustStep() {
	r.t.Helper()
	if err := r.step(); err != nil {
		r.t.Fatal(err)
	}
}

// stored is the state as a freshly opened DirStore reads it from disk.
func (r *commitRig) stored() State {
	r.t.Helper()
	st, err := (&DirStore{Dir: r.dir}).Load()
	mustT(r.t, err)
	return st
}

func (r *commitRig) eventsOf(kind string) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// installV2 takes the device from 1.0.0 (floor 5) to a confirmed 2.0.0
// (securityVersion 7): install, reboot, restart, confirm.
func (r *commitRig) installV2() {
	r.t.Helper()
	r.f.offer(protov1.ActionInstall, r.v2, nil)
	r.mustStep()
	if r.dev.running != "2.0.0" || r.dev.boot != 1 {
		r.t.Fatalf("after install: running %q, boot %d", r.dev.running, r.dev.boot)
	}
	r.f.idle()
	r.restart()
	r.mustStep()
}

func (r *commitRig) checkFloors(where string, floor, pending int64) {
	r.t.Helper()
	for name, st := range map[string]State{"state": r.agent.State(), "disk": r.stored()} {
		if st.SecurityFloor != floor || st.PendingFloor != pending {
			r.t.Fatalf("%s: %s floor %d pending %d, want %d and %d", where, name, st.SecurityFloor, st.PendingFloor, floor, pending)
		}
	}
	if s := r.agent.Status(); s.SecurityFloor != floor || s.PendingFloor != pending {
		r.t.Fatalf("%s: status floor %d pending %d, want %d and %d", where, s.SecurityFloor, s.PendingFloor, floor, pending)
	}
}

// TestFloorNotRaisedAtBoot: confirming a release with a higher
// securityVersion keeps the floor and records the pending floor; the
// check-ins keep sending the committed floor.
func TestFloorNotRaisedAtBoot(t *testing.T) {
	r := newCommitRig(t)
	r.installV2()
	st := r.stored()
	if st.Version != "2.0.0" || st.Work != nil || len(st.Pending) != 0 {
		t.Fatalf("after confirm: version %q work %+v pending %+v", st.Version, st.Work, st.Pending)
	}
	r.checkFloors("after confirm", tmFloor, tmSecVer)
	if got, want := r.f.reportStates(), []string{"downloading", "downloaded", "installing", "installed", "succeeded"}; !slices.Equal(got, want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	if q := r.f.lastCheck(); q.Get("version") != "2.0.0" || q.Get("securityFloor") != strconv.Itoa(tmFloor) {
		t.Fatalf("check-in after confirm: %v", q)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, StateFile))
	mustT(t, err)
	if !strings.Contains(string(b), `"pendingFloor": 7`) || !strings.Contains(string(b), `"securityFloor": 5`) {
		t.Fatalf("state.json:\n%s", b)
	}
}

// TestCommitRaisesFloor: a commit for the running release raises the
// floor to its securityVersion, durably, sends no report, and the next
// check-ins (also after a restart) carry the new floor.
func TestCommitRaisesFloor(t *testing.T) {
	r := newCommitRig(t)
	r.installV2()
	reports := len(r.f.reportStates())
	r.events = nil
	r.f.offer(protov1.ActionCommit, r.v2, nil)
	r.mustStep()
	if q := r.f.lastCheck(); q.Get("securityFloor") != strconv.Itoa(tmFloor) {
		t.Fatalf("the check answered with the commit sent floor %s", q.Get("securityFloor"))
	}
	r.checkFloors("after commit", tmSecVer, 0)
	// One event, and no state change: the device's last outcome stays.
	if c := r.events; len(c) != 1 || c[0].Kind != EventCommitted || c[0].SecurityFloor != tmSecVer || c[0].Target != "2.0.0" || c[0].Rollout != tmRollout {
		t.Fatalf("events %+v, want one %s", c, EventCommitted)
	}
	if got := r.f.reportStates(); len(got) != reports || len(r.stored().Pending) != 0 {
		t.Fatalf("a commit sent or queued a report: %v", got[reports:])
	}

	// A restarted device keeps the committed floor (the configured
	// starting floor is lower) and reports it.
	r.f.idle()
	r.restart()
	r.checkFloors("after restart", tmSecVer, 0)
	r.mustStep()
	if q := r.f.lastCheck(); q.Get("securityFloor") != strconv.Itoa(tmSecVer) || q.Get("version") != "2.0.0" {
		t.Fatalf("check-in after the commit: %v", q)
	}
}

// TestCommitRefused: commits that fail verification, are not signed as a
// commit, or name another version are refused with a code, emitted,
// never reported, and change nothing.
func TestCommitRefused(t *testing.T) {
	r := newCommitRig(t)
	r.installV2()
	reports := len(r.f.reportStates())
	cases := []struct {
		name string
		edit func(a *assignment.Assignment, u *protov1.UpdateResponse)
		code string
	}{
		{"commit for another version", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Version = "1.0.0" }, RefuseCommit},
		{"commit for a newer version", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Version = "3.0.0"; a.SecurityVersion = 9 }, RefuseCommit},
		{"not signed as a commit", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Commit = false }, RefuseCommit},
		{"rollback instead of commit", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Commit, a.Rollback = false, true }, RefuseCommit},
		{"commit and rollback", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Rollback = true }, RefuseMalformed},
		{"bad signature", func(a *assignment.Assignment, u *protov1.UpdateResponse) { u.Assignment = r.f.sign(*a, r.w.evilEd) }, RefuseBadSignature},
		{"tampered payload", func(a *assignment.Assignment, u *protov1.UpdateResponse) {
			s := r.f.sign(*a, r.w.serverKey)
			s.Payload = []byte(strings.Replace(string(s.Payload), `"securityVersion":7`, `"securityVersion":9`, 1))
			u.Assignment = s
		}, RefuseBadSignature},
		{"wrong nonce", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Nonce = strings.Repeat("ab", 16) }, RefuseNonce},
		{"expired", func(a *assignment.Assignment, _ *protov1.UpdateResponse) {
			a.IssuedAt, a.ExpiresAt = r.f.now.Add(-3*time.Hour), r.f.now.Add(-2*time.Hour)
		}, RefuseExpired},
		{"not yet valid", func(a *assignment.Assignment, _ *protov1.UpdateResponse) {
			a.IssuedAt, a.ExpiresAt = r.f.now.Add(2*time.Hour), r.f.now.Add(3*time.Hour)
		}, RefuseNotYetValid},
		{"another device", func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.DeviceID = "dev-other" }, RefuseWrongDevice},
		{"another key type", func(a *assignment.Assignment, _ *protov1.UpdateResponse) {
			a.KEM, a.WrappedKey = "p256", make([]byte, 113)
		}, RefuseKEM},
		{"signed for another rollout", func(_ *assignment.Assignment, u *protov1.UpdateResponse) { u.Rollout = "fleet/other" }, RefuseRolloutMismatch},
	}
	for _, tc := range cases {
		r.events = nil
		r.f.offer(protov1.ActionCommit, r.v2, tc.edit)
		err := r.step()
		ref, ok := AsRefusal(err)
		if !ok || ref.Code != tc.code {
			t.Fatalf("%s: step %v, want refusal %s", tc.name, err, tc.code)
		}
		if ev := r.eventsOf(EventRefusal); len(ev) != 1 || ev[0].Code != tc.code || ev[0].Reason != ref.Error() || ev[0].Rollout == "" {
			t.Fatalf("%s: refusal events %+v", tc.name, ev)
		}
		if c := r.eventsOf(EventCommitted); len(c) != 0 {
			t.Fatalf("%s: committed %+v", tc.name, c)
		}
		if got := r.f.reportStates(); len(got) != reports || len(r.stored().Pending) != 0 {
			t.Fatalf("%s: a refused commit was reported: %v", tc.name, got[reports:])
		}
		r.checkFloors(tc.name, tmFloor, tmSecVer)
		if st := r.agent.State(); st.Version != "2.0.0" || st.Work != nil {
			t.Fatalf("%s: state %+v", tc.name, st)
		}
	}
	// The device still takes a genuine commit.
	r.f.offer(protov1.ActionCommit, r.v2, nil)
	r.mustStep()
	r.checkFloors("genuine commit", tmSecVer, 0)
}

// TestCommitNotAboveFloorIsNoop: a commit at or below the committed floor
// (a late duplicate) is accepted and changes nothing: no refusal, no
// event, no report.
func TestCommitNotAboveFloorIsNoop(t *testing.T) {
	r := newCommitRig(t)
	r.installV2()
	r.f.offer(protov1.ActionCommit, r.v2, nil)
	r.mustStep()
	r.checkFloors("after commit", tmSecVer, 0)
	reports := len(r.f.reportStates())
	for _, sv := range []int64{tmSecVer, tmSecVer - 1, 0} {
		r.events = nil
		r.f.offer(protov1.ActionCommit, r.v2, func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.SecurityVersion = sv })
		if err := r.step(); err != nil {
			t.Fatalf("commit of securityVersion %d: %v", sv, err)
		}
		if len(r.events) != 0 {
			t.Fatalf("commit of securityVersion %d: events %+v", sv, r.events)
		}
		r.checkFloors("no-op commit", tmSecVer, 0)
	}
	if got := r.f.reportStates(); len(got) != reports {
		t.Fatalf("reports %v", got[reports:])
	}
}

// TestRollbackBeforeAndAfterCommit: until the rollout commits, the device
// can be rolled back to its previous release although that release has a
// lower securityVersion; after the commit the same rollback is refused
// below the floor (and reported, as any refused rollback).
func TestRollbackBeforeAndAfterCommit(t *testing.T) {
	t.Run("before commit", func(t *testing.T) {
		r := newCommitRig(t)
		r.installV2()
		r.f.offer(protov1.ActionRollback, r.v1, nil)
		r.mustStep()
		if r.dev.running != "1.0.0" || len(r.dev.installs) != 2 || r.dev.installs[1].Version != "1.0.0" {
			t.Fatalf("rollback not installed: running %q installs %d", r.dev.running, len(r.dev.installs))
		}
		r.f.idle()
		r.restart()
		r.mustStep()
		if got := r.f.reportStates(); got[len(got)-1] != string(protov1.StateRolledBack) {
			t.Fatalf("reports %v", got)
		}
		// Rolled back to securityVersion 5 = the committed floor: nothing pending.
		r.checkFloors("after rollback", tmFloor, 0)
		if q := r.f.lastCheck(); q.Get("version") != "1.0.0" || q.Get("securityFloor") != strconv.Itoa(tmFloor) {
			t.Fatalf("check-in after rollback: %v", q)
		}
	})
	t.Run("after commit", func(t *testing.T) {
		r := newCommitRig(t)
		r.installV2()
		r.f.offer(protov1.ActionCommit, r.v2, nil)
		r.mustStep()
		r.checkFloors("after commit", tmSecVer, 0)
		r.f.offer(protov1.ActionRollback, r.v1, nil)
		err := r.step()
		if ref, ok := AsRefusal(err); !ok || ref.Code != RefuseBelowFloor {
			t.Fatalf("rollback after commit: %v, want %s", err, RefuseBelowFloor)
		}
		if r.dev.running != "2.0.0" || len(r.dev.installs) != 1 {
			t.Fatalf("rolled back below the floor: running %q installs %d", r.dev.running, len(r.dev.installs))
		}
		if got := r.f.reportStates(); got[len(got)-1] != string(protov1.StateFailed) {
			t.Fatalf("reports %v", got)
		}
		r.checkFloors("after refused rollback", tmSecVer, 0)
	})
}

// TestInstallWithCommitFlagRefused: an install (or rollback) assignment
// signed with commit set is refused as malformed and reported, like any
// refused install; nothing is installed and the floor does not move.
func TestInstallWithCommitFlagRefused(t *testing.T) {
	for _, action := range []string{protov1.ActionInstall, protov1.ActionRollback} {
		r := newCommitRig(t)
		r.f.offer(action, r.v2, func(a *assignment.Assignment, _ *protov1.UpdateResponse) { a.Commit, a.Rollback = true, false })
		err := r.step()
		if ref, ok := AsRefusal(err); !ok || ref.Code != RefuseMalformed || !strings.Contains(ref.Error(), "commit=true") {
			t.Fatalf("%s with commit: %v", action, err)
		}
		if len(r.dev.installs) != 0 || len(r.eventsOf(EventCommitted)) != 0 {
			t.Fatalf("%s with commit: installs %d events %+v", action, len(r.dev.installs), r.events)
		}
		if got := r.f.reportStates(); !slices.Equal(got, []string{"failed"}) {
			t.Fatalf("%s with commit: reports %v", action, got)
		}
		r.checkFloors(action+" with commit", tmFloor, 0)
	}
}

// TestCommitSaveFailure: when the new floor cannot be saved the agent
// keeps the old one in memory too, so it never reports a floor that a
// power cut could lose.
func TestCommitSaveFailure(t *testing.T) {
	w := newTamperWorld(t, mrand.New(mrand.NewPCG(12, 12)))
	f := newFakeOTA(t, w)
	_, v2 := releases(w)
	store := &failingStore{MemStore: NewMemStore()}
	var committed int
	a, err := New(Config{
		ServerURL: f.srv.URL, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM}, HTTPClient: contractClient(t, f.srv.Client().Transport),
		Store: store, Installer: &simDevice{running: "2.0.0"}, Version: "2.0.0", SecurityFloor: tmFloor,
		Clock: func() time.Time { return f.now },
		OnEvent: func(e Event) {
			if e.Kind == EventCommitted {
				committed++
			}
		},
	})
	mustT(t, err)
	f.offer(protov1.ActionCommit, v2, nil)
	f.mu.Lock()
	f.answer = func(orig func(url.Values) *protov1.UpdateResponse) func(url.Values) *protov1.UpdateResponse {
		return func(q url.Values) *protov1.UpdateResponse {
			store.fail.Store(true) // enrollment is saved; the commit is not
			return orig(q)
		}
	}(f.answer)
	f.mu.Unlock()
	if _, err := a.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("step: %v", err)
	}
	if st := a.State(); st.SecurityFloor != tmFloor || committed != 0 {
		t.Fatalf("floor %d, committed events %d after a failed save", st.SecurityFloor, committed)
	}
	store.fail.Store(false)
	f.idle()
	if _, err := a.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := f.lastCheck(); q.Get("securityFloor") != strconv.Itoa(tmFloor) {
		t.Fatalf("reported floor %s that was never saved", q.Get("securityFloor"))
	}
}

type failingStore struct {
	*MemStore
	fail atomic.Bool
}

func (s *failingStore) Save(st State) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.MemStore.Save(st)
}

var errDiskFull = &os.PathError{Op: "write", Path: "state.json", Err: errString("disk full")}

type errString string

func (e errString) Error() string { return string(e) }
