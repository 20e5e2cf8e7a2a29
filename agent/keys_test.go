package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// keyServer is a protocol v1 server whose assignment keys rotate: it
// answers every check with a commit signed by its current key (a fresh
// securityVersion each time, so every verified answer raises the floor)
// or, with install set, an install answer; GET /v1/keys serves its key set.
type keyServer struct {
	t *testing.T

	mu       sync.Mutex
	now      time.Time
	current  *assignment.Signer
	keys     []*assignment.Signer
	serial   int64
	doc      *assignment.SignedKeySet // served instead of the current set when set
	rotation bool                     // announce FeatureKeyRotation
	install  bool
	keysDown bool // GET /v1/keys answers 500
	sv       int64
	requests []string
	reports  []protov1.StatusReport
}

func edSigner(t testing.TB, seed byte) *assignment.Signer {
	s, err := assignment.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	mustT(t, err)
	return s
}

func (s *keyServer) set(serial int64, current *assignment.Signer, keys ...*assignment.Signer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serial, s.current, s.keys, s.doc = serial, current, keys, nil
}

func (s *keyServer) published() assignment.SignedKeySet {
	doc, err := assignment.SignKeySet(s.serial, s.keys...)
	mustT(s.t, err)
	return doc
}

func (s *keyServer) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *keyServer) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.URL.Path)
	switch r.URL.Path {
	case protov1.PathEnroll:
		var req protov1.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return jsonResp(400, protov1.Error{Code: "malformed_json", Message: err.Error()}), nil
		}
		return jsonResp(201, sealedAnswer(s.t, req, strings.Repeat("t", 43), s.current.KeyID())), nil
	case protov1.PathInfo:
		info := protov1.Info{Protocol: protov1.Name, Revision: 3, Features: []string{protov1.FeatureCommit}, AssignmentKeyIDs: []string{s.current.KeyID()}}
		if s.rotation {
			info.Revision, info.Features = protov1.Revision, append(info.Features, protov1.FeatureKeyRotation)
			for _, k := range s.keys {
				if k != s.current {
					info.AssignmentKeyIDs = append(info.AssignmentKeyIDs, k.KeyID())
				}
			}
		}
		return jsonResp(200, info), nil
	case protov1.PathKeys:
		if s.keysDown {
			return jsonResp(500, protov1.Error{Code: "internal", Message: "try again"}), nil
		}
		doc := s.published()
		if s.doc != nil {
			doc = *s.doc
		}
		return jsonResp(200, doc), nil
	case protov1.PathUpdate:
		s.sv++
		action := protov1.ActionCommit
		if s.install {
			action = protov1.ActionInstall
		}
		signed, err := s.current.Sign(assignment.Assignment{
			DeviceID: tmDevice, Rollout: tmRollout, Release: "fleet/fw-2", Version: "2.0.0", SecurityVersion: s.sv,
			PlainSHA256: strings.Repeat("a", 64), PlainSize: 100, EncryptedSHA256: strings.Repeat("b", 64), EncryptedSize: 174,
			Suite: "otaflow-enc/v1", BlobURL: tmBase + "/v1/blobs/" + strings.Repeat("b", 64), KEM: "x25519",
			WrappedKey: make([]byte, 80), VendorSignature: "c2ln", Nonce: r.URL.Query().Get("nonce"), Commit: !s.install,
			IssuedAt: s.now.Add(-time.Minute), ExpiresAt: s.now.Add(time.Hour),
		})
		mustT(s.t, err)
		return jsonResp(200, protov1.UpdateResponse{Action: action, Rollout: tmRollout, Assignment: &signed}), nil
	case protov1.PathStatus:
		var rep protov1.StatusReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			return jsonResp(400, protov1.Error{Code: "malformed_json", Message: err.Error()}), nil
		}
		s.reports = append(s.reports, rep)
		return jsonResp(200, protov1.StatusResponse{State: rep.State}), nil
	}
	_, _ = io.Copy(io.Discard, r.Body)
	return jsonResp(404, protov1.Error{Code: "not_found", Message: "no such endpoint"}), nil
}

// keyDevice is an agent of tmDevice against srv, trusting keys.
func keyDevice(t *testing.T, srv *keyServer, store StateStore, events *[]Event, keys ...*assignment.Signer) *Agent {
	t.Helper()
	var bundle []byte
	for _, k := range keys {
		bundle = append(bundle, pkixPEM(t, k.Public())...)
	}
	a, err := New(Config{
		ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: bundle, AllowUnsigned: true, HTTPClient: contractClient(t, srv),
		Store: store, Installer: &countingInstaller{}, Version: "2.0.0",
		Clock: func() time.Time { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.now }, KeyCheckInterval: time.Minute,
		OnEvent: func(e Event) {
			if events != nil {
				*events = append(*events, e)
			}
		},
	})
	mustT(t, err)
	return a
}

func (s *keyServer) advance(d time.Duration) { s.mu.Lock(); s.now = s.now.Add(d); s.mu.Unlock() }

// TestKeyRotationFollowed: a device polling through add → switch →
// retire verifies every answer, follows every key set, forgets the
// retired key, and keeps what it trusts across a restart.
func TestKeyRotationFollowed(t *testing.T) {
	old, next := edSigner(t, 1), edSigner(t, 2)
	srv := &keyServer{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), rotation: true}
	srv.set(1, old, old)
	store, err := NewDirStore(t.TempDir())
	mustT(t, err)
	var events []Event
	a := keyDevice(t, srv, store, &events, old)
	ctx := context.Background()
	steps := []struct {
		name    string
		apply   func()
		trusted []*assignment.Signer
		serial  int64
	}{
		{"one key", func() {}, []*assignment.Signer{old}, 0},
		{"add", func() { srv.set(2, old, old, next) }, []*assignment.Signer{old, next}, 2},
		{"switch", func() { srv.set(2, next, old, next) }, []*assignment.Signer{old, next}, 2},
		{"retire", func() { srv.set(3, next, next) }, []*assignment.Signer{next}, 3},
	}
	for i, st := range steps {
		st.apply()
		srv.advance(2 * time.Minute) // a key check is due
		if _, err := a.Step(ctx); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if f := a.State().SecurityFloor; f != int64(i+1) {
			t.Fatalf("%s: floor %d: the answer was not verified (status %+v)", st.name, f, a.Status())
		}
		ids, serial := a.TrustedKeyIDs()
		want := []string{}
		for _, k := range st.trusted {
			want = append(want, k.KeyID())
		}
		slices.Sort(want)
		if !slices.Equal(ids, want) || serial != st.serial {
			t.Fatalf("%s: trusts %v at serial %d, want %v at %d", st.name, ids, serial, want, st.serial)
		}
	}
	for _, e := range events {
		if e.Kind == EventRefusal {
			t.Fatalf("refusal %+v", e)
		}
	}
	// A restarted device trusts what it learned, not what it was
	// provisioned with.
	a = keyDevice(t, srv, store, nil, old)
	if ids, serial := a.TrustedKeyIDs(); !slices.Equal(ids, []string{next.KeyID()}) || serial != 3 {
		t.Fatalf("after restart: trusts %v at %d", ids, serial)
	}
	// A replayed older set changes nothing.
	srv.mu.Lock()
	older, err := assignment.SignKeySet(2, old, next)
	mustT(t, err)
	srv.doc, srv.rotation = &older, true
	srv.keys = []*assignment.Signer{old, next} // announce it, so the device fetches it
	srv.mu.Unlock()
	srv.advance(2 * time.Minute)
	if _, err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, serial := a.TrustedKeyIDs(); !slices.Equal(ids, []string{next.KeyID()}) || serial != 3 {
		t.Fatalf("after a replayed set: trusts %v at %d", ids, serial)
	}
	if !slices.Contains(srv.paths(), protov1.PathKeys) {
		t.Fatal("the key set was never fetched")
	}
}

// TestKeySwitchWithoutCheck: a device that never ran a periodic check
// before the switch meets an assignment signed by a key it does not know,
// fetches the key set at once and verifies the assignment.
func TestKeySwitchWithoutCheck(t *testing.T) {
	old, next := edSigner(t, 1), edSigner(t, 2)
	srv := &keyServer{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), rotation: true}
	srv.set(2, next, old, next)
	a := keyDevice(t, srv, NewMemStore(), nil, old)
	a.cfg.KeyCheckInterval = 24 * time.Hour
	if _, err := a.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.State().SecurityFloor != 1 {
		t.Fatalf("the assignment by the new key was not verified: %+v", a.Status())
	}
	if ids, serial := a.TrustedKeyIDs(); len(ids) != 2 || serial != 2 {
		t.Fatalf("trusts %v at %d", ids, serial)
	}
}

// TestUntrustedSigningKey: a device that only trusts a retired key refuses
// the assignment with RefuseUntrustedKey and reports it, naming the key;
// a transient failure to fetch the key set refuses nothing.
func TestUntrustedSigningKey(t *testing.T) {
	old, next := edSigner(t, 1), edSigner(t, 2)
	for _, tc := range []struct {
		name     string
		rotation bool
		reason   string
	}{
		{"missed the rotation", true, "the server's key set is signed by none of them"},
		{"server without key sets", false, "the server publishes no key set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &keyServer{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), rotation: tc.rotation, install: true}
			srv.set(3, next, next)
			var events []Event
			a := keyDevice(t, srv, NewMemStore(), &events, old)
			ctx := context.Background()

			if tc.rotation {
				// The key set cannot be fetched: nothing is refused or
				// reported; the next poll tries again.
				srv.keysDown = true
				_, err := a.Step(ctx)
				if _, refused := AsRefusal(err); err == nil || refused || len(srv.reports) != 0 {
					t.Fatalf("while the key set is unavailable: %v, reports %+v", err, srv.reports)
				}
				srv.keysDown = false
			}

			_, err := a.Step(ctx)
			r, ok := AsRefusal(err)
			if !ok || r.Code != RefuseUntrustedKey {
				t.Fatalf("step: %v, want %s", err, RefuseUntrustedKey)
			}
			if len(srv.reports) != 1 {
				t.Fatalf("reports %+v", srv.reports)
			}
			rep := srv.reports[0]
			if rep.State != protov1.StateFailed || rep.Rollout != tmRollout || !strings.HasPrefix(rep.Reason, protov1.ReasonUntrustedSigningKey+": ") ||
				!strings.Contains(rep.Reason, next.KeyID()) || !strings.Contains(rep.Reason, tc.reason) || len(rep.Reason) > 512 {
				t.Fatalf("report %+v", rep)
			}
			if ids, _ := a.TrustedKeyIDs(); !slices.Equal(ids, []string{old.KeyID()}) {
				t.Fatalf("trusts %v", ids)
			}
			if !slices.ContainsFunc(events, func(e Event) bool { return e.Kind == EventRefusal && e.Code == RefuseUntrustedKey }) {
				t.Fatalf("events %+v", events)
			}
		})
	}
}

// TestUntrustedCommitNotReported: a commit by an untrusted key is refused
// but, like every refused commit, not reported.
func TestUntrustedCommitNotReported(t *testing.T) {
	old, next := edSigner(t, 1), edSigner(t, 2)
	srv := &keyServer{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), rotation: true}
	srv.set(3, next, next)
	a := keyDevice(t, srv, NewMemStore(), nil, old)
	if _, err := a.Step(context.Background()); !isRefusal(err, RefuseUntrustedKey) {
		t.Fatalf("step: %v", err)
	}
	if len(srv.reports) != 0 || a.State().SecurityFloor != 0 {
		t.Fatalf("reports %+v, floor %d", srv.reports, a.State().SecurityFloor)
	}
}

// TestReprovisionedKeys: configuring other keys replaces the trusted ones
// at the next start, keeping the serial, so a device can be recovered on
// site; the same keys again change nothing.
func TestReprovisionedKeys(t *testing.T) {
	old, next, third := edSigner(t, 1), edSigner(t, 2), edSigner(t, 3)
	srv := &keyServer{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), rotation: true}
	srv.set(5, next, next)
	store := NewMemStore()
	st := State{AssignmentKeys: &assignment.KeySet{Serial: 4}}
	e, err := assignment.PublicKeyOf(old.Public())
	mustT(t, err)
	st.AssignmentKeys.Keys = []assignment.PublicKey{e}
	st.ProvisionedKeys = old.KeyID()
	mustT(t, store.Save(st))
	a := keyDevice(t, srv, store, nil, old) // as persisted
	if ids, serial := a.TrustedKeyIDs(); !slices.Equal(ids, []string{old.KeyID()}) || serial != 4 {
		t.Fatalf("trusts %v at %d", ids, serial)
	}
	a = keyDevice(t, srv, store, nil, next, third) // a bundle of two
	want := []string{next.KeyID(), third.KeyID()}
	slices.Sort(want)
	if ids, serial := a.TrustedKeyIDs(); !slices.Equal(ids, want) || serial != 4 {
		t.Fatalf("re-provisioned: trusts %v at %d", ids, serial)
	}
	if _, err := a.Step(context.Background()); err != nil || a.State().SecurityFloor != 1 {
		t.Fatalf("step: %v, floor %d", err, a.State().SecurityFloor)
	}
	if _, err := New(Config{ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot", AllowUnsigned: true,
		AssignmentKeyPEM: pkixPEM(t, old.Public())[:40], Store: NewMemStore(), Installer: &countingInstaller{}}); err == nil || !strings.Contains(err.Error(), "AssignmentKeyPEM") {
		t.Fatalf("a truncated bundle: %v", err)
	}
	if st, _ := store.Load(); st.AssignmentKeys == nil || st.AssignmentKeys.Serial != 4 || st.ProvisionedKeys != strings.Join(want, ",") {
		t.Fatalf("state %+v", st)
	}
}
