package otaserver_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/rollout"
	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// Handler-level fuzz targets: the real handler, store and catalog, driven
// in process (no sockets) with arbitrary request bodies, queries, paths
// and headers. Whatever the input, the server must answer with one of the
// documented statuses and a JSON error body, never 500, never act for
// another device, and never serve what the device may not have.

// fuzzServe sends one request to the handler.
func fuzzServe(h *harness, method, target string, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
	u, err := url.Parse(target)
	if err != nil {
		h.t.Fatalf("target %q: %v", target, err)
	}
	return fuzzServeURL(h, method, u, hdr, body)
}

// fuzzServeURL sends a request whose URL (a raw query, say) need not
// survive parsing.
func fuzzServeURL(h *harness, method string, u *url.URL, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/", bytes.NewReader(body))
	req.URL, req.RequestURI = u, u.RequestURI()
	for k, v := range hdr {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return rec
}

// checkErrorBody fails unless a non-2xx answer is a JSON {code, message}.
func checkErrorBody(t *testing.T, rec *httptest.ResponseRecorder, method string) {
	t.Helper()
	if rec.Code < 400 || method == http.MethodHead {
		return
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("%d error body %q is not {code, message}", rec.Code, rec.Body.Bytes())
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d error Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	if !slices.Contains(allowed, rec.Code) {
		t.Fatalf("status %d (%s), want one of %v", rec.Code, rec.Body.Bytes(), allowed)
	}
}

// FuzzEnrollHandler: enrollment end to end through the handler and the
// store.
func FuzzEnrollHandler(f *testing.F) {
	h := newHarness(f, 1e6)
	d, _ := devicetest.New("", "fz-1", "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	good, _ := json.Marshal(d.EnrollRequest(bootstrap))
	f.Add(good, "application/json")
	f.Add(good, "application/json; charset=utf-8")
	f.Add(good, "text/plain")
	f.Add([]byte(`{"deviceID":"fz-2","bootstrapToken":"`+bootstrap+`","kem":"p256","publicKey":"BAAA","deviceType":"t","version":"1"}`), "application/json")
	f.Add([]byte(`{"deviceID":"fz-1","bootstrapToken":"`+bootstrap+`","kem":"x25519","publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","deviceType":"sensor-v1","version":"1.0.0","securityFloor":1}`), "application/json")
	f.Add([]byte(`{"deviceID":"fz-3","deviceID":"fz-4"}`), "application/json")
	f.Add(bytes.Repeat([]byte("["), 20000), "application/json")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		rec := fuzzServe(h, http.MethodPost, "/v1/enroll", map[string]string{"Content-Type": ctype}, body)
		wantStatus(t, rec, 200, 201, 400, 401, 409, 413, 415, 429)
		checkErrorBody(t, rec, http.MethodPost)
		if rec.Code >= 300 {
			return
		}
		var er protov1.EnrollResponse
		var req protov1.EnrollRequest
		_ = json.Unmarshal(body, &req)
		if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.LegacyToken != "" || er.AssignmentKeyID != h.signer.KeyID() || er.DeviceID != req.DeviceID {
			t.Fatalf("enroll answer %s", rec.Body.Bytes())
		}
		if sealed, _ := base64.StdEncoding.DecodeString(er.SealedToken); len(sealed) != tokenseal.SealedSize(keywrap.KEM(req.KEM), 43) {
			t.Fatalf("sealed token of %d bytes in %s", len(sealed), rec.Body.Bytes())
		}
		// Only the seed device's key opens its answers; the token it
		// opens to is the device's.
		if req.PublicKey != d.EnrollRequest(bootstrap).PublicKey {
			return
		}
		tok, err := tokenseal.OpenResponse(d.KEM, d.Key, req.DeviceID, er)
		if err != nil {
			t.Fatalf("the device key does not open %s: %v", rec.Body.Bytes(), err)
		}
		dev, err := h.store.DeviceByToken(ctx, func() []byte { s := sha256.Sum256([]byte(tok)); return s[:] }())
		if err != nil || dev.ID != er.DeviceID || dev.ID != req.DeviceID {
			t.Fatalf("token of %s resolves to %+v, %v", er.DeviceID, dev, err)
		}
	})
}

// fuzzDevice returns an enrolled device holding an offer.
func fuzzDevice(h *harness, id string) (*devicetest.Device, *protov1.UpdateResponse) {
	d := h.device(id, true)
	_, u, err := d.Check(ctx, "")
	if err != nil || u == nil {
		h.t.Fatalf("offer for %s: %v", id, err)
	}
	return d, u
}

// FuzzStatusHandler: reports of every shape from an offered device. The
// record only ever holds a valid state, and another device's record never
// changes.
func FuzzStatusHandler(f *testing.F) {
	h := newHarness(f, 1e6)
	d, u := fuzzDevice(h, "fz-report")
	bystander, _ := fuzzDevice(h, "fz-bystander")
	before, _ := h.store.Record(ctx, string(h.rollout.UID), bystander.ID)
	for _, s := range []string{
		`{"reportID":"r-1","rollout":"` + u.Rollout + `","state":"downloading","progress":50}`,
		`{"reportID":"r-2","rollout":"` + u.Rollout + `","state":"failed","reason":"boom"}`,
		`{"reportID":"r-3","rollout":"` + u.Rollout + `","state":"installed","deviceID":"` + bystander.ID + `"}`,
		`{"reportID":"r-4","rollout":"` + u.Rollout + `","state":"succeeded","deviceID":"` + d.ID + `"}`,
		`{"reportID":"r-5","rollout":"ns/other","state":"rolledback"}`,
		`{"reportID":"r-1","rollout":"` + u.Rollout + `","state":"installing","progress":-1}`,
		`{"reportID":"` + strings.Repeat("x", 65) + `","rollout":"a/b","state":"failed","reason":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzServe(h, http.MethodPost, "/v1/status", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + d.Token}, body)
		wantStatus(t, rec, 200, 400, 403, 404, 409, 413, 415)
		checkErrorBody(t, rec, http.MethodPost)
		if rec.Code == 200 {
			var sr protov1.StatusResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &sr); err != nil || (!sr.Duplicate && !rollout.State(sr.State).Valid()) {
				t.Fatalf("status answer %s", rec.Body.Bytes())
			}
		}
		if r, err := h.store.Record(ctx, string(h.rollout.UID), d.ID); err != nil || !r.State.Valid() {
			t.Fatalf("record %+v %v", r, err)
		}
		if after, _ := h.store.Record(ctx, string(h.rollout.UID), bystander.ID); after.State != before.State || after.Reason != before.Reason {
			t.Fatalf("bystander's record changed: %+v", after)
		}
	})
}

// FuzzUpdateHandler: arbitrary update queries. An assignment is only ever
// for the caller, verifies, and is not below the floor the query gave.
func FuzzUpdateHandler(f *testing.F) {
	h := newHarness(f, 1e6)
	d := h.device("fz-update", true)
	for _, q := range []string{
		"version=1.0.0&securityFloor=2&nonce=00112233445566778899aabbccddeeff",
		"version=1.0.0&securityFloor=5",
		"version=1.0.0&securityFloor=6",
		"version=2.0.0&securityFloor=0",
		"version=1.0.0&securityFloor=4294967296",
		"version=1.0.0&version=2&securityFloor=1",
		"securityFloor=1&nonce=zz",
		"version=%00&securityFloor=-1",
		"",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		rec := fuzzServeURL(h, http.MethodGet, &url.URL{Path: "/v1/update", RawQuery: raw}, map[string]string{"Authorization": "Bearer " + d.Token}, nil)
		wantStatus(t, rec, 200, 204, 400)
		checkErrorBody(t, rec, http.MethodGet)
		if rec.Code != 200 {
			return
		}
		var u protov1.UpdateResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil {
			t.Fatal(err)
		}
		if u.Assignment == nil {
			return // cancel
		}
		a, err := h.verifier.Verify(*u.Assignment, d.ID, h.clock(), time.Minute)
		if err != nil {
			t.Fatalf("assignment does not verify for the caller: %v", err)
		}
		q, _ := url.ParseQuery(raw)
		floor, _ := strconv.ParseInt(q.Get("securityFloor"), 10, 64)
		if a.SecurityVersion < floor {
			t.Fatalf("offered securityVersion %d below floor %d", a.SecurityVersion, floor)
		}
		if n := q.Get("nonce"); n != "" && a.Nonce != n {
			t.Fatalf("nonce %q, asked %q", a.Nonce, n)
		}
	})
}

// FuzzBlobRequest: arbitrary blob paths and conditional/range headers. Only
// the assigned blob is ever served, and a partial answer is exactly the
// slice its Content-Range names.
func FuzzBlobRequest(f *testing.F) {
	h := newHarness(f, 1e6)
	d, u := fuzzDevice(h, "fz-blob")
	a, err := d.Verify(h.verifier, u.Assignment)
	if err != nil {
		f.Fatal(err)
	}
	full := fuzzServe(h, http.MethodGet, "/v1/blobs/"+a.EncryptedSHA256, map[string]string{"Authorization": "Bearer " + d.Token}, nil).Body.Bytes()
	assigned := a.EncryptedSHA256
	other := h.previous.Status.Artifact.EncryptedSHA256
	etag := `"` + assigned + `"`
	for _, s := range [][4]string{
		{assigned, "bytes=0-57", "", ""},
		{assigned, "bytes=58-", etag, ""},
		{assigned, "bytes=-16", `"stale"`, ""},
		{assigned, "bytes=0-1,5-9", "", ""},
		{assigned, "bytes=99999999-", "", ""},
		{assigned, "bytes=5-1", "", ""},
		{assigned, "", "", etag},
		{assigned, "items=0-1", "", "*"},
		{other, "bytes=0-10", "", ""},
		{"../" + assigned, "", "", ""},
		{strings.ToUpper(assigned), "", "", ""},
		{assigned + "/x", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, rng, ifRange, ifNoneMatch string) {
		hdr := map[string]string{"Authorization": "Bearer " + d.Token}
		if rng != "" {
			hdr["Range"] = rng
		}
		if ifRange != "" {
			hdr["If-Range"] = ifRange
		}
		if ifNoneMatch != "" {
			hdr["If-None-Match"] = ifNoneMatch
		}
		rec := fuzzServeURL(h, http.MethodGet, &url.URL{Path: "/v1/blobs/" + name}, hdr, nil)
		wantStatus(t, rec, 200, 206, 301, 304, 307, 308, 400, 403, 404, 412, 416)
		if rec.Code >= 400 && rec.Code != 416 {
			checkErrorBody(t, rec, http.MethodGet)
		}
		if rec.Code != 200 && rec.Code != 206 && rec.Code != 304 {
			return
		}
		if name != assigned {
			t.Fatalf("served %d for %q, only %s is assigned", rec.Code, name, assigned)
		}
		body := rec.Body.Bytes()
		switch rec.Code {
		case 200:
			if !bytes.Equal(body, full) {
				t.Fatal("200 with other bytes than the blob")
			}
		case 206:
			cr := rec.Header().Get("Content-Range")
			if cr == "" { // multipart/byteranges
				if !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/byteranges") {
					t.Fatalf("206 without Content-Range: %v", rec.Header())
				}
				return
			}
			var start, end, size int64
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &size); err != nil || size != int64(len(full)) || end < start || end >= size {
				t.Fatalf("Content-Range %q", cr)
			}
			if !bytes.Equal(body, full[start:end+1]) {
				t.Fatalf("206 body is not bytes %d-%d", start, end)
			}
		}
	})
}

// FuzzBearerToken: only the exact token (scheme case-insensitive)
// authenticates.
func FuzzBearerToken(f *testing.F) {
	h := newHarness(f, 1e6)
	d := h.device("fz-token", false)
	for _, s := range []string{"Bearer " + d.Token, "bearer " + d.Token, "Bearer  " + d.Token, "Bearer " + d.Token + "=", "Basic " + d.Token, d.Token, "Bearer " + d.Token[:42] + "B", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		rec := fuzzServe(h, http.MethodGet, "/v1/update?version=1.0.0&securityFloor=2", map[string]string{"Authorization": auth}, nil)
		scheme, tok, _ := strings.Cut(auth, " ")
		valid := strings.EqualFold(scheme, "Bearer") && tok == d.Token
		switch {
		case valid:
			wantStatus(t, rec, 204, 429)
		default:
			wantStatus(t, rec, 401)
			checkErrorBody(t, rec, http.MethodGet)
		}
	})
}
