package contract

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// ExemptHeader marks one request as invalid on purpose (on a request) or
// one answer as off-contract on purpose (on an answer); its value says
// why. The checker at the receiving end removes it: Handler from requests,
// before the server's handler sees them; Wrap from answers, before the
// client sees them.
const ExemptHeader = "X-Otaflow-Contract-Exempt"

// DefaultBodyLimit bounds how much of a request body a Checker reads to
// validate it.
const DefaultBodyLimit = 1 << 20

// answerLimit bounds how much of a JSON or text answer is read to validate
// it (blobs are not read).
const answerLimit = 1 << 20

type exemptKey struct{}

// Exempt marks the requests made with ctx as invalid on purpose: they are
// not held to the contract as long as the server refuses them (4xx); their
// answers are. reason says why, for the report.
func Exempt(ctx context.Context, reason string) context.Context {
	if reason == "" {
		reason = "unspecified"
	}
	return context.WithValue(ctx, exemptKey{}, reason)
}

// ExemptReason is the reason Exempt put in ctx, "" when none.
func ExemptReason(ctx context.Context) string {
	r, _ := ctx.Value(exemptKey{}).(string)
	return r
}

// ExemptResponse marks an answer (of a fake server) as off-contract on
// purpose; reason says why. The request is still validated.
func ExemptResponse(h http.Header, reason string) {
	if reason == "" {
		reason = "unspecified"
	}
	h.Set(ExemptHeader, reason)
}

// Checker validates exchanges against a Spec and collects violations. It
// is safe for concurrent use.
type Checker struct {
	spec *Spec
	// BodyLimit bounds the bytes of a request body read for validation; a
	// longer body is a violation (the protocol's are at most 16 KiB).
	BodyLimit int64
	// Canonical, when set, is how the server reads a request path before
	// routing it (the hawkBit DDI front collapses repeated slashes): the
	// operation is found for Canonical(path). Set it before use.
	Canonical func(path string) string

	mu         sync.Mutex
	violations []Violation
	dropped    int // violations past maxKept (a long fuzzing run)
	exchanges  int
	allInvalid string
}

// maxKept bounds the violations a Checker keeps between checks.
const maxKept = 1000

// New returns a Checker for spec.
func New(spec *Spec) *Checker {
	return &Checker{spec: spec, BodyLimit: DefaultBodyLimit}
}

// For returns a Checker for docs/openapi.yaml that fails t at cleanup when
// anything it saw disagrees with the contract. It fails t at once when the
// specification does not load.
func For(t testing.TB) *Checker {
	t.Helper()
	spec, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	c := New(spec)
	t.Cleanup(func() { c.Check(t) })
	return c
}

// Spec is the checker's specification.
func (c *Checker) Spec() *Spec { return c.spec }

// InvalidOnPurpose treats every request through c as Exempt with reason:
// for tests, in files that cannot mark their requests one by one, whose
// purpose is sending invalid requests. Such requests must still be
// refused (4xx), and every answer is still validated.
func (c *Checker) InvalidOnPurpose(reason string) {
	c.mu.Lock()
	c.allInvalid = reason
	c.mu.Unlock()
}

// Violations returns what disagreed so far.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations)
}

// Exchanges is how many exchanges were validated.
func (c *Checker) Exchanges() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exchanges
}

// Reset forgets the violations so far.
func (c *Checker) Reset() {
	c.mu.Lock()
	c.violations, c.dropped = nil, 0
	c.mu.Unlock()
}

// Check fails t with the violations so far, and forgets them.
func (c *Checker) Check(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	v, dropped := c.violations, c.dropped
	c.violations, c.dropped = nil, 0
	c.mu.Unlock()
	if len(v) > 0 {
		msg := Report(v, c.spec.Path)
		if dropped > 0 {
			msg += fmt.Sprintf("\n  (%d more violations were not kept)", dropped)
		}
		t.Errorf("%s", msg)
	}
}

// Report formats violations, identical ones once with their count.
func Report(v []Violation, spec string) string {
	if spec == "" {
		spec = "the contract"
	}
	var order []string
	count := map[string]int{}
	for _, x := range v {
		s := x.String()
		if count[s] == 0 {
			order = append(order, s)
		}
		count[s]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d exchange(s) disagree with %s:", len(v), spec)
	const most = 30
	for i, s := range order {
		if i == most {
			fmt.Fprintf(&b, "\n  … and %d more", len(order)-most)
			break
		}
		if n := count[s]; n > 1 {
			fmt.Fprintf(&b, "\n  %s (%d times)", s, n)
		} else {
			fmt.Fprintf(&b, "\n  %s", s)
		}
	}
	return b.String()
}

func (c *Checker) limit() int64 {
	if c.BodyLimit > 0 {
		return c.BodyLimit
	}
	return DefaultBodyLimit
}

func (c *Checker) record(ex *exchange) {
	c.mu.Lock()
	if ex.exempt == "" {
		ex.exempt = c.allInvalid
	}
	c.mu.Unlock()
	ex.limit = c.limit()
	if c.Canonical != nil {
		if p := c.Canonical(ex.url.Path); p != ex.url.Path {
			ex.routePath = p
		}
	}
	v := c.spec.check(ex)
	c.mu.Lock()
	c.exchanges++
	keep := max(0, min(len(v), maxKept-len(c.violations)))
	c.violations = append(c.violations, v[:keep]...)
	c.dropped += len(v) - keep
	c.mu.Unlock()
}

// readHead reads at most limit+1 bytes of r: all the bytes read (to give
// back to the reader), the first limit of them (to validate), whether
// there were more than limit, and the read error other than io.EOF.
func readHead(r io.Reader, limit int64) (read, head []byte, over bool, err error) {
	read, err = io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(read)) > limit {
		return read, read[:limit], true, err
	}
	return read, read, false, err
}

// replay gives back the bytes read for validation, then the rest of the
// original body, or the error that ended the read.
type replay struct {
	head   *bytes.Reader
	err    error
	rest   io.Reader
	closer io.Closer
}

func newReplay(head []byte, err error, orig io.ReadCloser) *replay {
	return &replay{head: bytes.NewReader(head), err: err, rest: orig, closer: orig}
}

func (r *replay) Read(p []byte) (int, error) {
	if r.head.Len() > 0 {
		return r.head.Read(p)
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.rest.Read(p)
}

func (r *replay) Close() error { return r.closer.Close() }

// Wrap returns a RoundTripper that sends through next (the default
// transport when nil) and validates every request and answer.
func (c *Checker) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{c: c, next: next}
}

// Client returns a copy of hc (a new client when nil) whose transport is
// wrapped by c.
func (c *Checker) Client(hc *http.Client) *http.Client {
	out := &http.Client{}
	if hc != nil {
		*out = *hc
	}
	out.Transport = c.Wrap(out.Transport)
	return out
}

type transport struct {
	c    *Checker
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	limit := t.c.limit()
	u := *req.URL
	ex := &exchange{method: req.Method, url: &u, host: req.Host, header: req.Header.Clone(), exempt: ExemptReason(req.Context())}
	if ex.method == "" {
		ex.method = http.MethodGet
	}
	if r := ex.header.Get(ExemptHeader); r != "" {
		ex.exempt = r
	}
	ex.header.Del(ExemptHeader)
	out := req // the mark goes on, for a Handler on the server side
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody != nil {
			if rc, err := req.GetBody(); err == nil {
				_, ex.body, ex.bodyOver, ex.bodyErr = readHead(rc, limit)
				_ = rc.Close()
			} else {
				ex.bodyErr = err
			}
		} else {
			read, head, over, err := readHead(req.Body, limit)
			ex.body, ex.bodyOver, ex.bodyErr = head, over, err
			if out == req {
				out = req.Clone(req.Context())
			}
			out.Body = newReplay(read, err, req.Body)
		}
	}
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		t.c.record(ex)
		return resp, err
	}
	ex.answered, ex.status = true, resp.StatusCode
	if r := resp.Header.Get(ExemptHeader); r != "" {
		ex.respExempt = r
		resp.Header.Del(ExemptHeader)
	}
	ex.respHeader = resp.Header.Clone()
	if req.Method != http.MethodHead && resp.Body != nil && textual(mediaType(resp.Header.Get("Content-Type"))) {
		read, head, over, err := readHead(resp.Body, answerLimit)
		ex.respBody, ex.respBodyOver, ex.respBodyErr = head, over, err
		ex.respBodyLen = int64(len(read))
		resp.Body = newReplay(read, err, resp.Body)
	} else if req.Method != http.MethodHead {
		ex.respBodyLen = max(resp.ContentLength, 0)
	}
	t.c.record(ex)
	return resp, nil
}

// CloseIdleConnections closes the wrapped transport's idle connections.
func (t *transport) CloseIdleConnections() {
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Forward returns a RoundTripper that validates nothing but sends the
// mark of Exempt as ExemptHeader, for a client whose server is wrapped by
// Handler (a context does not cross the connection).
func Forward(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return forward{next}
}

type forward struct{ next http.RoundTripper }

func (f forward) RoundTrip(req *http.Request) (*http.Response, error) {
	if r := ExemptReason(req.Context()); r != "" {
		req = req.Clone(req.Context())
		req.Header.Set(ExemptHeader, r)
	}
	return f.next.RoundTrip(req)
}

func (f forward) CloseIdleConnections() {
	if ci, ok := f.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Handler returns middleware that validates every request to next and
// next's answer to it.
func (c *Checker) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := c.limit()
		u := *r.URL
		ex := &exchange{method: r.Method, url: &u, host: r.Host, header: r.Header.Clone(), exempt: ExemptReason(r.Context())}
		if reason := ex.header.Get(ExemptHeader); reason != "" {
			ex.exempt = reason
		}
		ex.header.Del(ExemptHeader)
		in := r.Clone(r.Context()) // r itself stays the server's
		in.Header.Del(ExemptHeader)
		if r.Body != nil && r.Body != http.NoBody {
			read, head, over, err := readHead(r.Body, limit)
			ex.body, ex.bodyOver, ex.bodyErr = head, over, err
			in.Body = newReplay(read, err, r.Body)
		}
		rec := &recorder{ResponseWriter: w, limit: answerLimit}
		next.ServeHTTP(rec, in)
		rec.settle()
		ex.answered, ex.status, ex.respHeader = true, rec.status, rec.header
		if reason := ex.respHeader.Get(ExemptHeader); reason != "" {
			ex.respExempt = reason
		}
		ex.respBody, ex.respBodyOver, ex.respBodyLen = rec.body.Bytes(), rec.over, rec.n
		c.record(ex)
	})
}

// recorder passes an answer through and keeps its status, its headers as
// sent and the start of its body.
type recorder struct {
	http.ResponseWriter
	limit   int64
	status  int
	header  http.Header
	capture bool // a JSON or text answer, read to be validated
	body    bytes.Buffer
	over    bool
	n       int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.take(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

// take keeps the status and the headers as they are sent.
func (r *recorder) take(code int) {
	r.status = code
	r.header = r.ResponseWriter.Header().Clone()
	r.capture = textual(mediaType(r.header.Get("Content-Type")))
	// A mark on the answer goes on, for a Wrap on the client side.
}

func (r *recorder) Write(b []byte) (int, error) {
	r.settle()
	r.n += int64(len(b))
	if r.capture {
		room := r.limit - int64(r.body.Len())
		if int64(len(b)) > room {
			r.over = true
			if room > 0 {
				r.body.Write(b[:room])
			}
		} else {
			r.body.Write(b)
		}
	}
	return r.ResponseWriter.Write(b)
}

// settle takes the implicit 200 of an answer written without WriteHeader.
func (r *recorder) settle() {
	if r.status == 0 {
		r.take(http.StatusOK)
	}
}

// Flush lets streaming answers through.
func (r *recorder) Flush() {
	r.settle()
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
