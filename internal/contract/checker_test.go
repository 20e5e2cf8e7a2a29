package contract_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/contract"
)

// The checker must fail when the wire and the contract disagree: these
// tests serve and send exchanges that disagree on purpose, through small
// fake handlers, and assert that the checker names what disagrees — both
// as a client's transport (Wrap) and as a server's middleware (Handler).

const (
	token  = "q0bT9mA3cR7yWkL2pX8vN4sJ6hD1fG5eZ0uI9oB3nMc" // 43 base64url characters
	digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	keyID  = "5f1c9a8e0b7d6c5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"

	// sealed is token sealed to an X25519 key (91 bytes, standard base64).
	sealed = "zKFjtqEPJph6q4OLCU85U+MJVKxm0SvTfzQN4KIo3nkbFa8zEwHNYLFMffY0A7Q16toIEXvvHlWlp1SQroMnStgYpR+HwY6aWhahr74+y0Soath4F9yJ+QRaXQ=="
)

func spec(t *testing.T) *contract.Spec {
	t.Helper()
	s, err := contract.Default()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assignmentPayload is a payload that matches the contract's Assignment.
func assignmentPayload(edit func(map[string]any)) map[string]any {
	a := map[string]any{
		"deviceID": "dev-1", "rollout": "ns/ro", "release": "ns/fw-2", "version": "2.0.0", "securityVersion": 5,
		"plainSHA256": digest, "plainSize": 100, "encryptedSHA256": digest, "encryptedSize": 190,
		"suite": "otaflow-enc/v1", "blobURL": "https://ota.test/v1/blobs/" + digest, "kem": "x25519",
		"wrappedKey": base64.StdEncoding.EncodeToString(make([]byte, 80)), "vendorSignature": "c2ln",
		"nonce": "00112233445566778899aabbccddeeff", "issuedAt": "2026-05-01T12:00:00Z", "expiresAt": "2026-05-01T13:00:00Z",
	}
	if edit != nil {
		edit(a)
	}
	return a
}

// installAnswer is an install answer whose payload and answer object the
// edits may change.
func installAnswer(editPayload, editAnswer func(map[string]any)) []byte {
	p := assignmentPayload(editPayload)
	raw, _ := json.Marshal(p)
	u := map[string]any{"action": "install", "rollout": "ns/ro", "assignment": map[string]any{
		"payload":   base64.StdEncoding.EncodeToString(raw),
		"signature": base64.StdEncoding.EncodeToString(make([]byte, 64)),
		"keyID":     keyID,
	}}
	if editAnswer != nil {
		editAnswer(u)
	}
	b, _ := json.Marshal(u)
	return b
}

func jsonAnswer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func apiError(w http.ResponseWriter, status int, code string) {
	b, _ := json.Marshal(map[string]string{"code": code, "message": "refused by the fake"})
	jsonAnswer(w, status, b)
}

// fake is a correct protocol v1 server in the small, whose answers a test
// can replace per path.
type fake struct {
	update func(w http.ResponseWriter, r *http.Request)
	blob   func(w http.ResponseWriter, r *http.Request)
	status func(w http.ResponseWriter, r *http.Request)
	seen   []http.Header
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.seen = append(f.seen, r.Header.Clone())
	switch {
	case r.URL.Path == "/v1/enroll" && r.Method == http.MethodPost:
		jsonAnswer(w, 201, []byte(`{"deviceID":"dev-1","sealedToken":"`+sealed+`","assignmentKeyID":"`+keyID+`"}`))
	case r.URL.Path == "/v1/update" && r.Method == http.MethodGet:
		if f.update != nil {
			f.update(w, r)
			return
		}
		jsonAnswer(w, 200, installAnswer(nil, nil))
	case strings.HasPrefix(r.URL.Path, "/v1/blobs/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		if f.blob != nil {
			f.blob(w, r)
			return
		}
		w.Header().Set("ETag", `"`+digest+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(make([]byte, 190)))
	case r.URL.Path == "/v1/status" && r.Method == http.MethodPost:
		if f.status != nil {
			f.status(w, r)
			return
		}
		jsonAnswer(w, 200, []byte(`{"state":"downloading","duplicate":false}`))
	case r.URL.Path == "/v1/enroll" || r.URL.Path == "/v1/update" || r.URL.Path == "/v1/status":
		w.Header().Set("Allow", "GET")
		apiError(w, 405, "method_not_allowed")
	default:
		apiError(w, 404, "not_found")
	}
}

// rig serves f behind the checker's middleware and gives a client whose
// transport is wrapped by a second checker: every exchange is seen from
// both sides.
type rig struct {
	srv                    *httptest.Server
	client                 *http.Client
	serverSide, clientSide *contract.Checker
}

func newRig(t *testing.T, f *fake) *rig {
	s := spec(t)
	r := &rig{serverSide: contract.New(s), clientSide: contract.New(s)}
	r.srv = httptest.NewServer(r.serverSide.Handler(f))
	t.Cleanup(r.srv.Close)
	// Wrap validates on the client side; Forward carries the marks of
	// contract.Exempt across the connection to the Handler.
	r.client = r.clientSide.Client(&http.Client{Transport: contract.Forward(r.srv.Client().Transport)})
	return r
}

func (r *rig) do(t *testing.T, ctx context.Context, method, path, ctype string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, r.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if path != "/v1/enroll" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// want asserts that both checkers saw exactly the violations that contain
// each of wants (all of them, and nothing else), and forgets them.
func (r *rig) want(t *testing.T, wants ...string) {
	t.Helper()
	r.srv.Client().CloseIdleConnections()
	for side, c := range map[string]*contract.Checker{"server side": r.serverSide, "client side": r.clientSide} {
		got := c.Violations()
		c.Reset()
		if len(wants) == 0 && len(got) > 0 {
			t.Errorf("%s: unexpected violations:\n%s", side, contract.Report(got, ""))
			continue
		}
		text := contract.Report(got, "")
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s: no violation mentions %q; got:\n%s", side, w, text)
			}
		}
	}
}

// TestCorrectExchangesPass: a server that keeps the contract, a client
// that keeps it: nothing to report, on every operation.
func TestCorrectExchangesPass(t *testing.T) {
	r := newRig(t, &fake{})
	enroll := `{"deviceID":"dev-1","bootstrapToken":"bt","kem":"x25519","publicKey":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","deviceType":"sensor-v1","labels":{"region":"eu"},"version":"1.0.0","securityFloor":2}`
	r.do(t, ctx, "POST", "/v1/enroll", "application/json", []byte(enroll))
	r.do(t, ctx, "GET", "/v1/update?version=1.0.0&securityFloor=2&nonce=00112233445566778899aabbccddeeff&boot=b1", "", nil)
	r.do(t, ctx, "GET", "/v1/blobs/"+digest, "", nil, "Range", "bytes=10-")
	r.do(t, ctx, "HEAD", "/v1/blobs/"+digest, "", nil)
	r.do(t, ctx, "GET", "/v1/blobs/"+digest, "", nil, "If-None-Match", `"`+digest+`"`)
	r.do(t, ctx, "POST", "/v1/status", "application/json", []byte(`{"reportID":"r1","rollout":"ns/ro","state":"failed","reason":"boot loop"}`))
	r.want(t)
	if n := r.serverSide.Exchanges(); n != 6 {
		t.Fatalf("server side validated %d exchanges, want 6", n)
	}
}

// TestRenamedResponseField: an update answer whose "assignment" is
// misspelled "assignmnt" is caught.
func TestRenamedResponseField(t *testing.T) {
	r := newRig(t, &fake{update: func(w http.ResponseWriter, _ *http.Request) {
		b := bytes.Replace(installAnswer(nil, nil), []byte(`"assignment"`), []byte(`"assignmnt"`), 1)
		jsonAnswer(w, 200, b)
	}})
	r.do(t, ctx, "GET", "/v1/update?version=1.0.0&securityFloor=2", "", nil)
	r.want(t, `→ 200: response: property "assignmnt" is unsupported`)
}

// TestRenamedPayloadField: a field renamed inside the signed assignment
// (base64 JSON in payload) is caught too.
func TestRenamedPayloadField(t *testing.T) {
	r := newRig(t, &fake{update: func(w http.ResponseWriter, _ *http.Request) {
		jsonAnswer(w, 200, installAnswer(func(p map[string]any) {
			p["encryptedSha256"] = p["encryptedSHA256"]
			delete(p, "encryptedSHA256")
		}, nil))
	}})
	r.do(t, ctx, "GET", "/v1/update?version=1.0.0&securityFloor=2", "", nil)
	r.want(t, "/assignment/payload (decoded) doesn't match its contentSchema", `property "encryptedSha256" is unsupported`)
}

// TestRenamedRequestField: a report whose "reportID" is spelt "reportId"
// is caught, although the fake server took it.
func TestRenamedRequestField(t *testing.T) {
	r := newRig(t, &fake{})
	r.do(t, ctx, "POST", "/v1/status", "application/json", []byte(`{"reportId":"r1","rollout":"ns/ro","state":"downloading"}`))
	r.want(t, "request", "reportId")
}

// TestLabelKeys: propertyNames, which the checker applies itself
// (keywords.go), refuses a label key that is not a Kubernetes one.
func TestLabelKeys(t *testing.T) {
	r := newRig(t, &fake{})
	enroll := `{"deviceID":"dev-1","bootstrapToken":"bt","kem":"x25519","publicKey":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","deviceType":"sensor-v1","labels":{"not a key!":"eu"},"version":"1.0.0"}`
	r.do(t, ctx, "POST", "/v1/enroll", "application/json", []byte(enroll))
	r.want(t, `→ 201: request: /labels: property name "not a key!" doesn't match propertyNames`)
}

// TestBadAnswers: statuses, headers and bodies the contract does not have.
func TestBadAnswers(t *testing.T) {
	cases := []struct {
		name string
		f    *fake
		do   func(*rig)
		want []string
	}{
		{"undocumented status", &fake{update: func(w http.ResponseWriter, _ *http.Request) { apiError(w, 418, "bad_request") }},
			func(r *rig) { r.do(t, ctx, "GET", "/v1/update?version=1&securityFloor=0", "", nil) }, []string{"status 418 is not one of the contract's"}},
		{"error code of another status", &fake{status: func(w http.ResponseWriter, _ *http.Request) { apiError(w, 409, "key_mismatch") }},
			func(r *rig) {
				r.do(t, ctx, "POST", "/v1/status", "application/json", []byte(`{"reportID":"r1","rollout":"ns/ro","state":"downloading"}`))
			}, []string{"key_mismatch"}},
		{"429 without Retry-After", &fake{update: func(w http.ResponseWriter, _ *http.Request) { apiError(w, 429, "rate_limited") }},
			func(r *rig) { r.do(t, ctx, "GET", "/v1/update?version=1&securityFloor=0", "", nil) }, []string{`"Retry-After" missing`}},
		{"no Cache-Control", &fake{update: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(installAnswer(nil, nil))
		}}, func(r *rig) { r.do(t, ctx, "GET", "/v1/update?version=1&securityFloor=0", "", nil) }, []string{`"Cache-Control" missing`}},
		{"cancel with an assignment", &fake{update: func(w http.ResponseWriter, _ *http.Request) {
			jsonAnswer(w, 200, installAnswer(nil, func(u map[string]any) { u["action"], u["reason"] = "cancel", "rollout aborted" }))
		}}, func(r *rig) { r.do(t, ctx, "GET", "/v1/update?version=1&securityFloor=0", "", nil) }, []string{"→ 200: response: ", `Doesn't match schema "not"`}},
		{"blob without ETag", &fake{blob: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
			w.Header().Set("Accept-Ranges", "bytes")
			_, _ = w.Write(make([]byte, 100))
		}}, func(r *rig) {
			r.do(t, ctx, "GET", "/v1/blobs/"+digest, "", nil)
			r.do(t, ctx, "HEAD", "/v1/blobs/"+digest, "", nil)
		}, []string{`GET /v1/blobs/` + digest + ` → 200: response: response header "ETag" missing`, `HEAD /v1/blobs/` + digest + ` → 200: response: response header "ETag" missing`}},
		{"blob as JSON", &fake{blob: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("ETag", `"`+digest+`"`)
			w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
			w.Header().Set("Accept-Ranges", "bytes")
			jsonAnswer(w, 200, []byte(`{}`))
		}}, func(r *rig) { r.do(t, ctx, "GET", "/v1/blobs/"+digest, "", nil) }, []string{`Content-Type "application/json" is not one of the contract's`}},
		{"304 without ETag", &fake{blob: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
			w.WriteHeader(304)
		}}, func(r *rig) { r.do(t, ctx, "GET", "/v1/blobs/"+digest, "", nil, "If-None-Match", "*") }, []string{`→ 304: response: response header "ETag" missing`}},
		{"error body without message", &fake{status: func(w http.ResponseWriter, _ *http.Request) {
			jsonAnswer(w, 404, []byte(`{"code":"unknown_rollout"}`))
		}}, func(r *rig) {
			r.do(t, ctx, "POST", "/v1/status", "application/json", []byte(`{"reportID":"r1","rollout":"ns/gone","state":"downloading"}`))
		}, []string{"message"}},
		{"unknown path answered 200", &fake{}, func(r *rig) {
			r.srv.Config.Handler = r.serverSide.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				jsonAnswer(w, 200, []byte(`{}`))
			}))
			r.do(t, contract.Exempt(ctx, "unknown path"), "GET", "/v1/nothing", "", nil)
		}, []string{"did not refuse a request the contract calls invalid (sent invalid on purpose: unknown path): no path of the contract matches /v1/nothing",
			"status 200 for a request the contract has no operation for; want 404"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.f)
			tc.do(r)
			r.want(t, tc.want...)
		})
	}
}

// TestInvalidOnPurpose: a request marked invalid on purpose is not held to
// the contract while the server refuses it, but its answer is; accepted,
// it is a violation (the contract is stricter than the server). The mark
// never reaches the server's handler.
func TestInvalidOnPurpose(t *testing.T) {
	f := &fake{status: func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !json.Valid(b) {
			apiError(w, 400, "malformed_json")
			return
		}
		jsonAnswer(w, 200, []byte(`{"state":"downloading","duplicate":false}`))
	}}
	r := newRig(t, f)
	bad := contract.Exempt(ctx, "malformed on purpose")
	r.do(t, bad, "POST", "/v1/status", "application/json", []byte(`{"reportID":`))
	r.do(t, bad, "GET", "/v1/enroll", "", nil)
	r.do(t, bad, "GET", "/v2/nothing", "", nil)
	r.want(t)
	for _, h := range f.seen {
		if h.Get(contract.ExemptHeader) != "" {
			t.Fatalf("the handler saw the mark: %v", h)
		}
	}

	// Accepted: the contract calls it invalid, the server took it.
	r.do(t, bad, "POST", "/v1/status", "application/json", []byte(`{"reportID":"r1","rollout":"ns/ro","state":"exploded"}`))
	r.want(t, "did not refuse a request the contract calls invalid (sent invalid on purpose: malformed on purpose)", "exploded")

	// Refused, but the refusal itself breaks the contract.
	f.status = func(w http.ResponseWriter, _ *http.Request) { apiError(w, 400, "no_such_code") }
	r.do(t, bad, "POST", "/v1/status", "application/json", []byte(`{}`))
	r.want(t, "→ 400: response", "no_such_code")

	// Not marked: the same request is a violation whatever the answer.
	r.do(t, ctx, "POST", "/v1/status", "application/json", []byte(`{}`))
	r.want(t, "→ 400: request", "reportID")
}

// TestExemptResponse: an answer a fake server sends off-contract on
// purpose is not validated, and the mark does not reach the client; the
// request still is validated.
func TestExemptResponse(t *testing.T) {
	var got http.Header
	r := newRig(t, &fake{update: func(w http.ResponseWriter, _ *http.Request) {
		contract.ExemptResponse(w.Header(), "tampered on purpose")
		jsonAnswer(w, 200, []byte(`{"action":"explode"}`))
	}})
	resp := r.do(t, ctx, "GET", "/v1/update?version=1.0.0&securityFloor=2", "", nil)
	got = resp.Header
	r.want(t)
	if got.Get(contract.ExemptHeader) != "" {
		t.Fatal("the client saw the mark")
	}
	r.do(t, ctx, "GET", "/v1/update?version=1.0.0", "", nil)
	r.want(t, `parameter "securityFloor" in query has an error: value is required but missing`)
}

// TestForward: a client whose server is checked by Handler marks requests
// across the connection with Forward.
func TestForward(t *testing.T) {
	s := spec(t)
	c := contract.New(s)
	f := &fake{}
	srv := httptest.NewServer(c.Handler(f))
	defer srv.Close()
	client := &http.Client{Transport: contract.Forward(nil)}
	req, _ := http.NewRequestWithContext(contract.Exempt(ctx, "no token on purpose"), "GET", srv.URL+"/v1/update?version=1&securityFloor=0", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The fake answers 200 without checking the token: accepted.
	if v := c.Violations(); len(v) != 1 || !strings.Contains(v[0].Reason, "no token on purpose") {
		t.Fatalf("violations %v", v)
	}
	if f.seen[0].Get(contract.ExemptHeader) != "" {
		t.Fatal("the handler saw the mark")
	}
}

// TestUnrouted: an unknown path must be answered 404 with the Error body,
// another method on a known path 405 with Allow.
func TestUnrouted(t *testing.T) {
	r := newRig(t, &fake{})
	bad := contract.Exempt(ctx, "unknown path and method")
	r.do(t, bad, "GET", "/v1/nothing", "", nil) // 404 from the fake
	r.do(t, bad, "PUT", "/v1/update", "", nil)  // 405 from the fake
	r.want(t)

	wrong := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(405)
		_, _ = w.Write([]byte("nope"))
	})
	r2 := newRig(t, &fake{})
	r2.srv.Config.Handler = r2.serverSide.Handler(wrong)
	r2.do(t, bad, "DELETE", "/v1/status", "", nil)
	r2.want(t, `response header "Allow" missing`, `Content-Type "text/plain"`)
}

var ctx = context.Background()
