package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// newServer starts a test server. Handlers that stall should wait on
// release, which is closed before the server shuts down.
func newServer(t *testing.T, release chan struct{}, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if release != nil {
		t.Cleanup(func() { close(release) })
	}
	return srv
}

// loopback admits the test servers, which listen on 127.0.0.1.
var loopback = mustPolicy(egress.Config{Allow: []string{"127.0.0.0/8", "::1"}})

func mustPolicy(c egress.Config) *egress.Policy {
	p, err := egress.New(c)
	if err != nil {
		panic(err)
	}
	return p
}

// newFetcher returns a fetcher for the test servers: unless opts says
// otherwise, loopback is allowlisted and no proxy is used.
func newFetcher(t *testing.T, opts fetch.Options) *fetch.Fetcher {
	t.Helper()
	if opts.Egress == nil {
		opts.Egress = loopback
	}
	if opts.Proxy == nil {
		opts.Proxy = &httpproxy.Config{}
	}
	f := fetch.New(opts)
	t.Cleanup(f.CloseIdleConnections)
	return f
}

// stall flushes what the handler wrote so far and then sends nothing more
// until the client goes away or the test ends.
func stall(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-release:
	}
}

// writeChunked sends content without a Content-Length.
func writeChunked(w http.ResponseWriter, content []byte) {
	for len(content) > 0 {
		n := min(len(content), 1000)
		w.Write(content[:n])
		w.(http.Flusher).Flush()
		content = content[n:]
	}
}

func TestOpenStreamsBody(t *testing.T) {
	content := randomBytes(1 << 20)
	tests := []struct {
		name      string
		chunked   bool
		expected  int64
		userAgent string
		wantSize  int64
		wantAgent string
	}{
		{"content-length, size unknown", false, -1, "", int64(len(content)), "otaflow"},
		{"content-length, size expected", false, int64(len(content)), "", int64(len(content)), "otaflow"},
		{"chunked, size unknown", true, -1, "", -1, "otaflow"},
		{"chunked, size expected", true, int64(len(content)), "otaflow-controller/1.0", -1, "otaflow-controller/1.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotAgent string
			srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				gotAgent = r.Header.Get("User-Agent")
				if tc.chunked {
					writeChunked(w, content)
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(content)))
				w.Write(content)
			})
			f := newFetcher(t, fetch.Options{UserAgent: tc.userAgent})
			body, size, err := f.Open(t.Context(), srv.URL+"/fw.bin", tc.expected)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer body.Close()
			if size != tc.wantSize {
				t.Errorf("size = %d, want %d", size, tc.wantSize)
			}
			var got bytes.Buffer
			if _, err := io.CopyBuffer(&got, body, make([]byte, 777)); err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got.Bytes(), content) {
				t.Errorf("read %d bytes that differ from the %d served", got.Len(), len(content))
			}
			if gotAgent != tc.wantAgent {
				t.Errorf("User-Agent = %q, want %q", gotAgent, tc.wantAgent)
			}
		})
	}
}

func TestOpenRefusesContentLengthBeforeReading(t *testing.T) {
	tests := []struct {
		name          string
		maxBytes      int64
		expected      int64
		contentLength int
		wantErr       error
	}{
		{"over max bytes", 100, -1, 1000, &fetch.TooLargeError{Limit: 100, Size: 1000}},
		{"over expected", 0, 500, 1000, &fetch.SizeMismatchError{Expected: 500, Got: 1000}},
		{"under expected", 0, 2000, 1000, &fetch.SizeMismatchError{Expected: 2000, Got: 1000}},
		{"over max with expected", 100, 100, 1000, &fetch.SizeMismatchError{Expected: 100, Got: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := newServer(t, release, func(w http.ResponseWriter, r *http.Request) {
				// Announce the size, then never send the body: Open only
				// returns if it decides on the header alone.
				w.Header().Set("Content-Length", strconv.Itoa(tc.contentLength))
				w.WriteHeader(http.StatusOK)
				stall(w, r, release)
			})
			f := newFetcher(t, fetch.Options{MaxBytes: tc.maxBytes})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			body, _, err := f.Open(ctx, srv.URL, tc.expected)
			if err == nil {
				body.Close()
				t.Fatal("Open succeeded")
			}
			assertErrorValue(t, err, tc.wantErr)
			if !fetch.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
		})
	}
}

// assertErrorValue checks that err wraps an error of want's type with the
// same field values.
func assertErrorValue(t *testing.T, err, want error) {
	t.Helper()
	switch want := want.(type) {
	case *fetch.TooLargeError:
		var got *fetch.TooLargeError
		if !errors.As(err, &got) {
			t.Fatalf("error = %v, want TooLargeError", err)
		}
		if *got != *want {
			t.Errorf("TooLargeError = %+v, want %+v", *got, *want)
		}
	case *fetch.SizeMismatchError:
		var got *fetch.SizeMismatchError
		if !errors.As(err, &got) {
			t.Fatalf("error = %v, want SizeMismatchError", err)
		}
		if *got != *want {
			t.Errorf("SizeMismatchError = %+v, want %+v", *got, *want)
		}
	default:
		t.Fatalf("unexpected want type %T", want)
	}
}

func TestOpenRefusesExpectedSizeOverMax(t *testing.T) {
	requests := 0
	srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) { requests++ })
	f := newFetcher(t, fetch.Options{MaxBytes: 1000})
	_, _, err := f.Open(t.Context(), srv.URL, 1001)
	assertErrorValue(t, err, &fetch.TooLargeError{Limit: 1000, Size: 1001})
	if requests != 0 {
		t.Errorf("server saw %d requests, want 0", requests)
	}
}

func TestBodyLimitsWhileReading(t *testing.T) {
	content := randomBytes(5000)
	tests := []struct {
		name     string
		maxBytes int64
		expected int64
		send     int
		then     string // "end" or "stall"
		wantRead int
		wantErr  error // nil: clean EOF
	}{
		{"over max bytes", 1000, -1, 1500, "stall", 1000, &fetch.TooLargeError{Limit: 1000, Size: -1}},
		{"over expected", 0, 100, 1500, "stall", 100, &fetch.SizeMismatchError{Expected: 100, Got: 101}},
		{"under expected", 0, 100, 50, "end", 50, &fetch.SizeMismatchError{Expected: 100, Got: 50}},
		{"exactly expected", 0, 100, 100, "end", 100, nil},
		{"exactly max bytes", 1000, -1, 1000, "end", 1000, nil},
		{"empty, expected empty", 0, 0, 0, "end", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := newServer(t, release, func(w http.ResponseWriter, r *http.Request) {
				writeChunked(w, content[:tc.send])
				if tc.then == "stall" {
					// The limit must trip without waiting for the end.
					stall(w, r, release)
				}
			})
			f := newFetcher(t, fetch.Options{MaxBytes: tc.maxBytes})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			body, size, err := f.Open(ctx, srv.URL, tc.expected)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer body.Close()
			if tc.send > 0 && size != -1 {
				t.Errorf("size = %d, want -1 for a chunked response", size)
			}
			got, err := io.ReadAll(body)
			if len(got) != tc.wantRead || !bytes.Equal(got, content[:len(got)]) {
				t.Errorf("read %d bytes, want the first %d served", len(got), tc.wantRead)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return
			}
			assertErrorValue(t, err, tc.wantErr)
			if !fetch.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
			// The failure is sticky.
			if n, err2 := body.Read(make([]byte, 10)); n != 0 || err2 == nil {
				t.Errorf("Read after failure = %d, %v; want 0 and an error", n, err2)
			}
		})
	}
}

func TestHTTPStatusErrorsAreRetryable(t *testing.T) {
	for _, code := range []int{http.StatusNoContent, http.StatusNotFound, http.StatusForbidden, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(code)
			})
			f := newFetcher(t, fetch.Options{})
			_, _, err := f.Open(t.Context(), srv.URL+"/fw.bin", -1)
			var statusErr *fetch.HTTPStatusError
			if !errors.As(err, &statusErr) {
				t.Fatalf("error = %v, want HTTPStatusError", err)
			}
			if statusErr.StatusCode != code || statusErr.URL != srv.URL+"/fw.bin" {
				t.Errorf("HTTPStatusError = %+v, want status %d for %s", statusErr, code, srv.URL+"/fw.bin")
			}
			if fetch.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = true", err)
			}
		})
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	f := newFetcher(t, fetch.Options{ConnectTimeout: time.Second})
	_, _, err = f.Open(t.Context(), "http://"+addr+"/fw.bin", -1)
	if err == nil {
		t.Fatal("Open succeeded")
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error = %v, want a *net.OpError in the chain", err)
	}
	if fetch.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestUnusableURLsArePermanent(t *testing.T) {
	tests := []struct {
		url     string
		wantErr error
		wantMsg string
	}{
		{"file:///etc/passwd", fetch.ErrUnsupportedScheme, "use http, https, s3 or oci"},
		{"ftp://firmware.example/fw.bin", fetch.ErrUnsupportedScheme, "use http, https, s3 or oci"},
		{"oci://registry.example/Firmware:1.2.3", fetch.ErrInvalidURL, "invalid repository name"},
		{"gopher://firmware.example/", fetch.ErrUnsupportedScheme, "use http, https, s3 or oci"},
		{"oci://registry.example/firmware", fetch.ErrInvalidURL, "needs a :tag or an @sha256: digest"},
		{"s3://bucket", fetch.ErrInvalidURL, "want s3://bucket/key"},
		{"firmware.example/fw.bin", fetch.ErrInvalidURL, "missing scheme"},
		{"http:///fw.bin", fetch.ErrInvalidURL, "missing host"},
		{"http://[::1/fw.bin", fetch.ErrInvalidURL, ""},
		{"http://firmware.example:port/fw.bin", fetch.ErrInvalidURL, "invalid port"},
		{"http://firmware.example/fw\x7f.bin", fetch.ErrInvalidURL, ""},
	}
	f := newFetcher(t, fetch.Options{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request to %s", r.URL)
		return nil, errors.New("no network in this test")
	})})
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, _, err := f.Open(t.Context(), tc.url, -1)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			if !fetch.IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
		})
	}
}

func TestRedirects(t *testing.T) {
	content := []byte("firmware behind redirects")
	mux := http.NewServeMux()
	mux.HandleFunc("/hops/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			w.Write(content)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hops/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/to/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("loc"), http.StatusMovedPermanently)
	})
	srv := newServer(t, nil, mux.ServeHTTP)

	tests := []struct {
		path          string
		wantErr       error // nil: success
		wantPermanent bool
	}{
		{"/hops/0", nil, false},
		{"/hops/5", nil, false},
		{"/hops/6", fetch.ErrTooManyRedirects, false},
		{"/to/?loc=ftp://firmware.example/fw.bin", fetch.ErrUnsupportedScheme, true},
		{"/to/?loc=file:///etc/passwd", fetch.ErrUnsupportedScheme, true},
	}
	f := newFetcher(t, fetch.Options{})
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			body, _, err := f.Open(t.Context(), srv.URL+tc.path, -1)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer body.Close()
				got, err := io.ReadAll(body)
				if err != nil || !bytes.Equal(got, content) {
					t.Errorf("read %q, %v; want %q", got, err, content)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if got := fetch.IsPermanent(err); got != tc.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tc.wantPermanent)
			}
		})
	}
}

func TestIdleReadTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	release := make(chan struct{})
	srv := newServer(t, release, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first bytes"))
		stall(w, r, release)
	})
	f := newFetcher(t, fetch.Options{IdleReadTimeout: idle})
	body, _, err := f.Open(t.Context(), srv.URL, -1)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer body.Close()

	start := time.Now()
	got, err := io.ReadAll(body)
	elapsed := time.Since(start)
	if !errors.Is(err, fetch.ErrIdleTimeout) {
		t.Fatalf("read error = %v, want ErrIdleTimeout", err)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("error %v is not a net.Error with Timeout() true", err)
	}
	if string(got) != "first bytes" {
		t.Errorf("read %q before the stall, want %q", got, "first bytes")
	}
	if elapsed < idle*3/4 || elapsed > idle+2*time.Second {
		t.Errorf("timed out after %v, want about %v", elapsed, idle)
	}
	if fetch.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true", err)
	}
}

// TestIdleReadTimeoutIsNotTotalTimeout checks that only time without data
// counts: a slow steady stream and a slow consumer both outlast the timeout.
func TestIdleReadTimeoutIsNotTotalTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	tests := []struct {
		name          string
		pieces        int
		serverPause   time.Duration
		consumerPause time.Duration
	}{
		{"slow steady server", 8, idle / 4, 0},
		{"slow consumer", 2, idle / 2, 2 * idle},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				for i := range tc.pieces {
					if i > 0 {
						time.Sleep(tc.serverPause)
					}
					fmt.Fprintf(w, "piece %d;", i)
					w.(http.Flusher).Flush()
				}
			})
			f := newFetcher(t, fetch.Options{IdleReadTimeout: idle})
			body, _, err := f.Open(t.Context(), srv.URL, -1)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer body.Close()
			var got bytes.Buffer
			buf := make([]byte, 64)
			for {
				n, err := body.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("read after %q: %v", got.String(), err)
				}
				time.Sleep(tc.consumerPause)
			}
			if want := fmt.Sprintf("piece %d;", tc.pieces-1); !strings.HasSuffix(got.String(), want) {
				t.Errorf("read %q, want it to end with %q", got.String(), want)
			}
		})
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, release, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	f := newFetcher(t, fetch.Options{ResponseHeaderTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, _, err := f.Open(t.Context(), srv.URL, -1)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("error = %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("header timeout took %v", elapsed)
	}
	if fetch.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true", err)
	}
}

func TestContextCancellation(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, release, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		stall(w, r, release)
	})
	f := newFetcher(t, fetch.Options{})

	t.Run("before Open", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, _, err := f.Open(ctx, srv.URL, -1)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
	})

	t.Run("during read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		body, _, err := f.Open(ctx, srv.URL, -1)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer body.Close()
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err = io.ReadAll(body)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("read error = %v, want context.Canceled", err)
		}
		if errors.Is(err, fetch.ErrIdleTimeout) {
			t.Errorf("read error = %v, reported as idle timeout", err)
		}
		// The default idle timeout is a minute; only the cancel can end
		// the read this quickly.
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("read returned %v after cancel", elapsed)
		}
	})

	t.Run("deadline during read", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		body, _, err := f.Open(ctx, srv.URL, -1)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer body.Close()
		if _, err := io.ReadAll(body); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("read error = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestCredentialsNeverInErrors(t *testing.T) {
	secrets := []string{"alice", "s3cr3t", "t0k3n", "hunter2"}
	mux := http.NewServeMux()
	var sawAuth bool
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		sawAuth = ok && user == "alice" && pass == "s3cr3t"
		http.NotFound(w, r)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.Write(make([]byte, 5000))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		writeChunked(w, make([]byte, 5000))
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.String(), http.StatusFound)
	})
	mux.HandleFunc("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://bob:hunter2@firmware.example/fw.bin?t0k3n", http.StatusFound)
	})
	release := make(chan struct{})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("x"))
		stall(w, r, release)
	})
	srv := newServer(t, release, mux.ServeHTTP)
	withCreds := func(path string) string {
		return strings.Replace(srv.URL, "http://", "http://alice:s3cr3t@", 1) + path + "?X-Amz-Signature=t0k3n"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://alice:s3cr3t@" + l.Addr().String() + "/fw.bin?sig=t0k3n"
	l.Close()

	tests := []struct {
		name string
		url  string
		read bool // the error comes from reading the body
	}{
		{"http status", withCreds("/missing"), false},
		{"content-length too large", withCreds("/huge"), false},
		{"body too large", withCreds("/stream"), true},
		{"idle timeout", withCreds("/stall"), true},
		{"redirect loop", withCreds("/loop"), false},
		{"redirect to ftp with credentials", withCreds("/to-ftp"), false},
		{"connection refused", refused, false},
		{"unsupported scheme", "ftp://alice:s3cr3t@firmware.example/fw.bin?t0k3n", false},
		{"bad port", "http://alice:s3cr3t@firmware.example:t0k3n/fw.bin", false},
		{"slash in password", "http://alice:s3cr3t/@firmware.example/fw.bin", false},
		{"at sign in password", "http://alice:s3@cr3t@firmware.example:t0k3n/fw.bin", false},
		{"bad host", "http://alice:s3cr3t@fw%zz.t0k3n/fw.bin", false},
		{"bad escape", "http://alice:s3cr3t%zz@firmware.example/fw.bin", false},
		{"bad escape in query", "http://alice:s3cr3t@firmware.example/fw.bin?t0k3n=%zz", false},
		{"control character", "http://alice:s3cr3t@firmware.example/\x00?t0k3n", false},
	}
	f := newFetcher(t, fetch.Options{MaxBytes: 1000, IdleReadTimeout: 100 * time.Millisecond})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, _, err := f.Open(t.Context(), tc.url, -1)
			if tc.read {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_, err = io.ReadAll(body)
				body.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains %q", msg, s)
				}
			}
			var statusErr *fetch.HTTPStatusError
			if errors.As(err, &statusErr) {
				for _, s := range secrets {
					if strings.Contains(statusErr.URL, s) {
						t.Errorf("HTTPStatusError.URL %q contains %q", statusErr.URL, s)
					}
				}
			}
		})
	}
	if !sawAuth {
		t.Error("credentials from the URL were not sent as basic auth")
	}
}

func TestIsPermanent(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("reconcile: %w", err) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("boom"), false},
		{"too large", wrap(&fetch.TooLargeError{Limit: 1, Size: 2}), true},
		{"size mismatch", wrap(&fetch.SizeMismatchError{Expected: 1, Got: 2}), true},
		{"unsupported scheme", wrap(fetch.ErrUnsupportedScheme), true},
		{"invalid URL", wrap(fetch.ErrInvalidURL), true},
		{"http status", wrap(&fetch.HTTPStatusError{URL: "http://x", StatusCode: 404}), false},
		{"too many redirects", wrap(fetch.ErrTooManyRedirects), false},
		{"idle timeout", wrap(fetch.ErrIdleTimeout), false},
		{"canceled", wrap(context.Canceled), false},
		{"deadline", wrap(context.DeadlineExceeded), false},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), false},
	}
	for _, tc := range tests {
		if got := fetch.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://firmware.example/fw.bin", "https://firmware.example/fw.bin"},
		{"https://alice:s3cr3t@firmware.example/fw.bin", "https://firmware.example/fw.bin"},
		{"https://alice@firmware.example:8443/a/b.bin", "https://firmware.example:8443/a/b.bin"},
		{"https://bucket.s3.example/fw.bin?X-Amz-Signature=abc#frag", "https://bucket.s3.example/fw.bin?redacted"},
		{"http://alice:s3cr3t@[::1/", "<malformed URL>"},
	}
	for _, tc := range tests {
		if got := fetch.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
