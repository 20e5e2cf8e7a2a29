package contract

// Checkers for a specification other than docs/openapi.yaml: the OTA
// server's hawkBit DDI front (docs/ddi-openapi.yaml) is held to its own
// contract the same way. What such a specification needs beyond the
// native one: another file (ForSpec), the server's own reading of paths
// (Checker.Canonical), API keys in the Authorization header with a scheme
// word of their own (authenticateAPIKey), and its own 405 answer
// (components.responses.MethodNotAllowed).

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// DocPath is docs/<name> of this repository, found from this file's
// location.
func DocPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "docs", name))
}

type loadResult struct {
	once sync.Once
	spec *Spec
	err  error
}

var loadedSpecs sync.Map // absolute path → *loadResult

// LoadOnce is Load, once per process and file.
func LoadOnce(path string) (*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("contract: %s: %w", path, err)
	}
	v, _ := loadedSpecs.LoadOrStore(abs, &loadResult{})
	lr := v.(*loadResult)
	lr.once.Do(func() { lr.spec, lr.err = Load(abs) })
	return lr.spec, lr.err
}

// ForSpec is For with the specification at path, such as
// DocPath("ddi-openapi.yaml").
func ForSpec(t testing.TB, path string) *Checker {
	t.Helper()
	spec, err := LoadOnce(path)
	if err != nil {
		t.Fatal(err)
	}
	c := New(spec)
	t.Cleanup(func() { c.Check(t) })
	return c
}

// authenticateAPIKey checks an apiKey scheme in the Authorization header:
// exactly one such header, "<scheme> <token>" where scheme is the
// scheme's x-authorization-scheme (case-insensitive) and the token
// matches its x-token-pattern when it has one (hawkBit's "TargetToken"
// and "GatewayToken").
func authenticateAPIKey(in *openapi3filter.AuthenticationInput) error {
	sch := in.SecurityScheme
	if !strings.EqualFold(sch.In, "header") || !strings.EqualFold(sch.Name, "Authorization") {
		return fmt.Errorf("security scheme %q: the checker knows apiKey schemes in the Authorization header only", in.SecuritySchemeName)
	}
	word, _ := sch.Extensions["x-authorization-scheme"].(string)
	if word == "" {
		return fmt.Errorf("security scheme %q: x-authorization-scheme is missing", in.SecuritySchemeName)
	}
	return checkAuthorization(in, word, word)
}

// checkAuthorization checks the request has exactly one Authorization
// header, "<word> <token>" (word case-insensitive), whose token matches
// the scheme's x-token-pattern when it has one; what names the token in
// errors.
func checkAuthorization(in *openapi3filter.AuthenticationInput, word, what string) error {
	vals := in.RequestValidationInput.Request.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return errors.New("no Authorization header")
	case 1:
	default:
		return fmt.Errorf("%d Authorization headers", len(vals))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, word) {
		return fmt.Errorf("the Authorization header is not a %s", what)
	}
	if p, ok := in.SecurityScheme.Extensions["x-token-pattern"].(string); ok {
		re, err := tokenPattern(p)
		if err != nil {
			return err
		}
		if !re.MatchString(tok) {
			return fmt.Errorf("the %s does not match %s", what, p)
		}
	}
	return nil
}

// methodNotAllowedResponse is the specification's own 405 answer, nil
// when it has none (docs/openapi.yaml: the Error body with code
// method_not_allowed).
func (s *Spec) methodNotAllowedResponse() *openapi3.Response {
	if s.Doc.Components == nil {
		return nil
	}
	if ref := s.Doc.Components.Responses["MethodNotAllowed"]; ref != nil {
		return ref.Value
	}
	return nil
}
