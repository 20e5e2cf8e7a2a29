package contract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Violation is one way an exchange disagrees with the contract.
type Violation struct {
	// Request is the method and target, such as "GET /v1/update?version=1".
	Request string
	// Status is the answer's status, 0 when there was no answer.
	Status int
	// Side is "request" or "response".
	Side string
	// Reason says what disagrees.
	Reason string
}

func (v Violation) String() string {
	if v.Status == 0 {
		return fmt.Sprintf("%s: %s: %s", v.Request, v.Side, v.Reason)
	}
	return fmt.Sprintf("%s → %d: %s: %s", v.Request, v.Status, v.Side, v.Reason)
}

// exchange is one request and, when there was one, its answer, as read by
// Wrap or Handler.
type exchange struct {
	method   string
	url      *url.URL
	host     string
	header   http.Header
	body     []byte
	bodyOver bool  // the body is longer than the limit; body holds its start
	bodyErr  error // the body could not be read to its end
	exempt   string

	answered     bool
	status       int
	respHeader   http.Header
	respBody     []byte
	respBodyOver bool
	respBodyErr  error
	respBodyLen  int64 // bytes in the answer's body, as far as known
	respExempt   string
	limit        int64
	routePath    string // the path as the server reads it (Checker.Canonical), "" when as is
}

func (ex *exchange) target() string {
	t := ex.url.EscapedPath()
	if ex.url.RawQuery != "" {
		t += "?" + ex.url.RawQuery
	}
	if len(t) > 160 {
		t = t[:157] + "..."
	}
	return ex.method + " " + t
}

// request rebuilds the request for kin-openapi, with its own copy of the
// body.
func (ex *exchange) request() *http.Request {
	u := *ex.url
	r := &http.Request{
		Method: ex.method, URL: &u, Host: ex.host, Header: ex.header.Clone(),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: int64(len(ex.body)),
		Body: http.NoBody,
	}
	if len(ex.body) > 0 {
		body := ex.body
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return r.WithContext(context.Background())
}

// check validates one exchange.
func (s *Spec) check(ex *exchange) []Violation {
	var out []Violation
	add := func(side, reason string) {
		v := Violation{Request: ex.target(), Side: side, Reason: reason}
		if ex.answered {
			v.Status = ex.status
		}
		out = append(out, v)
	}
	req := ex.request()
	if ex.routePath != "" { // Checker.Canonical
		req.URL.Path, req.URL.RawPath = ex.routePath, ""
	}
	route, params, routeErr := s.router.FindRoute(req)
	var problems []string
	switch {
	case errors.Is(routeErr, routers.ErrMethodNotAllowed):
		problems = []string{fmt.Sprintf("the contract has no %s operation on %s", ex.method, ex.url.EscapedPath())}
	case routeErr != nil:
		problems = []string{fmt.Sprintf("no path of the contract matches %s", ex.url.EscapedPath())}
	default:
		problems = s.requestProblems(req, route, params, ex)
	}
	if len(problems) > 0 {
		switch {
		case ex.exempt == "":
			for _, p := range problems {
				add("request", p)
			}
		case !ex.answered, ex.status >= 400 && ex.status < 500, routeErr != nil && redirectsToCanonical(ex):
			// Invalid on purpose, and refused, redirected to the
			// canonical path, or never answered.
		default:
			add("request", fmt.Sprintf("the server did not refuse a request the contract calls invalid (sent invalid on purpose: %s): %s",
				ex.exempt, strings.Join(problems, "; ")))
		}
	}
	if !ex.answered || ex.respExempt != "" {
		return out
	}
	var answer []string
	if routeErr != nil {
		answer = s.unroutedProblems(ex, routeErr)
	} else {
		answer = s.responseProblems(req, route, params, ex)
	}
	for _, p := range answer {
		add("response", p)
	}
	return out
}

func (s *Spec) options() *openapi3filter.Options {
	return &openapi3filter.Options{
		AuthenticationFunc:  s.authenticate,
		SkipSettingDefaults: true,
		MultiError:          true,
	}
}

func (s *Spec) requestProblems(req *http.Request, route *routers.Route, params map[string]string, ex *exchange) []string {
	var problems []string
	opts := s.options()
	switch {
	case ex.bodyErr != nil:
		opts.ExcludeRequestBody = true
		problems = append(problems, fmt.Sprintf("the body could not be read to its end (%v)", ex.bodyErr))
	case ex.bodyOver:
		opts.ExcludeRequestBody = true
		problems = append(problems, fmt.Sprintf("the body is longer than %d bytes", ex.limit))
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	err := openapi3filter.ValidateRequest(context.Background(), in)
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil && !opts.ExcludeRequestBody && len(ex.body) > 0 {
		ct := ex.header.Get("Content-Type")
		if mt := rb.Value.Content.Get(ct); mt != nil && mt.Schema != nil && isJSON(mediaType(ct)) {
			var v any
			if json.Unmarshal(ex.body, &v) == nil {
				if err != nil {
					problems = append(problems, s.shallow(mt.Schema, v)...)
				}
				problems = append(problems, s.embedded(mt.Schema, v, "")...)
			}
		}
	}
	if err != nil {
		problems = append(problems, flatten(err)...)
	}
	return append(problems, queryProblems(route, req.URL)...)
}

// shallow validates v against schema without its oneOf, anyOf and not:
// when one of those fails, kin-openapi's validator stops before it looks
// at the properties, so a misspelt property would only show as a branch
// that does not match. The errors of this pass name it.
func (s *Spec) shallow(ref *openapi3.SchemaRef, v any) []string {
	sch := ref.Value
	if sch == nil || len(sch.OneOf) == 0 && len(sch.AnyOf) == 0 && sch.Not == nil {
		return nil
	}
	c := *sch
	c.OneOf, c.AnyOf, c.Not = nil, nil, nil
	err := c.VisitJSON(v, s.schemaOptions()...)
	if err == nil {
		return nil
	}
	return flatten(err)
}

// queryProblems refuses what openapi3filter lets through: parameters the
// contract does not name (the server refuses them), and a parameter that
// is not an array given more than once.
func queryProblems(route *routers.Route, u *url.URL) []string {
	declared := map[string]*openapi3.Parameter{}
	for _, refs := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, ref := range refs {
			if p := ref.Value; p != nil && p.In == openapi3.ParameterInQuery {
				declared[p.Name] = p
			}
		}
	}
	q := u.Query()
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	var problems []string
	for _, name := range names {
		p, ok := declared[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("query parameter %q is not in the contract", name))
		case len(q[name]) > 1 && (p.Schema == nil || p.Schema.Value == nil || !p.Schema.Value.Type.Is(openapi3.TypeArray)):
			problems = append(problems, fmt.Sprintf("query parameter %q is given %d times", name, len(q[name])))
		}
	}
	return problems
}

var tokenPatterns sync.Map // string → *regexp.Regexp

// authenticate checks that a request carries what an HTTP bearer scheme
// asks for: "Authorization: Bearer <token>" (scheme case-insensitive),
// the token matching the scheme's x-token-pattern when it has one.
func (s *Spec) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	sch := in.SecurityScheme
	if sch != nil && sch.Type == "apiKey" { // hawkBit DDI's schemes (otherspec.go)
		return authenticateAPIKey(in)
	}
	if sch == nil || sch.Type != "http" || !strings.EqualFold(sch.Scheme, "bearer") {
		return fmt.Errorf("security scheme %q: the checker knows HTTP bearer schemes only", in.SecuritySchemeName)
	}
	return checkAuthorization(in, "Bearer", "bearer token")
}

func tokenPattern(p string) (*regexp.Regexp, error) {
	if re, ok := tokenPatterns.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("x-token-pattern %q: %w", p, err)
	}
	tokenPatterns.Store(p, re)
	return re, nil
}

// responseProblems validates an answer to a routed request: its status
// must be one of the operation's, its headers and body must match.
func (s *Spec) responseProblems(req *http.Request, route *routers.Route, params map[string]string, ex *exchange) []string {
	ref := route.Operation.Responses.Status(ex.status)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return []string{fmt.Sprintf("status %d is not one of the contract's for %s %s (%s)",
			ex.status, ex.method, route.Path, strings.Join(slices.Sorted(maps.Keys(route.Operation.Responses.Map())), ", "))}
	}
	resp := ref.Value
	ct := ex.respHeader.Get("Content-Type")
	media := mediaType(ct)
	switch ex.status {
	case http.StatusNotModified, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// openapi3filter skips these statuses entirely.
		return s.againstResponse(resp, ex, false)
	}
	if ex.method == http.MethodHead {
		// openapi3filter skips HEAD entirely; there is no body to check.
		return s.againstResponse(resp, ex, false)
	}
	var problems []string
	excludeBody := ex.respBodyOver || ex.respBodyErr != nil || !textual(media)
	switch {
	case len(resp.Content) == 0:
		if ex.respBodyLen > 0 {
			problems = append(problems, fmt.Sprintf("a %d-byte body where the contract has none", ex.respBodyLen))
		}
	case resp.Content.Get(ct) == nil:
		problems = append(problems, fmt.Sprintf("Content-Type %q is not one of the contract's (%s)", ct, strings.Join(slices.Sorted(maps.Keys(resp.Content)), ", ")))
		excludeBody = true
	case ex.respBodyOver && textual(media):
		problems = append(problems, fmt.Sprintf("the body is longer than %d bytes and was not validated", answerLimit))
	case ex.respBodyErr != nil && textual(media):
		problems = append(problems, fmt.Sprintf("the body could not be read to its end (%v)", ex.respBodyErr))
	}
	body := ex.respBody
	if excludeBody {
		body = nil
	}
	opts := s.options()
	opts.IncludeResponseStatus = true
	opts.ExcludeResponseBody = excludeBody
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 ex.status,
		Header:                 ex.respHeader,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	}
	err := openapi3filter.ValidateResponse(context.Background(), in)
	if !excludeBody && isJSON(media) {
		if mt := resp.Content.Get(ct); mt != nil && mt.Schema != nil {
			var v any
			if json.Unmarshal(body, &v) == nil {
				if err != nil {
					problems = append(problems, s.shallow(mt.Schema, v)...)
				}
				problems = append(problems, s.embedded(mt.Schema, v, "")...)
			}
		}
	}
	if err != nil {
		problems = append(problems, flatten(err)...)
	}
	return problems
}

// againstResponse checks headers, Content-Type and (when withBody) a JSON
// body against resp, for what openapi3filter does not check.
func (s *Spec) againstResponse(resp *openapi3.Response, ex *exchange, withBody bool) []string {
	problems := s.headerProblems(resp, ex.respHeader)
	if ex.method == http.MethodHead {
		return problems
	}
	ct := ex.respHeader.Get("Content-Type")
	if len(resp.Content) == 0 {
		if ex.respBodyLen > 0 {
			problems = append(problems, fmt.Sprintf("a %d-byte body where the contract has none", ex.respBodyLen))
		}
		return problems
	}
	mt := resp.Content.Get(ct)
	if mt == nil {
		return append(problems, fmt.Sprintf("Content-Type %q is not one of the contract's (%s)", ct, strings.Join(slices.Sorted(maps.Keys(resp.Content)), ", ")))
	}
	if !withBody || mt.Schema == nil || !isJSON(mediaType(ct)) {
		return problems
	}
	var v any
	if err := json.Unmarshal(ex.respBody, &v); err != nil {
		return append(problems, fmt.Sprintf("the body is not JSON: %v", err))
	}
	if err := mt.Schema.Value.VisitJSON(v, s.schemaOptions()...); err != nil {
		problems = append(problems, "the body does not match the schema: "+oneLine(err.Error()))
	}
	return problems
}

// schemaOptions are those of the checker's own schema validations: the
// fast validator (keywords.go), every error.
func (s *Spec) schemaOptions() []openapi3.SchemaValidationOption {
	return []openapi3.SchemaValidationOption{openapi3.MultiErrors()}
}

// headerProblems checks the answer's headers against resp's.
func (s *Spec) headerProblems(resp *openapi3.Response, h http.Header) []string {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(resp.Headers)) {
		if strings.EqualFold(name, "Content-Type") {
			continue
		}
		hdr := resp.Headers[name].Value
		if hdr == nil {
			continue
		}
		vals := h.Values(name)
		if len(vals) == 0 {
			if hdr.Required {
				problems = append(problems, fmt.Sprintf("response header %q missing", name))
			}
			continue
		}
		if hdr.Schema == nil || hdr.Schema.Value == nil {
			continue
		}
		var v any = vals[0]
		if sch := hdr.Schema.Value; sch.Type.Is(openapi3.TypeInteger) || sch.Type.Is(openapi3.TypeNumber) {
			f, err := strconv.ParseFloat(vals[0], 64)
			if err != nil {
				problems = append(problems, fmt.Sprintf("response header %q: %q is not a number", name, vals[0]))
				continue
			}
			v = f
		}
		if err := hdr.Schema.Value.VisitJSON(v, s.schemaOptions()...); err != nil {
			problems = append(problems, fmt.Sprintf("response header %q doesn't match schema: %s", name, oneLine(err.Error())))
		}
	}
	return problems
}

// unroutedProblems checks the answer to a request the contract has no
// operation for (the info.description of docs/openapi.yaml): an unknown
// path is answered 404 as components.responses.NotFound, another method on
// a known path 405 with Allow and an Error body of code
// method_not_allowed, a path that is not in canonical form a redirect to
// the canonical one.
func (s *Spec) unroutedProblems(ex *exchange, routeErr error) []string {
	switch {
	case redirectsToCanonical(ex):
		if ex.respHeader.Get("Location") == "" {
			return []string{"a redirect without Location"}
		}
		return nil
	case ex.status == http.StatusNotFound && !errors.Is(routeErr, routers.ErrMethodNotAllowed):
		ref := s.Doc.Components.Responses["NotFound"]
		if ref == nil || ref.Value == nil {
			return []string{"the contract has no components.responses.NotFound for unknown paths"}
		}
		return s.againstResponse(ref.Value, ex, true)
	case ex.status == http.StatusMethodNotAllowed && errors.Is(routeErr, routers.ErrMethodNotAllowed):
		return s.methodNotAllowedProblems(ex)
	}
	want := "404 for an unknown path"
	if errors.Is(routeErr, routers.ErrMethodNotAllowed) {
		want = "405 for a method the path does not have"
	}
	return []string{fmt.Sprintf("status %d for a request the contract has no operation for; want %s", ex.status, want)}
}

// redirectsToCanonical: a request for a path that is not in canonical form
// answered with a redirect (net/http's ServeMux).
func redirectsToCanonical(ex *exchange) bool {
	switch ex.status {
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return cleanPath(ex.url.Path) != ex.url.Path
	}
	return false
}

// cleanPath is the canonical form of p as net/http's ServeMux sees it.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

func (s *Spec) methodNotAllowedProblems(ex *exchange) []string {
	if own := s.methodNotAllowedResponse(); own != nil { // otherspec.go
		return s.againstResponse(own, ex, true)
	}
	errRef := s.Doc.Components.Schemas["Error"]
	if errRef == nil {
		return []string{"the contract has no components.schemas.Error"}
	}
	resp := openapi3.NewResponse().WithJSONSchemaRef(errRef)
	resp.Headers = openapi3.Headers{"Allow": {Value: &openapi3.Header{Parameter: openapi3.Parameter{
		Required: true, Schema: openapi3.NewStringSchema().WithMinLength(1).NewRef(),
	}}}}
	if noStore := s.Doc.Components.Headers["NoStore"]; noStore != nil {
		resp.Headers["Cache-Control"] = noStore
	}
	problems := s.againstResponse(resp, ex, true)
	var e struct{ Code string }
	if json.Unmarshal(ex.respBody, &e) == nil && e.Code != "method_not_allowed" {
		problems = append(problems, fmt.Sprintf("code %q, want method_not_allowed", e.Code))
	}
	return problems
}

// embedded applies the two OpenAPI 3.1 keywords the contract uses that
// kin-openapi's fast validator ignores (keywords.go): propertyNames, and
// contentSchema for a string whose contentMediaType is JSON (the signed
// assignment's payload), decoded per its contentEncoding. (JSON Schema
// 2020-12 makes content* annotations; the contract means them.)
func (s *Spec) embedded(ref *openapi3.SchemaRef, v any, at string) []string {
	if ref == nil || ref.Value == nil {
		return nil
	}
	sch := ref.Value
	var problems []string
	if obj, ok := v.(map[string]any); ok && sch.PropertyNames != nil && sch.PropertyNames.Value != nil {
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			if err := sch.PropertyNames.Value.VisitJSON(key, s.schemaOptions()...); err != nil {
				problems = append(problems, fmt.Sprintf("%s: property name %q doesn't match propertyNames: %s", where(at), key, oneLine(err.Error())))
			}
		}
	}
	if str, ok := v.(string); ok && sch.ContentSchema != nil && isJSON(sch.ContentMediaType) {
		raw := []byte(str)
		if strings.EqualFold(sch.ContentEncoding, "base64") {
			var err error
			if raw, err = base64.StdEncoding.DecodeString(str); err != nil {
				return []string{fmt.Sprintf("%s is not base64: %v", where(at), err)}
			}
		}
		var inner any
		if err := json.Unmarshal(raw, &inner); err != nil {
			return []string{fmt.Sprintf("%s does not hold JSON: %v", where(at), err)}
		}
		if err := sch.ContentSchema.Value.VisitJSON(inner, s.schemaOptions()...); err != nil {
			problems = append(problems, fmt.Sprintf("%s (decoded) doesn't match its contentSchema: %s", where(at), oneLine(err.Error())))
		}
		problems = append(problems, s.embedded(sch.ContentSchema, inner, at+"(decoded)")...)
	}
	switch v := v.(type) {
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(v)) {
			if p, ok := sch.Properties[name]; ok {
				problems = append(problems, s.embedded(p, v[name], at+"/"+name)...)
			} else if ap := sch.AdditionalProperties.Schema; ap != nil {
				problems = append(problems, s.embedded(ap, v[name], at+"/"+name)...)
			}
		}
	case []any:
		for i, x := range v {
			problems = append(problems, s.embedded(sch.Items, x, at+"/"+strconv.Itoa(i))...)
		}
	}
	for _, sub := range sch.AllOf {
		problems = append(problems, s.embedded(sub, v, at)...)
	}
	return problems
}

func where(at string) string {
	if at == "" {
		return "the body"
	}
	return at
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

func isJSON(media string) bool {
	return media == "application/json" || strings.HasSuffix(media, "+json")
}

// textual media types are read and validated; others (blobs) are checked
// for status, headers and Content-Type only.
func textual(media string) bool {
	return isJSON(media) || media == "text/plain"
}

// flatten lists the errors of an openapi3filter result, one line each
// (an error that wraps several keeps them on its line, after its reason).
func flatten(err error) []string {
	me, ok := err.(openapi3.MultiError)
	if !ok {
		return []string{oneLine(err.Error())}
	}
	var out []string
	for _, e := range me {
		out = append(out, flatten(e)...)
	}
	return out
}

// oneLine puts an error on one line, without the schema dumps of
// kin-openapi's messages (the value stays, shortened).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	for {
		i := strings.Index(s, " Schema: ")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i+len(" Schema: "):]
		j := strings.Index(s, " Value: ")
		if j < 0 {
			break
		}
		s = s[j+len(" Value: "):]
		end := strings.Index(s, " | ")
		if end < 0 {
			end = len(s)
		}
		val := s[:end]
		if len(val) > 120 {
			val = val[:117] + "..."
		}
		b.WriteString(" (value " + val + ")")
		s = s[end:]
	}
	out := b.String()
	if len(out) > 1000 {
		out = out[:997] + "..."
	}
	return out
}
