package otaserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/devicetest"
)

var ctx = context.Background()

func raw(t *testing.T, method, url, ctype, token string, body []byte) devicetest.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return devicetest.Response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}
}

func wantErr(t *testing.T, r devicetest.Response, status int, code string) {
	t.Helper()
	got, msg := r.Error()
	if r.Status != status || got != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.Status, got, msg, status, code)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
}

func TestEnroll(t *testing.T) {
	h := newHarness(t, 10)
	d, _ := devicetest.New(h.srv.URL, "dev-1", "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	body, _ := json.Marshal(d.EnrollRequest(bootstrap))
	url := h.srv.URL + "/v1/enroll"

	t.Run("errors", func(t *testing.T) {
		wantErr(t, raw(t, "POST", url, "application/json", "", []byte(`{"deviceID":`)), 400, "malformed_json")
		wantErr(t, raw(t, "POST", url, "application/json", "", []byte(`{"deviceID":"x","extra":1}`)), 400, "malformed_json")
		wantErr(t, raw(t, "POST", url, "application/json", "", append(body, []byte(`{}`)...)), 400, "malformed_json")
		wantErr(t, raw(t, "POST", url, "text/plain", "", body), 415, "unsupported_media_type")
		wantErr(t, raw(t, "POST", url, "application/json", "", bytes.Repeat([]byte(" "), otaserver.MaxBodyBytes+1)), 413, "too_large")
		wantErr(t, raw(t, "GET", url, "", "", nil), 405, "method_not_allowed")
		bad := d.EnrollRequest("wrong-token")
		b, _ := json.Marshal(bad)
		wantErr(t, raw(t, "POST", url, "application/json", "", b), 401, "bad_bootstrap_token")
		bad = d.EnrollRequest(bootstrap)
		bad.PublicKey = "AAAA"
		b, _ = json.Marshal(bad)
		wantErr(t, raw(t, "POST", url, "application/json", "", b), 400, "bad_request")
		bad = d.EnrollRequest(bootstrap)
		bad.DeviceID = "has space"
		b, _ = json.Marshal(bad)
		wantErr(t, raw(t, "POST", url, "application/json", "", b), 400, "bad_request")
		wantErr(t, raw(t, "GET", h.srv.URL+"/v2/nothing", "", "", nil), 404, "not_found")
	})

	r, err := d.Enroll(ctx, bootstrap)
	if err != nil || r.Status != http.StatusCreated || len(d.Token) != 43 {
		t.Fatalf("enroll: %v %d %s", err, r.Status, r.Body)
	}
	first := d.Token
	stored, err := h.store.Device(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored.TokenHash, []byte(first)) || len(stored.TokenHash) != 32 {
		t.Fatal("token stored in clear")
	}

	// Same key again rotates the token.
	r, _ = d.Enroll(ctx, bootstrap)
	if r.Status != http.StatusOK || d.Token == first {
		t.Fatalf("re-enroll: %d", r.Status)
	}
	old := *d
	old.Token = first
	resp, _, _ := old.Check(ctx, "")
	wantErr(t, resp, 401, "unauthenticated")
	if resp, _, _ := d.Check(ctx, ""); resp.Status != http.StatusOK && resp.Status != http.StatusNoContent {
		t.Fatalf("new token refused: %d", resp.Status)
	}

	// Another key for the same ID is refused.
	thief, _ := devicetest.New(h.srv.URL, "dev-1", "sensor-v1", "1.0.0", nil)
	r, _ = thief.Enroll(ctx, bootstrap)
	wantErr(t, r, 409, "key_mismatch")
}

func TestUpdateAuthAndQuery(t *testing.T) {
	h := newHarness(t, 7)
	d := h.device("dev-q", false)
	url := h.srv.URL + "/v1/update?version=1.0.0&securityFloor=2"
	wantErr(t, raw(t, "GET", url, "", "", nil), 401, "unauthenticated")
	wantErr(t, raw(t, "GET", url, "", "not-a-token", nil), 401, "unauthenticated")
	wantErr(t, raw(t, "GET", url, "", strings.Repeat("A", 43), nil), 401, "unauthenticated")
	for _, q := range []string{"", "?version=1.0.0", "?version=1.0.0&securityFloor=x", "?version=1.0.0&securityFloor=1&nonce=zz", "?version=1.0.0&securityFloor=1&other=1"} {
		wantErr(t, raw(t, "GET", h.srv.URL+"/v1/update"+q, "", d.Token, nil), 400, "bad_request")
	}
	// Burst of 7 per device: the 5 bad requests above and 2 good ones,
	// then 429 with Retry-After. Unauthenticated requests cost nothing.
	for range 2 {
		if r := raw(t, "GET", url, "", d.Token, nil); r.Status != 204 {
			t.Fatalf("check: %d", r.Status)
		}
	}
	r := raw(t, "GET", url, "", d.Token, nil)
	wantErr(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

func TestWaveGating(t *testing.T) {
	h := newHarness(t, 100)
	in := h.device("in", true)
	out := h.device("out", false)
	if r, u, _ := in.Check(ctx, ""); r.Status != 200 || u.Action != "install" || u.Rollout != "ns/ro" {
		t.Fatalf("in-wave device: %d %s", r.Status, r.Body)
	}
	if r, _, _ := out.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("out-of-wave device: %d", r.Status)
	}
	// Open the next wave: now it is offered.
	h.rollout.Status.CurrentWave = 1
	h.rebuild()
	if r, u, _ := out.Check(ctx, ""); r.Status != 200 || u.Action != "install" {
		t.Fatalf("after wave 1 opened: %d", r.Status)
	}
	recIn, _ := h.store.Record(ctx, string(h.rollout.UID), in.ID)
	recOut, _ := h.store.Record(ctx, string(h.rollout.UID), out.ID)
	if recIn.Wave != 0 || recOut.Wave != 1 {
		t.Fatalf("waves %d %d", recIn.Wave, recOut.Wave)
	}
	// A device not matching the selector never gets anything.
	other, _ := devicetest.New(h.srv.URL, "us-1", "sensor-v1", "1.0.0", map[string]string{"region": "us"})
	_, _ = other.Enroll(ctx, bootstrap)
	if r, _, _ := other.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("non-matching device: %d", r.Status)
	}
	// Spec pause stops new offers.
	h.rollout.Spec.Paused = true
	h.rebuild()
	late := h.device("late", true)
	if r, _, _ := late.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("paused rollout offered: %d", r.Status)
	}
}

func TestSecurityFloorAndPending(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("floor", true)
	d.SecurityFloor = 6 // release has securityVersion 5
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("below floor offered: %d", r.Status)
	}
	h.rollout.Status.Phase = otav1.RolloutPending
	h.rebuild()
	d.SecurityFloor = 2
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("pending rollout offered: %d", r.Status)
	}
}

func TestMaxOffersPerMinute(t *testing.T) {
	h := newHarness(t, 100)
	one := int32(1)
	h.rollout.Spec.MaxOffersPerMinute = &one
	h.rebuild()
	a, b := h.device("ra", true), h.device("rb", true)
	if r, _, _ := a.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("first offer: %d", r.Status)
	}
	r, _, _ := b.Check(ctx, "")
	if r.Status != 204 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second offer in the same minute: %d", r.Status)
	}
	// Resending an existing offer is not limited.
	if r, _, _ := a.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("resend: %d", r.Status)
	}
	h.advance(61 * time.Second)
	if r, _, _ := b.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("next minute: %d", r.Status)
	}
}

func TestFullUpdate(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("full", true)
	nonce := "00112233445566778899aabbccddeeff"
	r, u, err := d.Check(ctx, nonce)
	if err != nil || r.Status != 200 {
		t.Fatalf("check: %v %d %s", err, r.Status, r.Body)
	}
	a, err := d.Verify(h.verifier, u.Assignment)
	if err != nil {
		t.Fatal(err)
	}
	if a.Nonce != nonce || a.Version != "2.0.0" || a.SecurityVersion != 5 || a.VendorSignature != "c2lnbmF0dXJl" || a.Rollback {
		t.Fatalf("assignment %+v", a)
	}
	blob, err := d.Download(ctx, a, a.EncryptedSize/2)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := d.Decrypt(a, blob)
	if err != nil || !bytes.Equal(plain, h.image) {
		t.Fatalf("decrypt: %v", err)
	}
	// The wrapped key is cached: a resend carries the same one.
	_, u2, _ := d.Check(ctx, "")
	a2, _ := d.Verify(h.verifier, u2.Assignment)
	if !bytes.Equal(a2.WrappedKey, a.WrappedKey) || a2.Nonce == nonce {
		t.Fatal("resend: wrapped key not cached or nonce reused")
	}
	for i, st := range []protov1.State{"downloading", "downloaded", "installing", "installed", "succeeded"} {
		r, err := d.Report(ctx, protov1.StatusReport{ReportID: "r" + string(rune('0'+i)), Rollout: u.Rollout, State: st})
		if err != nil || r.Status != 200 {
			t.Fatalf("report %s: %v %d %s", st, err, r.Status, r.Body)
		}
	}
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateConfirmed {
		t.Fatalf("after success report: %s", rec.State)
	}
	// Installed devices get nothing more; success needs the new version.
	d.Version = "2.0.0"
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("check on new version: %d", r.Status)
	}
	rec, _ = h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateSucceeded {
		t.Fatalf("after check-in on new version: %s", rec.State)
	}
	dev, _ := h.store.Device(ctx, d.ID)
	if dev.Version != "2.0.0" {
		t.Fatalf("running version %q", dev.Version)
	}
}

func TestRevertedByDevice(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("revert", true)
	_, u, _ := d.Check(ctx, "")
	if r, _ := d.Report(ctx, protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "installed"}); r.Status != 200 {
		t.Fatalf("report: %d", r.Status)
	}
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 { // still 1.0.0
		t.Fatalf("check: %d", r.Status)
	}
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateFailed || rec.Reason != rollout.ReasonReverted {
		t.Fatalf("record %+v", rec)
	}
	f, _ := h.store.RecentFailures(ctx, string(h.rollout.UID), 20)
	if len(f) != 1 || f[0].Reason != rollout.ReasonReverted {
		t.Fatalf("failures %+v", f)
	}
}

// TestDelayedCheckInIsNotARevert: a check-in on the old version from the
// boot the offer was made in (sent before the install, delivered late) does
// not fail the device; one from a later boot does.
func TestDelayedCheckInIsNotARevert(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("late", true)
	d.Boot = "boot-1"
	_, u, _ := d.Check(ctx, "")
	if u == nil {
		t.Fatal("no offer")
	}
	if r, _ := d.Report(ctx, protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "installed"}); r.Status != 200 {
		t.Fatalf("report: %d", r.Status)
	}
	d.Check(ctx, "") // the delayed check-in: old version, same boot
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateInstalled || rec.OfferBoot != "boot-1" {
		t.Fatalf("after a check-in from the offer's boot: %+v", rec)
	}
	d.Boot = "boot-2" // rebooted, still on the old version: reverted
	d.Check(ctx, "")
	rec, _ = h.store.Record(ctx, string(h.rollout.UID), d.ID)
	if rec.State != rollout.StateFailed || rec.Reason != rollout.ReasonReverted {
		t.Fatalf("after a check-in from a later boot: %+v", rec)
	}
}

func TestBlobAccess(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("blob", true)
	other := h.device("other", false)
	_, u, _ := d.Check(ctx, "")
	a, _ := d.Verify(h.verifier, u.Assignment)
	path := "/v1/blobs/" + a.EncryptedSHA256

	wantErr(t, raw(t, "GET", h.srv.URL+path, "", "", nil), 401, "unauthenticated")
	r, _ := other.Get(ctx, path, nil)
	wantErr(t, r, 403, "not_assigned")
	r, _ = d.Get(ctx, "/v1/blobs/NOTHEX", nil)
	wantErr(t, r, 400, "bad_request")
	r, _ = d.Get(ctx, "/v1/blobs/"+h.previous.Status.Artifact.EncryptedSHA256, nil)
	wantErr(t, r, 403, "not_assigned")

	full, _ := d.Get(ctx, path, nil)
	if full.Status != 200 || int64(len(full.Body)) != a.EncryptedSize || full.Header.Get("ETag") != `"`+a.EncryptedSHA256+`"` || full.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("full download: %d %d %v", full.Status, len(full.Body), full.Header)
	}
	r, _ = d.Get(ctx, path, map[string]string{"Range": "bytes=10-19"})
	if r.Status != 206 || !bytes.Equal(r.Body, full.Body[10:20]) {
		t.Fatalf("range: %d", r.Status)
	}
	// A stale If-Range validator gets the whole blob, not a wrong slice.
	r, _ = d.Get(ctx, path, map[string]string{"Range": "bytes=10-19", "If-Range": `"stale"`})
	if r.Status != 200 || len(r.Body) != len(full.Body) {
		t.Fatalf("stale If-Range: %d", r.Status)
	}
	r, _ = d.Get(ctx, path, map[string]string{"If-None-Match": `"` + a.EncryptedSHA256 + `"`})
	if r.Status != 304 {
		t.Fatalf("If-None-Match: %d", r.Status)
	}
	r, _ = d.Get(ctx, path, map[string]string{"Range": "bytes=999999999-"})
	if r.Status != 416 {
		t.Fatalf("unsatisfiable range: %d", r.Status)
	}
}

func TestStatusErrors(t *testing.T) {
	h := newHarness(t, 100)
	d := h.device("st", true)
	out := h.device("st-out", false)
	_, u, _ := d.Check(ctx, "")
	url := h.srv.URL + "/v1/status"
	rep := func(r protov1.StatusReport) devicetest.Response {
		resp, err := d.Report(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	wantErr(t, raw(t, "POST", url, "application/json", "", []byte(`{}`)), 401, "unauthenticated")
	wantErr(t, raw(t, "POST", url, "application/json", d.Token, []byte(`{"reportID":`)), 400, "malformed_json")
	wantErr(t, raw(t, "POST", url, "application/json", d.Token, bytes.Repeat([]byte("x"), otaserver.MaxBodyBytes+10)), 413, "too_large")
	wantErr(t, raw(t, "POST", url, "application/xml", d.Token, []byte(`{}`)), 415, "unsupported_media_type")
	wantErr(t, rep(protov1.StatusReport{ReportID: "1", Rollout: "ns/nope", State: "downloading"}), 404, "unknown_rollout")
	wantErr(t, rep(protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "downloading", DeviceID: out.ID}), 403, "forbidden")
	wantErr(t, rep(protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "exploded"}), 400, "bad_request")
	wantErr(t, rep(protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "failed"}), 400, "bad_request")
	// The other device holds no offer in the rollout.
	r, _ := out.Report(ctx, protov1.StatusReport{ReportID: "1", Rollout: u.Rollout, State: "downloading"})
	wantErr(t, r, 404, "not_assigned")

	ok := rep(protov1.StatusReport{ReportID: "rep-1", Rollout: u.Rollout, State: "installed"})
	if ok.Status != 200 || !strings.Contains(string(ok.Body), `"installed"`) {
		t.Fatalf("report: %d %s", ok.Status, ok.Body)
	}
	// Replay: acknowledged, nothing applied again.
	again := rep(protov1.StatusReport{ReportID: "rep-1", Rollout: u.Rollout, State: "failed", Reason: "x"})
	if again.Status != 200 || !strings.Contains(string(again.Body), `"duplicate":true`) {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	wantErr(t, rep(protov1.StatusReport{ReportID: "rep-2", Rollout: u.Rollout, State: "downloading"}), 409, "invalid_transition")
	if r := rep(protov1.StatusReport{ReportID: "rep-3", Rollout: u.Rollout, State: "failed", Reason: "boot loop"}); r.Status != 200 {
		t.Fatalf("failed report: %d", r.Status)
	}
	wantErr(t, rep(protov1.StatusReport{ReportID: "rep-4", Rollout: u.Rollout, State: "installed"}), 409, "final")
}

func TestAbortCancelsAndRollsBack(t *testing.T) {
	h := newHarness(t, 100)
	early := h.device("early", true)
	done := h.device("done", true)
	_, u, _ := early.Check(ctx, "")
	_, _, _ = done.Check(ctx, "")
	for i, st := range []protov1.State{"installed", "succeeded"} {
		_, _ = done.Report(ctx, protov1.StatusReport{ReportID: string(rune('a' + i)), Rollout: u.Rollout, State: st})
	}
	done.Version = "2.0.0"
	_, _, _ = done.Check(ctx, "")

	h.rollout.Spec.Abort = true
	h.rollout.Status.Phase = otav1.RolloutAborted
	h.rebuild()
	r, cu, _ := early.Check(ctx, "")
	if r.Status != 200 || cu.Action != "cancel" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	rr, _ := early.Report(ctx, protov1.StatusReport{ReportID: "x", Rollout: u.Rollout, State: "downloaded"})
	wantErr(t, rr, 409, "canceled")
	if r, _, _ := done.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("no rollback requested yet: %d", r.Status)
	}

	h.rollout.Status.RollbackRequested = true
	h.rebuild()
	r, ru, _ := done.Check(ctx, "")
	if r.Status != 200 || ru.Action != "rollback" {
		t.Fatalf("rollback: %d %s", r.Status, r.Body)
	}
	a, err := done.Verify(h.verifier, ru.Assignment)
	if err != nil || !a.Rollback || a.Version != "1.0.0" {
		t.Fatalf("rollback assignment %+v %v", a, err)
	}
	blob, _ := done.Get(ctx, "/v1/blobs/"+a.EncryptedSHA256, nil)
	if plain, err := done.Decrypt(a, blob.Body); err != nil || string(plain) != "old firmware image" {
		t.Fatalf("rollback image: %v", err)
	}
	done.Version = "1.0.0"
	if r, _, _ := done.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("after rollback: %d", r.Status)
	}
	rec, _ := h.store.Record(ctx, string(h.rollout.UID), done.ID)
	if rec.State != rollout.StateRolledBack {
		t.Fatalf("state %s", rec.State)
	}

	// A device whose floor is above the previous release is not rolled back.
	h2 := newHarness(t, 100)
	hi := h2.device("hi", true)
	_, u2, _ := hi.Check(ctx, "")
	for i, st := range []protov1.State{"installed", "succeeded"} {
		_, _ = hi.Report(ctx, protov1.StatusReport{ReportID: string(rune('a' + i)), Rollout: u2.Rollout, State: st})
	}
	hi.Version, hi.SecurityFloor = "2.0.0", 5
	_, _, _ = hi.Check(ctx, "")
	h2.rollout.Spec.Abort, h2.rollout.Status.Phase, h2.rollout.Status.RollbackRequested = true, otav1.RolloutAborted, true
	h2.rebuild()
	if r, _, _ := hi.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("rollback below floor: %d", r.Status)
	}
	rec, _ = h2.store.Record(ctx, string(h2.rollout.UID), hi.ID)
	if rec.Reason != rollout.ReasonRollbackFloor {
		t.Fatalf("reason %q", rec.Reason)
	}
}

// TestOlderRolloutKeepsDevice: two rollouts of the same version may both
// offer; the older acts and the newer counts a conflict.
func TestOlderRolloutKeepsDevice(t *testing.T) {
	h := newHarness(t, 100)
	newer := h.rollout
	newer.Name, newer.UID = "ro-new", "rollout-uid-2"
	newer.CreationTimestamp.Time = h.rollout.CreationTimestamp.Add(time.Hour)
	newer.Spec.Waves = newer.Spec.Waves[1:] // 100% at once
	newer.Status.CurrentWave = 1            // every rank open under the harness's fixed cutoffs
	h.cat.set(catalogWith(h, newer))
	d := h.device("both", true)
	r, u, _ := d.Check(ctx, "")
	if r.Status != 200 || u.Rollout != "ns/ro" {
		t.Fatalf("older rollout did not keep the device: %d %s", r.Status, r.Body)
	}
	c, _ := h.store.Counts(ctx, "rollout-uid-2", time.Time{})
	if c.Conflicts != 1 {
		t.Fatalf("conflicts %d", c.Conflicts)
	}
}
