package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// fuzzKey is a fixed signing key so that committed seeds stay valid.
var fuzzKey = ed25519.NewKeyFromSeed([]byte(strings.Repeat("k", ed25519.SeedSize)))

var fuzzNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fuzzAnswer returns a valid signed install answer for device dev-1.
func fuzzAnswer(tb testing.TB) []byte { return fuzzSignedAnswer(tb, protov1.ActionInstall) }

// fuzzCommitAnswer returns a valid signed commit answer for device dev-1
// running 2.0.0: the same assignment as fuzzAnswer's, with commit set.
func fuzzCommitAnswer(tb testing.TB) []byte { return fuzzSignedAnswer(tb, protov1.ActionCommit) }

// fuzzExpectation is what the fuzz targets verify answers against: dev-1
// running 2.0.0 with floor 3.
var fuzzExpectation = Expectation{DeviceID: "dev-1", KEM: "x25519", Nonce: strings.Repeat("0f", 16), Version: "2.0.0", SecurityFloor: 3, Now: fuzzNow, Skew: time.Minute}

func fuzzSignedAnswer(tb testing.TB, action string) []byte {
	s, err := assignment.NewSigner(fuzzKey)
	if err != nil {
		tb.Fatal(err)
	}
	signed, err := s.Sign(assignment.Assignment{
		DeviceID: "dev-1", Rollout: "fleet/ro", Release: "fleet/fw-2", Version: "2.0.0", SecurityVersion: 4,
		PlainSHA256: strings.Repeat("a", 64), PlainSize: 100, EncryptedSHA256: strings.Repeat("b", 64), EncryptedSize: 174,
		Suite: "otaflow-enc/v1", BlobURL: "https://ota.example.com/v1/blobs/" + strings.Repeat("b", 64), KEM: "x25519",
		WrappedKey: make([]byte, 80), VendorSignature: "c2ln", Nonce: strings.Repeat("0f", 16),
		Rollback: action == protov1.ActionRollback, Commit: action == protov1.ActionCommit,
		IssuedAt: fuzzNow.Add(-time.Minute), ExpiresAt: fuzzNow.Add(time.Hour),
	})
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(protov1.UpdateResponse{Action: action, Rollout: "fleet/ro", Assignment: &signed})
	return b
}

// FuzzUpdateResponse parses and verifies update answers as a device does.
// Whatever the bytes, it must not panic, every failure must be a
// *Refusal, and an accepted assignment must satisfy every device check.
func FuzzUpdateResponse(f *testing.F) {
	f.Add(fuzzAnswer(f))
	f.Add(fuzzCommitAnswer(f))
	f.Add([]byte(`{"action":"cancel","rollout":"fleet/ro","reason":"rollout aborted"}`))
	f.Add([]byte(`{"action":"commit","rollout":"fleet/ro"}`))
	f.Add([]byte(`{"action":"install","rollout":"fleet/ro"}`))
	f.Add([]byte(`{"action":"rollback","rollout":"a/b","assignment":{"payload":"e30=","signature":"","keyID":""}}`))
	v, err := assignment.NewVerifier(fuzzKey.Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := ParseUpdateResponse(body)
		if err != nil {
			if _, ok := AsRefusal(err); !ok {
				t.Fatalf("parse error is not a refusal: %v", err)
			}
			return
		}
		if u.Action == protov1.ActionCancel {
			return
		}
		exp := fuzzExpectation
		a, err := VerifyAssignment(v, u, exp)
		if err != nil {
			r, ok := AsRefusal(err)
			if !ok || r.Code == "" || reportReason(r.Error()) == "" {
				t.Fatalf("verify error is not a usable refusal: %v", err)
			}
			return
		}
		if a.DeviceID != exp.DeviceID || !strings.EqualFold(a.Nonce, exp.Nonce) ||
			a.Rollout != u.Rollout || !fuzzNow.Before(a.ExpiresAt.Add(time.Minute)) {
			t.Fatalf("accepted an assignment that fails a device check: %+v", a)
		}
		if u.Action == protov1.ActionCommit {
			// A commit below the floor is accepted (the agent ignores it).
			if !a.Commit || a.Rollback || a.Version != exp.Version {
				t.Fatalf("accepted a commit that is not one for the running version: %+v", a)
			}
		} else if a.Commit || a.Rollback != (u.Action == protov1.ActionRollback) || a.SecurityVersion < exp.SecurityFloor {
			t.Fatalf("accepted a %s assignment that fails a device check: %+v", u.Action, a)
		}
	})
}

func TestFuzzSeedAccepted(t *testing.T) {
	v, _ := assignment.NewVerifier(fuzzKey.Public())
	u, err := ParseUpdateResponse(fuzzAnswer(t))
	if err != nil {
		t.Fatal(err)
	}
	exp := fuzzExpectation
	if _, err := VerifyAssignment(v, u, exp); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Expectation){
		"other device": func(e *Expectation) { e.DeviceID = "dev-2" },
		"floor":        func(e *Expectation) { e.SecurityFloor = 5 },
		"nonce":        func(e *Expectation) { e.Nonce = strings.Repeat("aa", 16) },
		"expired":      func(e *Expectation) { e.Now = fuzzNow.Add(2 * time.Hour) },
		"kem":          func(e *Expectation) { e.KEM = "p256" },
	} {
		e := exp
		mutate(&e)
		if _, err := VerifyAssignment(v, u, e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	u.Action = protov1.ActionRollback
	if _, err := VerifyAssignment(v, u, exp); err == nil {
		t.Error("install assignment accepted as a rollback")
	}
	u.Action = protov1.ActionCommit
	if _, err := VerifyAssignment(v, u, exp); !isRefusal(err, RefuseCommit) {
		t.Errorf("install assignment as a commit: %v, want %s", err, RefuseCommit)
	}

	// The commit seed: accepted for the running version whatever the
	// floor (at or below it the agent ignores it), refused otherwise.
	c, err := ParseUpdateResponse(fuzzCommitAnswer(t))
	if err != nil {
		t.Fatal(err)
	}
	for floor, ok := range map[int64]bool{3: true, 4: true, 9: true} {
		e := exp
		e.SecurityFloor = floor
		if a, err := VerifyAssignment(v, c, e); (err == nil) != ok || (ok && (!a.Commit || a.SecurityVersion != 4)) {
			t.Errorf("commit with floor %d: %+v %v", floor, a, err)
		}
	}
	for name, tc := range map[string]struct {
		mutate func(*Expectation)
		code   string
	}{
		"other version": {func(e *Expectation) { e.Version = "2.0.1" }, RefuseCommit},
		"no version":    {func(e *Expectation) { e.Version = "" }, RefuseCommit},
		"other device":  {func(e *Expectation) { e.DeviceID = "dev-2" }, RefuseWrongDevice},
		"nonce":         {func(e *Expectation) { e.Nonce = strings.Repeat("aa", 16) }, RefuseNonce},
		"expired":       {func(e *Expectation) { e.Now = fuzzNow.Add(2 * time.Hour) }, RefuseExpired},
		"kem":           {func(e *Expectation) { e.KEM = "p256" }, RefuseKEM},
	} {
		e := exp
		tc.mutate(&e)
		if _, err := VerifyAssignment(v, c, e); !isRefusal(err, tc.code) {
			t.Errorf("commit, %s: %v, want %s", name, err, tc.code)
		}
	}
	for _, action := range []string{protov1.ActionInstall, protov1.ActionRollback} {
		c.Action = action
		if _, err := VerifyAssignment(v, c, exp); !isRefusal(err, RefuseMalformed) {
			t.Errorf("commit assignment as %s: %v, want %s", action, err, RefuseMalformed)
		}
	}
}

func isRefusal(err error, code string) bool {
	r, ok := AsRefusal(err)
	return ok && r.Code == code
}

// TestCommittedSeedsStillVerify: the committed valid seed, signed before
// the commit flag existed, still parses and verifies, and its payload is
// exactly what the encoder writes today: adding an optional flag did not
// change the bytes that get signed.
func TestCommittedSeedsStillVerify(t *testing.T) {
	v, _ := assignment.NewVerifier(fuzzKey.Public())
	for _, name := range []string{"valid-install"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzUpdateResponse", name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a one-value corpus file", name)
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		u, err := ParseUpdateResponse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a, err := VerifyAssignment(v, u, fuzzExpectation)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, _ := json.Marshal(a); !bytes.Equal(again, u.Assignment.Payload) {
			t.Fatalf("%s: payload re-encodes differently:\n%s\n%s", name, u.Assignment.Payload, again)
		}
		if body != string(fuzzAnswer(t)) {
			t.Fatalf("%s: the committed seed is not what the fuzz target seeds with", name)
		}
	}
}

// fuzzAnswerTransport answers one endpoint (chosen by which) with fuzzed
// bytes and the others like a correct server.
type fuzzAnswerTransport struct {
	inner        *tamperServer
	which        byte
	status       int
	body         []byte
	retryAfter   string
	contentRange string
}

func (f *fuzzAnswerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var hit bool
	switch f.which % 4 {
	case 0:
		hit = r.URL.Path == "/v1/enroll"
	case 1:
		hit = r.URL.Path == "/v1/update"
	case 2:
		hit = strings.HasPrefix(r.URL.Path, "/v1/blobs/")
	case 3:
		hit = r.URL.Path == "/v1/status"
	}
	if !hit {
		// Like the OTA server, the others refuse a token they did not
		// issue: a fuzzed enrollment answer can give the device any.
		if h := r.Header.Get("Authorization"); h != "" && h != "Bearer "+strings.Repeat("t", 43) {
			resp := jsonResp(http.StatusUnauthorized, protov1.Error{Code: "unauthenticated", Message: "unknown or revoked token; enroll again"})
			resp.Header.Set("WWW-Authenticate", `Bearer realm="otaflow", error="invalid_token"`)
			return resp, nil
		}
		return f.inner.RoundTrip(r)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	contract.ExemptResponse(h, "a fuzzed answer")
	if f.retryAfter != "" {
		h.Set("Retry-After", f.retryAfter)
	}
	if f.contentRange != "" {
		h.Set("Content-Range", f.contentRange)
	}
	return &http.Response{StatusCode: f.status, Header: h, Body: io.NopCloser(bytes.NewReader(f.body)), ContentLength: -1}, nil
}

// FuzzServerAnswers: a device talking to a server that answers one of
// enrollment, update check, blob download or status report with arbitrary
// status, body and headers. The agent must not panic, must never install
// anything but the vendor-signed image, and Retry-After stays bounded.
func FuzzServerAnswers(f *testing.F) {
	rng := mrand.New(mrand.NewPCG(3, 3))
	w := newTamperWorld(f, rng)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Add(byte(0), 201, []byte(`{"deviceID":"dev-tamper","token":"`+strings.Repeat("t", 43)+`","assignmentKeyID":"x"}`), "", "")
	f.Add(byte(0), 200, []byte(`{"token":""}`), "", "")
	f.Add(byte(0), 429, []byte(`{"code":"rate_limited","message":"slow down"}`), "7", "")
	f.Add(byte(1), 204, []byte{}, "Wed, 21 Oct 2015 07:28:00 GMT", "")
	f.Add(byte(1), 200, []byte(`{"action":"cancel","rollout":"fleet/ro"}`), "", "")
	f.Add(byte(1), 200, fuzzCommitAnswer(f), "", "")
	f.Add(byte(1), 401, []byte(`{"code":"unauthenticated","message":"x"}`), "", "")
	f.Add(byte(2), 206, w.blob[100:], "", "bytes 100-99999/100000")
	f.Add(byte(2), 200, w.blob, "", "")
	f.Add(byte(2), 200, w.blob[:len(w.blob)-1], "", "")
	f.Add(byte(3), 409, []byte(`{"code":"canceled","message":"x"}`), "", "")
	f.Add(byte(3), 503, []byte(`not json`), "-1", "")
	f.Add(byte(3), 200, []byte(`{"state":"downloading","duplicate":true}`), "99999999999", "")
	want := hexSum(w.image)
	f.Fuzz(func(t *testing.T, which byte, status int, body []byte, retryAfter, contentRange string) {
		if status < 100 || status > 999 {
			status = 200
		}
		if d := parseRetryAfter(retryAfter); d < 0 || d > time.Hour {
			t.Fatalf("Retry-After %q parsed as %v", retryAfter, d)
		}
		_, _ = contentRangeStart(contentRange)
		srv := &tamperServer{t: t, w: w, o: w.legit(), now: now}
		tr := &fuzzAnswerTransport{inner: srv, which: which, status: status, body: body, retryAfter: retryAfter, contentRange: contentRange}
		checker := contract.For(t)
		if which%4 == 0 {
			checker.InvalidOnPurpose("the device sends back whatever token the fuzzed enrollment answer gave it")
		}
		inst := &countingInstaller{}
		a, err := New(Config{
			ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
			AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
			HTTPClient: &http.Client{Transport: checker.Wrap(tr)}, Store: NewMemStore(), Installer: inst,
			Version: "1.0.0", SecurityFloor: tmFloor, Clock: func() time.Time { return now },
			Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond},
			BootID:  func() string { return "b" }, Reboot: func(context.Context) error { return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.pub = a.PublicKey() // also when enrollment is the fuzzed answer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		wait, _ := a.Step(ctx)
		if wait < 0 {
			t.Fatalf("negative wait %v", wait)
		}
		for _, img := range inst.installs {
			if img.SHA256 != want {
				t.Fatalf("installed %s, not the vendor-signed image", img.SHA256)
			}
		}
		if st := a.State(); st.Token != "" && st.Token != strings.Repeat("t", 43) && (which%4 != 0 || status < 200 || status > 299) {
			t.Fatalf("token %q kept from a %d answer", st.Token, status)
		}
	})
}
