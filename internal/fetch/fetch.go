// Package fetch streams firmware images from http(s) URLs, S3 buckets
// (s3://, minio-go) and OCI registries (oci://, oras-go) with hard size
// limits and timeouts, and classifies failures as permanent or retryable.
//
// Every connection, redirects and registry token endpoints included, goes
// through one transport whose dialer enforces an egress policy
// (internal/egress) on the address actually connected to.
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

	"golang.org/x/net/http/httpproxy"

	"github.com/otaflow/otaflow/internal/egress"
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
	// ErrUnsupportedScheme is returned for URLs whose scheme is not http,
	// https, s3 or oci, and for redirects to anything but http or https.
	ErrUnsupportedScheme = errors.New("unsupported URL scheme")
	// ErrInvalidURL is returned for URLs that cannot be parsed or lack what
	// their scheme needs (a host, s3://bucket/key, an OCI tag or digest).
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
// URL is unusable, the egress policy refuses it, the credentials do not fit
// the scheme, or the content does not match what was asked for. Network
// errors, timeouts, HTTP statuses and refused credentials are not
// permanent: a 404 may be an image that has not been uploaded yet, a 403 a
// grant that has not propagated.
func IsPermanent(err error) bool {
	var tooLarge *TooLargeError
	var mismatch *SizeMismatchError
	var digest *DigestMismatchError
	var forbidden *egress.ForbiddenError
	return errors.As(err, &tooLarge) ||
		errors.As(err, &mismatch) ||
		errors.As(err, &digest) ||
		errors.As(err, &forbidden) ||
		errors.Is(err, ErrUnsupportedScheme) ||
		errors.Is(err, ErrInvalidURL) ||
		errors.Is(err, ErrCredentials) ||
		errors.Is(err, ErrArtifact)
}

// Options configures a Fetcher. Zero values select the defaults.
type Options struct {
	MaxBytes              int64         // hard cap on the body; default 2 GiB
	ConnectTimeout        time.Duration // default 10s
	TLSHandshakeTimeout   time.Duration // default 10s
	ResponseHeaderTimeout time.Duration // default 30s
	IdleReadTimeout       time.Duration // no body byte for this long fails the read; default 60s
	UserAgent             string        // default "otaflow"
	// Egress decides which addresses may be connected to; nil is
	// egress.Default() (no loopback, link-local, metadata or
	// cluster-internal addresses).
	Egress *egress.Policy
	// Resolver resolves host names for the egress dialer; default the
	// system resolver.
	Resolver egress.Resolver
	// Proxy configures HTTP proxies; nil reads HTTP_PROXY, HTTPS_PROXY and
	// NO_PROXY. Connections to the proxies are not checked (the operator
	// configured them); the targets are checked by name or literal address
	// before a request is handed to a proxy.
	Proxy *httpproxy.Config
	// Transport replaces the dedicated transport, e.g. in tests. The
	// connect, TLS and response header timeouts and the egress check at
	// connect time then do not apply.
	Transport http.RoundTripper
}

// Fetcher downloads images. It is safe for concurrent use.
type Fetcher struct {
	transport http.RoundTripper
	client    *http.Client
	policy    *egress.Policy
	maxBytes  int64
	idle      time.Duration
	userAgent string
}

// New returns a Fetcher with its own connection pool; it does not share
// http.DefaultTransport, whose timeouts are unsuitable. HTTP, S3 and OCI
// fetches all use that pool and its egress-checking dialer.
func New(opts Options) *Fetcher {
	opts = withDefaults(opts)
	f := &Fetcher{
		policy:    opts.Egress,
		maxBytes:  opts.MaxBytes,
		idle:      opts.IdleReadTimeout,
		userAgent: opts.UserAgent,
	}
	rt := opts.Transport
	if rt == nil {
		proxy := opts.Proxy
		if proxy == nil {
			proxy = httpproxy.FromEnvironment()
		}
		dialer := &egress.Dialer{
			Policy:    opts.Egress,
			Resolver:  opts.Resolver,
			Timeout:   opts.ConnectTimeout,
			KeepAlive: 30 * time.Second,
			Trusted:   proxyAddrs(proxy),
		}
		rt = &http.Transport{
			Proxy:                 f.proxyFunc(proxy.ProxyFunc()),
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
	f.transport = rt
	f.client = &http.Client{Transport: rt, CheckRedirect: f.checkRedirect}
	return f
}

// proxyFunc hands requests to the configured proxy, after checking their
// target as far as possible without resolving it: the proxy resolves it.
func (f *Fetcher) proxyFunc(next func(*url.URL) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		p, err := next(req.URL)
		if err != nil || p == nil {
			return p, err
		}
		if _, err := f.policy.CheckHost(req.URL.Hostname()); err != nil {
			return nil, err
		}
		return p, nil
	}
}

// proxyAddrs are the host:port addresses of the configured proxies, as
// http.Transport dials them.
func proxyAddrs(c *httpproxy.Config) map[string]bool {
	addrs := map[string]bool{}
	for _, raw := range []string{c.HTTPProxy, c.HTTPSProxy} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			// httpproxy also accepts a bare host[:port].
			if u, err = url.Parse("http://" + raw); err != nil || u.Host == "" {
				continue
			}
		}
		port := u.Port()
		if port == "" {
			switch u.Scheme {
			case "https":
				port = "443"
			case "socks5", "socks5h":
				port = "1080"
			default:
				port = "80"
			}
		}
		addrs[net.JoinHostPort(u.Hostname(), port)] = true
	}
	return addrs
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
	if o.Egress == nil {
		o.Egress = egress.Default()
	}
	return o
}

// CloseIdleConnections closes pooled connections that are not in use.
func (f *Fetcher) CloseIdleConnections() {
	f.client.CloseIdleConnections()
}

// checkRedirect follows http(s) redirects the egress policy admits by name
// (the dialer checks the addresses), and drops the Authorization header
// once the chain has left the first request's origin (scheme, host and
// port), for good: credentials from a Secret are for that host only.
// net/http rebuilds each hop's headers from the first request, so the check
// is against the first request, not the previous hop.
func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	switch req.URL.Scheme {
	case "http", "https":
	default:
		return fmt.Errorf("redirect to %s: %w %q: only http and https redirects are followed", redact(req.URL), ErrUnsupportedScheme, req.URL.Scheme)
	}
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", MaxRedirects, ErrTooManyRedirects)
	}
	if _, err := f.policy.CheckHost(req.URL.Hostname()); err != nil {
		return fmt.Errorf("redirect to %s: %w", redact(req.URL), err)
	}
	if leftOrigin(via, req) {
		req.Header.Del("Authorization")
	}
	return nil
}

func leftOrigin(via []*http.Request, req *http.Request) bool {
	for _, r := range via[1:] {
		if !sameOrigin(via[0].URL, r.URL) {
			return true
		}
	}
	return !sameOrigin(via[0].URL, req.URL)
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && canonicalHost(a) == canonicalHost(b)
}

// canonicalHost is host:port with the scheme's default port made explicit.
func canonicalHost(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// Open starts a fetch of rawURL without credentials or source options;
// see Fetch. size is the announced size, or -1.
func (f *Fetcher) Open(ctx context.Context, rawURL string, expectedSize int64) (body io.ReadCloser, size int64, err error) {
	img, err := f.Fetch(ctx, Source{URL: rawURL, ExpectedSize: expectedSize})
	if err != nil {
		return nil, -1, err
	}
	return img.Body, img.Size, nil
}

// openHTTP starts a GET of an http(s) URL.
func (f *Fetcher) openHTTP(ctx context.Context, u *url.URL, src Source) (*Image, error) {
	safeURL := redact(u)
	if src.Credentials != nil && u.User != nil {
		return nil, fmt.Errorf("fetch %s: %w: credentials both in the URL and in the Secret", safeURL, ErrInvalidURL)
	}
	// The request context is cancelled by the idle timer, by Close, or when
	// ctx is done.
	reqCtx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch %s: %w: %s", safeURL, ErrInvalidURL, parseErrorReason(err))
	}
	req.Header.Set("User-Agent", f.userAgent)
	req.Header.Set("Accept-Encoding", "identity")
	if c := src.Credentials; c != nil {
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		} else {
			req.SetBasicAuth(c.Username, c.Password)
		}
	}

	resp, err := f.client.Do(req)
	if err != nil {
		cancel(nil)
		// *url.Error would print the URL with the user name; replace it.
		return nil, fmt.Errorf("GET %s: %w", safeURL, unwrapURLError(err))
	}
	fail := func(err error) (*Image, error) {
		resp.Body.Close()
		cancel(nil)
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		statusErr := &HTTPStatusError{URL: safeURL, StatusCode: resp.StatusCode}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fail(fmt.Errorf("%w: %w", ErrUnauthorized, statusErr))
		}
		return fail(statusErr)
	}
	if err := f.checkSize(safeURL, "Content-Length", resp.ContentLength, src.ExpectedSize); err != nil {
		return fail(err)
	}
	return &Image{
		Body: f.capBody(ctx, reqCtx, cancel, resp.Body, safeURL, src),
		Size: resp.ContentLength,
	}, nil
}

// checkSize refuses an announced size (-1: unknown) that breaks the
// expected size or the limit, before any byte is read.
func (f *Fetcher) checkSize(name, what string, size, expected int64) error {
	if size < 0 {
		return nil
	}
	switch {
	case expected >= 0 && size != expected:
		return fmt.Errorf("fetch %s: %s: %w", name, what, &SizeMismatchError{Expected: expected, Got: size})
	case size > f.maxBytes:
		return fmt.Errorf("fetch %s: %w", name, &TooLargeError{Limit: f.maxBytes, Size: size})
	}
	return nil
}

// capBody wraps a response body in the size limits and the idle timer.
// reqCtx must be the context of the requests that produce rc, and cancel
// its cancel function.
func (f *Fetcher) capBody(ctx, reqCtx context.Context, cancel context.CancelCauseFunc, rc io.ReadCloser, name string, src Source) *cappedBody {
	b := &cappedBody{
		rc:       rc,
		ctx:      ctx,
		reqCtx:   reqCtx,
		cancel:   cancel,
		url:      name,
		limit:    f.maxBytes,
		expected: src.ExpectedSize,
		idle:     f.idle,
		creds:    src.Credentials,
	}
	if src.ExpectedSize >= 0 {
		b.limit = src.ExpectedSize
	}
	b.timer = time.AfterFunc(f.idle, func() { cancel(ErrIdleTimeout) })
	b.timer.Stop()
	return b
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
	creds    *Credentials // scrubbed from errors

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
	return scrub(fmt.Errorf("read body of %s: %w", b.url, err), b.creds)
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
