// Package fetch streams firmware images from http(s) URLs with hard size
// limits and timeouts, and classifies failures as permanent or retryable.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults used for zero Options fields.
const (
	DefaultMaxBytes              int64 = 2 << 30
	DefaultConnectTimeout              = 10 * time.Second
	DefaultTLSHandshakeTimeout         = 10 * time.Second
	DefaultResponseHeaderTimeout       = 30 * time.Second
	DefaultIdleReadTimeout             = 60 * time.Second
	DefaultUserAgent                   = "otaflow"

	// MaxRedirects is the number of redirects followed before giving up.
	MaxRedirects = 5
)

var (
	// ErrUnsupportedScheme is returned for URLs (or redirect targets) whose
	// scheme is not http or https.
	ErrUnsupportedScheme = errors.New("unsupported URL scheme")
	// ErrInvalidURL is returned for URLs that cannot be parsed or have no
	// host.
	ErrInvalidURL = errors.New("invalid URL")
	// ErrTooManyRedirects is returned after MaxRedirects redirects. It is
	// not permanent: the server's redirect configuration may be fixed.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrIdleTimeout is returned when no body bytes arrive for
	// Options.IdleReadTimeout. Like other network timeouts it has a
	// Timeout method that returns true.
	ErrIdleTimeout error = idleTimeoutError{}
)

type idleTimeoutError struct{}

func (idleTimeoutError) Error() string { return "idle read timeout" }
func (idleTimeoutError) Timeout() bool { return true }

// Temporary completes net.Error; a later attempt may succeed.
func (idleTimeoutError) Temporary() bool { return true }

// TooLargeError reports a response larger than the allowed maximum.
type TooLargeError struct {
	Limit int64
	Size  int64 // announced Content-Length, or -1 if unknown
}

func (e *TooLargeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("response exceeds the limit of %d bytes", e.Limit)
	}
	return fmt.Sprintf("response of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// SizeMismatchError reports a response whose size differs from the size the
// caller expected. When the body ran past the expected size, Got is the
// number of bytes received before reading stopped, not the full size.
type SizeMismatchError struct {
	Expected int64
	Got      int64
}

func (e *SizeMismatchError) Error() string {
	return fmt.Sprintf("size mismatch: expected %d bytes, got %d", e.Expected, e.Got)
}

// HTTPStatusError reports a response status other than 200 OK. URL never
// contains credentials.
type HTTPStatusError struct {
	URL        string
	StatusCode int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("GET %s: unexpected status %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// IsPermanent reports whether retrying the same request cannot succeed: the
// URL is unusable or the content does not match what was asked for. Network
// errors, timeouts and HTTP statuses are not permanent; a 404 may be an
// image that has not been uploaded yet.
func IsPermanent(err error) bool {
	var tooLarge *TooLargeError
	var mismatch *SizeMismatchError
	return errors.As(err, &tooLarge) ||
		errors.As(err, &mismatch) ||
		errors.Is(err, ErrUnsupportedScheme) ||
		errors.Is(err, ErrInvalidURL)
}

// Options configures a Fetcher. Zero values select the defaults.
type Options struct {
	MaxBytes              int64         // hard cap on the body; default 2 GiB
	ConnectTimeout        time.Duration // default 10s
	TLSHandshakeTimeout   time.Duration // default 10s
	ResponseHeaderTimeout time.Duration // default 30s
	IdleReadTimeout       time.Duration // no body byte for this long fails the read; default 60s
	UserAgent             string        // default "otaflow"
	// Transport replaces the dedicated transport, e.g. in tests. The
	// connect, TLS and response header timeouts then do not apply.
	Transport http.RoundTripper
}

// Fetcher downloads images. It is safe for concurrent use.
type Fetcher struct {
	client    *http.Client
	maxBytes  int64
	idle      time.Duration
	userAgent string
}

// New returns a Fetcher with its own connection pool; it does not share
// http.DefaultTransport, whose timeouts are unsuitable.
func New(opts Options) *Fetcher {
	opts = withDefaults(opts)
	rt := opts.Transport
	if rt == nil {
		dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   opts.TLSHandshakeTimeout,
			ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          10,
			ForceAttemptHTTP2:     true,
			// Images must arrive byte for byte; transparent gzip would
			// also hide the real Content-Length.
			DisableCompression: true,
		}
	}
	return &Fetcher{
		client: &http.Client{
			Transport:     rt,
			CheckRedirect: checkRedirect,
		},
		maxBytes:  opts.MaxBytes,
		idle:      opts.IdleReadTimeout,
		userAgent: opts.UserAgent,
	}
}

func withDefaults(o Options) Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if o.IdleReadTimeout <= 0 {
		o.IdleReadTimeout = DefaultIdleReadTimeout
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	return o
}

// CloseIdleConnections closes pooled connections that are not in use.
func (f *Fetcher) CloseIdleConnections() {
	f.client.CloseIdleConnections()
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if err := checkScheme(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redact(req.URL), err)
	}
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", MaxRedirects, ErrTooManyRedirects)
	}
	return nil
}

func checkScheme(u *url.URL) error {
	switch u.Scheme {
	case "http", "https":
		return nil
	case "":
		return fmt.Errorf("%w: missing scheme", ErrInvalidURL)
	case "oci":
		return fmt.Errorf("%w %q: oci:// is not supported yet, use http or https", ErrUnsupportedScheme, u.Scheme)
	default:
		return fmt.Errorf("%w %q: only http and https are supported", ErrUnsupportedScheme, u.Scheme)
	}
}

// Open starts a GET of rawURL. expectedSize < 0 means unknown.
//
// The returned body is capped at min(expectedSize, MaxBytes) bytes: past
// MaxBytes it fails with a *TooLargeError, past or short of a known
// expectedSize with a *SizeMismatchError. A Content-Length that already
// violates these limits is refused before any body is read. size is the
// Content-Length, or -1 if the server did not send one. Reads fail with
// ErrIdleTimeout when no byte arrives for IdleReadTimeout, and stop when ctx
// is done. The caller must close body.
//
// Errors never contain URL credentials or query strings.
func (f *Fetcher) Open(ctx context.Context, rawURL string, expectedSize int64) (body io.ReadCloser, size int64, err error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, -1, err
	}
	safeURL := redact(u)
	if expectedSize > f.maxBytes {
		return nil, -1, fmt.Errorf("fetch %s: %w", safeURL, &TooLargeError{Limit: f.maxBytes, Size: expectedSize})
	}

	// The request context is cancelled by the idle timer, by Close, or when
	// ctx is done.
	reqCtx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel(nil)
		return nil, -1, fmt.Errorf("fetch %s: %w: %s", safeURL, ErrInvalidURL, parseErrorReason(err))
	}
	req.Header.Set("User-Agent", f.userAgent)
	req.Header.Set("Accept-Encoding", "identity")

	resp, err := f.client.Do(req)
	if err != nil {
		cancel(nil)
		// *url.Error would print the URL with the user name; replace it.
		return nil, -1, fmt.Errorf("GET %s: %w", safeURL, unwrapURLError(err))
	}
	fail := func(err error) (io.ReadCloser, int64, error) {
		resp.Body.Close()
		cancel(nil)
		return nil, -1, err
	}
	if resp.StatusCode != http.StatusOK {
		return fail(&HTTPStatusError{URL: safeURL, StatusCode: resp.StatusCode})
	}

	size = resp.ContentLength
	if size >= 0 {
		switch {
		case expectedSize >= 0 && size != expectedSize:
			return fail(fmt.Errorf("fetch %s: Content-Length: %w", safeURL, &SizeMismatchError{Expected: expectedSize, Got: size}))
		case size > f.maxBytes:
			return fail(fmt.Errorf("fetch %s: %w", safeURL, &TooLargeError{Limit: f.maxBytes, Size: size}))
		}
	}

	b := &cappedBody{
		rc:       resp.Body,
		ctx:      ctx,
		reqCtx:   reqCtx,
		cancel:   cancel,
		url:      safeURL,
		limit:    f.maxBytes,
		expected: expectedSize,
		idle:     f.idle,
	}
	if expectedSize >= 0 {
		b.limit = expectedSize
	}
	b.timer = time.AfterFunc(f.idle, func() { cancel(ErrIdleTimeout) })
	b.timer.Stop()
	return b, size, nil
}

func parseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w: %s", ErrInvalidURL, parseErrorReason(err))
	}
	if err := checkScheme(u); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", redact(u), err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("fetch %s: %w: missing host", redact(u), ErrInvalidURL)
	}
	return u, nil
}

// parseErrorReason describes a url.Parse failure without echoing the input.
// The *url.Error quotes the whole URL, and the inner errors quote fragments:
// a password containing '/' is misparsed as a port and would be printed.
func parseErrorReason(err error) string {
	var escErr url.EscapeError
	var hostErr url.InvalidHostError
	msg := unwrapURLError(err).Error()
	switch {
	case errors.As(err, &escErr):
		return "malformed percent-escape"
	case errors.As(err, &hostErr), strings.HasPrefix(msg, "invalid host"):
		return "invalid host"
	case strings.HasPrefix(msg, "invalid port"):
		return "invalid port"
	case strings.ContainsAny(msg, "\"'`"):
		return "cannot parse"
	default:
		return msg
	}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// RedactURL returns rawURL in a form safe for logs and errors: without user
// information or fragment, and with any query replaced by a marker, since
// pre-signed URLs carry their credentials in the query.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<malformed URL>"
	}
	return redact(u)
}

func redact(u *url.URL) string {
	r := *u
	r.User = nil
	if r.RawQuery != "" || r.ForceQuery {
		r.RawQuery = "redacted"
		r.ForceQuery = false
	}
	r.Fragment, r.RawFragment = "", ""
	return r.String()
}

// cappedBody enforces size limits and the idle read timeout on a response
// body.
type cappedBody struct {
	rc       io.ReadCloser
	ctx      context.Context // caller's context
	reqCtx   context.Context
	cancel   context.CancelCauseFunc
	timer    *time.Timer
	url      string
	limit    int64
	expected int64 // -1 if unknown
	idle     time.Duration

	n         int64
	err       error // sticky
	closeOnce sync.Once
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// Read one byte past the limit so an oversized body is detected
	// without waiting for EOF.
	if room := b.limit - b.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	// Only time spent waiting on the network counts as idle; a consumer
	// slowly writing to disk between reads must not trip the timer.
	b.timer.Reset(b.idle)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	b.n += int64(n)

	if b.n > b.limit {
		over := int(b.n - b.limit)
		b.err = b.wrap(b.overLimit())
		return n - over, b.err
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		if b.expected >= 0 && b.n != b.expected {
			b.err = b.wrap(&SizeMismatchError{Expected: b.expected, Got: b.n})
			return n, b.err
		}
		return n, io.EOF
	case context.Cause(b.reqCtx) == ErrIdleTimeout && b.ctx.Err() == nil:
		b.err = b.wrap(fmt.Errorf("no data received for %v: %w", b.idle, ErrIdleTimeout))
	case b.ctx.Err() != nil:
		b.err = b.wrap(context.Cause(b.ctx))
	default:
		b.err = b.wrap(err)
	}
	return n, b.err
}

func (b *cappedBody) overLimit() error {
	if b.expected >= 0 {
		return &SizeMismatchError{Expected: b.expected, Got: b.n}
	}
	return &TooLargeError{Limit: b.limit, Size: -1}
}

func (b *cappedBody) wrap(err error) error {
	return fmt.Errorf("read body of %s: %w", b.url, err)
}

func (b *cappedBody) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.timer.Stop()
		err = b.rc.Close()
		b.cancel(nil)
	})
	return err
}
