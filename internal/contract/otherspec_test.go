package contract_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/contract"
)

// A specification other than docs/openapi.yaml, in the shape of the
// hawkBit DDI front's: API keys in the Authorization header with a scheme
// word, its own 405 answer, a server that collapses repeated slashes.
const keyed = `
openapi: 3.1.0
info: {title: keyed, version: "1"}
security:
- Target: []
- Gateway: []
paths:
  /{tenant}/things/{id}:
    parameters:
    - {name: tenant, in: path, required: true, schema: {type: string}}
    - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: thing
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, required: [id], properties: {id: {type: string}}}
        "401":
          description: no
components:
  securitySchemes:
    Target:
      type: apiKey
      in: header
      name: Authorization
      x-authorization-scheme: TargetToken
      x-token-pattern: '^[a-z]{3,8}$'
    Gateway:
      type: apiKey
      in: header
      name: Authorization
      x-authorization-scheme: GatewayToken
  responses:
    MethodNotAllowed:
      description: another method
      headers:
        Allow: {required: true, schema: {type: string}}
      content:
        application/json:
          schema:
            type: object
            additionalProperties: false
            required: [errorCode]
            properties: {errorCode: {enum: [ddi.methodNotAllowed]}}
`

func keyedChecker(t *testing.T) *contract.Checker {
	t.Helper()
	s, err := contract.LoadData([]byte(keyed))
	if err != nil {
		t.Fatal(err)
	}
	return contract.New(s)
}

// serve sends one request through c around h and returns the violations.
func serve(c *contract.Checker, h http.HandlerFunc, method, path, auth string) string {
	c.Reset()
	req := httptest.NewRequest(method, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c.Handler(h).ServeHTTP(httptest.NewRecorder(), req)
	return contract.Report(c.Violations(), "")
}

func okThing(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":"x"}`))
}

// TestAPIKeySchemes: "<scheme> <token>" in the Authorization header, the
// scheme word case-insensitive, the token held to x-token-pattern; any
// of the alternatives will do.
func TestAPIKeySchemes(t *testing.T) {
	c := keyedChecker(t)
	for _, auth := range []string{"TargetToken abcd", "targettoken abcd", "GatewayToken ANY-thing.123"} {
		if v := serve(c, okThing, "GET", "/t/things/1", auth); len(c.Violations()) != 0 {
			t.Errorf("%q refused: %s", auth, v)
		}
	}
	for auth, want := range map[string]string{
		"":                   "no Authorization header",
		"Bearer abcd":        "not a TargetToken",
		"TargetToken AB":     "does not match",
		"TargetTokenabcd":    "not a GatewayToken",
		"GatewayToken":       "not a GatewayToken",
		"SomethingElse abcd": "not a TargetToken",
	} {
		if v := serve(c, okThing, "GET", "/t/things/1", auth); !strings.Contains(v, want) {
			t.Errorf("%q: want a violation naming %q, got %s", auth, want, v)
		}
	}
}

// TestCanonicalPath: with Canonical, a path is routed as the server reads
// it; without, a non-canonical path matches nothing.
func TestCanonicalPath(t *testing.T) {
	c := keyedChecker(t)
	if v := serve(c, okThing, "GET", "//t/things/1/", "TargetToken abcd"); !strings.Contains(v, "no path of the contract matches //t/things/1/") {
		t.Fatalf("without Canonical: %s", v)
	}
	c.Canonical = func(p string) string { return "/" + strings.Trim(strings.ReplaceAll(p, "//", "/"), "/") }
	if v := serve(c, okThing, "GET", "//t/things/1/", "TargetToken abcd"); len(c.Violations()) != 0 {
		t.Fatalf("with Canonical: %s", v)
	}
	// Reported under the path as sent.
	if v := serve(c, okThing, "GET", "//t/things/1/", "TargetToken A"); !strings.Contains(v, "GET //t/things/1/ → 200") {
		t.Fatalf("report: %s", v)
	}
}

// TestOwnMethodNotAllowed: a specification with
// components.responses.MethodNotAllowed has its 405 answers held to it
// (and not to docs/openapi.yaml's Error with method_not_allowed).
func TestOwnMethodNotAllowed(t *testing.T) {
	c := keyedChecker(t)
	answer := func(allow, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if allow != "" {
				w.Header().Set("Allow", allow)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(405)
			_, _ = w.Write([]byte(body))
		}
	}
	exempt := func(method, path string) *http.Request {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "TargetToken abcd")
		return req.WithContext(contract.Exempt(req.Context(), "a wrong method"))
	}
	check := func(h http.HandlerFunc) string {
		c.Reset()
		c.Handler(h).ServeHTTP(httptest.NewRecorder(), exempt("DELETE", "/t/things/1"))
		return contract.Report(c.Violations(), "")
	}
	if v := check(answer("GET", `{"errorCode":"ddi.methodNotAllowed"}`)); len(c.Violations()) != 0 {
		t.Fatalf("the specification's own 405 refused: %s", v)
	}
	if v := check(answer("GET", `{"code":"method_not_allowed","message":"no"}`)); !strings.Contains(v, "errorCode") {
		t.Fatalf("docs/openapi.yaml's 405 body accepted: %s", v)
	}
	if v := check(answer("", `{"errorCode":"ddi.methodNotAllowed"}`)); !strings.Contains(v, `"Allow" missing`) {
		t.Fatalf("405 without Allow accepted: %s", v)
	}
}

// TestLoadOnce: the DDI front's contract loads (kin-openapi's document
// validation, examples included), once per process.
func TestLoadOnce(t *testing.T) {
	a, err := contract.LoadOnce(contract.DocPath("ddi-openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := contract.LoadOnce(contract.DocPath("ddi-openapi.yaml"))
	if err != nil || a != b {
		t.Fatalf("second load: %p %p %v", a, b, err)
	}
	if !a.Doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1 (as docs/openapi.yaml)", a.Doc.OpenAPI)
	}
	if _, err := contract.LoadOnce(contract.DocPath("no-such.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}
