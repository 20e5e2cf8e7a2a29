package otaserver_test

import (
	"encoding/hex"
	"errors"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/protocol/v1/assignment"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// Authorization: every request is authenticated and scoped to its own
// device; these tests try to step outside that scope.

// TestUnauthenticatedEveryEndpoint: no endpoint but enrollment answers
// without a valid bearer token, whatever the header looks like, and none
// leaks anything but a JSON 401.
func TestUnauthenticatedEveryEndpoint(t *testing.T) {
	h := newHarness(t, 1000)
	d := h.device("victim", true)
	_, u, _ := d.Check(ctx, "")
	a, err := d.Verify(h.verifier, u.Assignment)
	if err != nil {
		t.Fatal(err)
	}
	endpoints := []struct{ method, path, ctype, body string }{
		{"GET", "/v1/update?version=1.0.0&securityFloor=2", "", ""},
		{"GET", "/v1/blobs/" + a.EncryptedSHA256, "", ""},
		{"HEAD", "/v1/blobs/" + a.EncryptedSHA256, "", ""},
		{"GET", "/v1/blobs/" + strings.Repeat("0", 64), "", ""},
		{"POST", "/v1/status", "application/json", `{"reportID":"r1","rollout":"ns/ro","state":"failed","reason":"x"}`},
	}
	headers := map[string]string{
		"none":                 "",
		"basic":                "Basic dXNlcjpwYXNz",
		"empty bearer":         "Bearer ",
		"short token":          "Bearer abc",
		"unknown token":        "Bearer " + strings.Repeat("A", 43),
		"padded token":         "Bearer " + d.Token + "=",
		"token with trailing":  "Bearer " + d.Token + " x",
		"std base64 alphabet":  "Bearer " + strings.NewReplacer("-", "+", "_", "/").Replace(d.Token) + "+",
		"token without scheme": d.Token,
		"device ID as token":   "Bearer " + d.ID,
		"token hash as token":  "Bearer " + hex.EncodeToString(make([]byte, 32)),
	}
	for _, ep := range endpoints {
		for name, hdr := range headers {
			req, _ := http.NewRequest(ep.method, h.srv.URL+ep.path, strings.NewReader(ep.body))
			if ep.ctype != "" {
				req.Header.Set("Content-Type", ep.ctype)
			}
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Code string }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != 401 || (ep.method != "HEAD" && e.Code != "unauthenticated") || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: %d %q", ep.method, ep.path, name, resp.StatusCode, e.Code)
			}
		}
	}
	// Nothing was recorded for the victim by any of it.
	rec, err := h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if err != nil || rec.State != rollout.StateOffered {
		t.Fatalf("victim record %+v %v", rec, err)
	}
	// Enrollment needs a valid bootstrap token instead, checked before
	// anything else of the request.
	body, _ := json.Marshal(d.EnrollRequest(""))
	wantErr(t, raw(t, "POST", h.srv.URL+"/v1/enroll", "application/json", "", body), 401, "bad_bootstrap_token")
	body, _ = json.Marshal(d.EnrollRequest(bootstrap + "x"))
	wantErr(t, raw(t, "POST", h.srv.URL+"/v1/enroll", "application/json", "", body), 401, "bad_bootstrap_token")
	// A device token is no bootstrap token.
	body, _ = json.Marshal(d.EnrollRequest(d.Token))
	wantErr(t, raw(t, "POST", h.srv.URL+"/v1/enroll", "application/json", "", body), 401, "bad_bootstrap_token")
}

// TestCrossDeviceAccess: a device holding a valid token cannot read
// another device's blob, report for it, or have its report IDs collide
// with another device's.
func TestCrossDeviceAccess(t *testing.T) {
	h := newHarness(t, 1000)
	victim := h.device("victim", true)
	thief := h.device("thief", false) // not in the open wave: holds nothing
	_, u, _ := victim.Check(ctx, "")
	a, _ := victim.Verify(h.verifier, u.Assignment)
	blob := "/v1/blobs/" + a.EncryptedSHA256

	r, _ := thief.Get(ctx, blob, nil)
	wantErr(t, r, 403, "not_assigned")
	r, _ = thief.Get(ctx, blob, map[string]string{"Range": "bytes=0-57"})
	wantErr(t, r, 403, "not_assigned")
	// Reports naming the victim, or on the victim's rollout.
	r, _ = thief.Report(ctx, protov1.StatusReport{ReportID: "x1", Rollout: u.Rollout, DeviceID: victim.ID, State: "failed", Reason: "sabotage"})
	wantErr(t, r, 403, "forbidden")
	r, _ = thief.Report(ctx, protov1.StatusReport{ReportID: "x2", Rollout: u.Rollout, State: "failed", Reason: "sabotage"})
	wantErr(t, r, 404, "not_assigned")
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), victim.ID)
	if rec.State != rollout.StateOffered {
		t.Fatalf("victim's record changed by another device: %+v", rec)
	}
	if f, _ := h.store.RecentFailures(ctx, string(h.rollout.UID), 10); len(f) != 0 {
		t.Fatalf("failures recorded by a foreign report: %+v", f)
	}

	// Report IDs are per device: the thief reusing the victim's report ID
	// is not taken for the victim's (nor the other way round).
	if r, _ := victim.Report(ctx, protov1.StatusReport{ReportID: "same-id", Rollout: u.Rollout, State: "downloading"}); r.Status != 200 {
		t.Fatalf("victim report: %d %s", r.Status, r.Body)
	}
	h.rollout.Status.CurrentWave = 1
	h.rebuild()
	if r, tu, _ := thief.Check(ctx, ""); r.Status != 200 || tu.Action != "install" {
		t.Fatalf("thief offer: %d", r.Status)
	} else if ta, err := thief.Verify(h.verifier, tu.Assignment); err != nil || ta.DeviceID != thief.ID {
		t.Fatalf("thief's assignment: %+v %v", ta, err)
	} else if unwraps(victim, ta) || !unwraps(thief, ta) {
		t.Fatal("the victim's key opens the thief's wrapped key")
	}
	r, _ = thief.Report(ctx, protov1.StatusReport{ReportID: "same-id", Rollout: u.Rollout, State: "installing"})
	if r.Status != 200 || strings.Contains(string(r.Body), `"duplicate":true`) {
		t.Fatalf("thief's report taken as a duplicate of the victim's: %d %s", r.Status, r.Body)
	}
	rec, _ = h.store.Record(ctx, string(h.rollout.UID), victim.ID)
	if rec.State != rollout.StateDownloading {
		t.Fatalf("victim state %s", rec.State)
	}
	// The victim's blob is now also the thief's: the same bytes, but the
	// thief's wrapped key only opens with the thief's private key.
	if r, _ := thief.Get(ctx, blob, nil); r.Status != 200 {
		t.Fatalf("assigned blob: %d", r.Status)
	}
}

// TestTokenReplayAfterReEnrollment: re-enrolling rotates the token; the old
// one stops working on every endpoint at once.
func TestTokenReplayAfterReEnrollment(t *testing.T) {
	h := newHarness(t, 1000)
	d := h.device("rot", true)
	_, u, _ := d.Check(ctx, "")
	a, _ := d.Verify(h.verifier, u.Assignment)
	old := d.Token
	if r, _ := d.Enroll(ctx, bootstrap); r.Status != 200 || d.Token == old {
		t.Fatalf("re-enroll: %d", r.Status)
	}
	stale := *d
	stale.Token = old
	r, _, _ := stale.Check(ctx, "")
	wantErr(t, r, 401, "unauthenticated")
	r, _ = stale.Get(ctx, "/v1/blobs/"+a.EncryptedSHA256, nil)
	wantErr(t, r, 401, "unauthenticated")
	r, _ = stale.Report(ctx, protov1.StatusReport{ReportID: "late", Rollout: u.Rollout, State: "downloading"})
	wantErr(t, r, 401, "unauthenticated")
	// The new token does all of it.
	if r, _ := d.Get(ctx, "/v1/blobs/"+a.EncryptedSHA256, map[string]string{"Range": "bytes=0-9"}); r.Status != 206 {
		t.Fatalf("new token blob: %d", r.Status)
	}
	if r, _ := d.Report(ctx, protov1.StatusReport{ReportID: "late", Rollout: u.Rollout, State: "downloading"}); r.Status != 200 {
		t.Fatalf("new token report: %d", r.Status)
	}
	// And rotating again kills the second token too.
	second := d.Token
	_, _ = d.Enroll(ctx, bootstrap)
	stale.Token = second
	r, _, _ = stale.Check(ctx, "")
	wantErr(t, r, 401, "unauthenticated")
}

// TestEnrollmentIDHijack: another key cannot take over an enrolled ID,
// and a failed attempt changes nothing about the victim. An attacker who
// replays the victim's public key (not a secret) rotates the victim's
// token, but receives the new one sealed to the victim's key: it holds no
// token at all (takeover_test.go goes further).
func TestEnrollmentIDHijack(t *testing.T) {
	h := newHarness(t, 1000)
	victim := h.device("victim-id", true)
	before, _ := h.store.Device(ctx, victim.ID)

	thief, _ := devicetest.New(h.srv.URL, victim.ID, "gateway-v9", "9.9.9", map[string]string{"region": "us"})
	r, _ := thief.Enroll(ctx, bootstrap)
	wantErr(t, r, 409, "key_mismatch")
	thief.KEM = keywrap.P256
	k, _ := keywrap.GenerateKey(keywrap.P256)
	thief.Key = k
	r, _ = thief.Enroll(ctx, bootstrap)
	wantErr(t, r, 409, "key_mismatch")
	r, _ = thief.Enroll(ctx, "not-the-bootstrap-token")
	wantErr(t, r, 401, "bad_bootstrap_token")
	after, _ := h.store.Device(ctx, victim.ID)
	if string(after.TokenHash) != string(before.TokenHash) || after.Type != before.Type || after.Labels["region"] != "eu" || after.Version != before.Version || string(after.PublicKey) != string(before.PublicKey) {
		t.Fatalf("victim changed by a refused enrollment: %+v", after)
	}
	if r, _, _ := victim.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("victim locked out: %d", r.Status)
	}

	// Public-key replay: the thief presents the victim's public key.
	replay, _ := devicetest.New(h.srv.URL, victim.ID, "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	body := replay.EnrollRequest(bootstrap)
	body.PublicKey = victim.EnrollRequest(bootstrap).PublicKey
	b, _ := json.Marshal(body)
	rr := raw(t, "POST", h.srv.URL+"/v1/enroll", "application/json", "", b)
	if rr.Status != 200 {
		t.Fatalf("replayed key enrollment: %d %s", rr.Status, rr.Body)
	}
	var er protov1.EnrollResponse
	_ = json.Unmarshal(rr.Body, &er)
	if tok, err := tokenseal.OpenResponse(replay.KEM, replay.Key, victim.ID, er); !errors.Is(err, tokenseal.ErrOpen) || er.LegacyToken != "" {
		t.Fatalf("the thief opened the replayed key's answer: %q, %v", tok, err)
	}
	r, _, _ = replay.Check(contract.Exempt(ctx, "the thief holds no token"), "")
	wantErr(t, r, 401, "unauthenticated")
	// The victim notices (401), enrolls again, and works.
	r, _, _ = victim.Check(ctx, "")
	wantErr(t, r, 401, "unauthenticated")
	if r, _ := victim.Enroll(ctx, bootstrap); r.Status != 200 {
		t.Fatalf("victim re-enroll: %d", r.Status)
	}
	_, vu, _ := victim.Check(ctx, "")
	va, err := victim.Verify(h.verifier, vu.Assignment)
	if err != nil || !unwraps(victim, va) || unwraps(replay, va) {
		t.Fatalf("victim after re-enrolling: %v", err)
	}
}

// TestRevokedBootstrapToken: removing a value from the enrollment Secret
// stops enrollments with it at once; enrolled devices keep their bearer
// tokens, and a refused re-enrollment does not rotate them.
func TestRevokedBootstrapToken(t *testing.T) {
	h := newHarness(t, 1000)
	d := h.device("before-revoke", true)
	h.tokens.Replace(map[string][]byte{"new": []byte("factory-2027-0123456789abcdef0123456789")})

	late, _ := devicetest.New(h.srv.URL, "after-revoke", "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	r, _ := late.Enroll(ctx, bootstrap)
	wantErr(t, r, 401, "bad_bootstrap_token")
	if _, err := h.store.Device(ctx, late.ID); err == nil {
		t.Fatal("device stored by a refused enrollment")
	}
	tok := d.Token
	r, _ = d.Enroll(ctx, bootstrap)
	wantErr(t, r, 401, "bad_bootstrap_token")
	if d.Token != tok {
		t.Fatal("token replaced by a refused enrollment")
	}
	if r, _, _ := d.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("enrolled device refused after revocation: %d", r.Status)
	}
	if r, _ := late.Enroll(ctx, "factory-2027-0123456789abcdef0123456789"); r.Status != 201 {
		t.Fatalf("new token: %d", r.Status)
	}
	// An empty Secret revokes everything, including the empty string.
	h.tokens.Replace(map[string][]byte{"blank": {}})
	body, _ := json.Marshal(late.EnrollRequest("factory-2027-0123456789abcdef0123456789"))
	wantErr(t, raw(t, "POST", h.srv.URL+"/v1/enroll", "application/json", "", body), 401, "bad_bootstrap_token")
	if h.tokens.Valid("") {
		t.Fatal("empty bootstrap token valid")
	}
}

// TestNeverOffersBelowFloor: the server never signs an assignment below
// the device's current floor, for a first offer, a resend after the floor
// rose, or a rollback.
func TestNeverOffersBelowFloor(t *testing.T) {
	h := newHarness(t, 1000)
	// Equal to the floor is fine (release securityVersion is 5).
	eq := h.device("eq", true)
	eq.SecurityFloor = 5
	if r, _, _ := eq.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("floor == securityVersion: %d", r.Status)
	}
	above := h.device("above", true)
	above.SecurityFloor = 6
	if r, _, _ := above.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("floor above the release: %d %s", r.Status, r.Body)
	}
	// The rollout lets go of it, with the reason, instead of holding it.
	if rec, err := h.store.Record(ctx, string(h.rollout.UID), above.ID); err != nil || rec.State != rollout.StateSkipped || rec.Reason != rollout.ReasonSkipBelowFloor {
		t.Fatalf("device above the floor: record %+v %v", rec, err)
	}
	// Offered at floor 2, then the device's floor rises to 6 (it took an
	// update from elsewhere): no resend of the release below it; the
	// update fails with a reason the operator sees.
	d := h.device("rises", true)
	if r, _, _ := d.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("offer: %d", r.Status)
	}
	d.SecurityFloor = 6
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("resend below the raised floor: %d %s", r.Status, r.Body)
	}
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateFailed || rec.Reason != rollout.ReasonFloorRose {
		t.Fatalf("record %+v", rec)
	}
	f, _ := h.store.RecentFailures(ctx, string(h.rollout.UID), 10)
	if len(f) != 1 || f[0].DeviceID != d.ID || f[0].Reason != rollout.ReasonFloorRose {
		t.Fatalf("failures %+v", f)
	}
	// Every assignment the server did sign carries the TTL it was given.
	_, u, _ := eq.Check(ctx, "")
	a, err := eq.Verify(h.verifier, u.Assignment)
	if err != nil || a.ExpiresAt.Sub(a.IssuedAt).Hours() != 1 || a.SecurityVersion < eq.SecurityFloor {
		t.Fatalf("assignment %+v %v", a, err)
	}
}

// unwraps reports whether d's private key opens a's wrapped content key.
func unwraps(d *devicetest.Device, a assignment.Assignment) bool {
	digest, _ := hex.DecodeString(a.EncryptedSHA256)
	_, err := keywrap.Unwrap(keywrap.KEM(a.KEM), d.Key, a.WrappedKey, [32]byte(digest), d.ID)
	return err == nil
}
