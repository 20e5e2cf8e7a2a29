package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/blobstoretest"
	"github.com/otaflow/otaflow/internal/s3test"
)

// serveBlob serves a blob the way otaserver does: http.ServeContent over
// the Blob with a strong ETag.
func serveBlob(s blobstore.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.Open(r.Context(), r.PathValue("digest"))
		if errors.Is(err, blobstore.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer b.Close()
		w.Header().Set("ETag", `"`+b.Info().Digest+`"`)
		// Without a Content-Type, ServeContent would read 512 bytes to
		// sniff one: an extra GET per request.
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", b.Info().ModTime, b)
	})
}

func TestServeContentRanges(t *testing.T) {
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	s := newTestStore(t, srv, func(o *Options) { o.Transport = tr })
	content := blobstoretest.RandomBytes(21, 6<<20)
	info := blobstoretest.Put(t, s, content)
	size := int64(len(content))

	mux := http.NewServeMux()
	mux.Handle("GET /blobs/{digest}", serveBlob(s))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	url := ts.URL + "/blobs/" + info.Digest

	tests := []struct {
		name          string
		rangeHeader   string
		wantStatus    int
		wantBody      []byte
		wantCRange    string
		maxRangeBytes int64 // asked from S3
	}{
		{"full", "", http.StatusOK, content, "", size},
		{"small range", "bytes=100-199", http.StatusPartialContent, content[100:200],
			fmt.Sprintf("bytes 100-199/%d", size), minReadWindow},
		{"range near end", "bytes=5000000-5000999", http.StatusPartialContent, content[5000000:5001000],
			fmt.Sprintf("bytes 5000000-5000999/%d", size), minReadWindow},
		{"suffix", "bytes=-10", http.StatusPartialContent, content[size-10:],
			fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size), 10},
		{"open ended", "bytes=6000000-", http.StatusPartialContent, content[6000000:],
			fmt.Sprintf("bytes 6000000-%d/%d", size-1, size), size - 6000000},
		{"unsatisfiable", fmt.Sprintf("bytes=%d-", size), http.StatusRequestedRangeNotSatisfiable, nil,
			fmt.Sprintf("bytes */%d", size), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr.reset()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rangeHeader != "" {
				req.Header.Set("Range", tc.rangeHeader)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %s, want %d", resp.Status, tc.wantStatus)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body: %d bytes that differ from the %d expected", len(body), len(tc.wantBody))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.wantCRange {
				t.Errorf("Content-Range = %q, want %q", got, tc.wantCRange)
			}
			if got := tr.bodyBytes.Load(); got != int64(len(tc.wantBody)) {
				t.Errorf("read %d bytes from S3 to serve %d", got, len(tc.wantBody))
			}
			// What the server may send is bounded by the ranges asked for.
			if got := tr.rangeBytes.Load(); got > tc.maxRangeBytes {
				t.Errorf("GETs asked S3 for %d bytes, want at most %d", got, tc.maxRangeBytes)
			}
		})
	}

	t.Run("multipart ranges", func(t *testing.T) {
		tr.reset()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		req.Header.Set("Range", "bytes=0-9,3000000-3000009")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
			t.Fatalf("status %s, Content-Type %q; want 206 multipart/byteranges", resp.Status, resp.Header.Get("Content-Type"))
		}
		if !bytes.Contains(body, content[0:10]) || !bytes.Contains(body, content[3000000:3000010]) {
			t.Error("multipart body lacks the requested ranges")
		}
		if got := tr.rangeBytes.Load(); got > 2*minReadWindow {
			t.Errorf("GETs asked S3 for %d bytes, want at most %d", got, 2*minReadWindow)
		}
	})

	t.Run("conditional", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		req.Header.Set("If-None-Match", `"`+info.Digest+`"`)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("status = %s, want 304", resp.Status)
		}
	})
}

// TestLargeBlob streams a 64 MiB blob in and out, with multipart uploads,
// and checks that neither direction holds the blob in memory.
func TestLargeBlob(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 128 MiB through the S3 server")
	}
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	s := newTestStore(t, srv, func(o *Options) { o.Transport = tr; o.PartSize = 16 << 20 })
	const size = 64 << 20

	peak := trackHeap(t)
	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	src := io.LimitReader(newChaChaReader(31), size)
	if _, err := io.Copy(io.MultiWriter(w, want), src); err != nil {
		t.Fatalf("write: %v", err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info.Digest != hex.EncodeToString(want.Sum(nil)) || info.Size != size {
		t.Fatalf("Commit = %+v, want %d bytes with digest %x", info, size, want.Sum(nil))
	}
	if n := tr.count(http.MethodPut); n < 4 {
		t.Errorf("upload sent %d PUTs, want a multipart upload of at least 4 parts", n)
	}

	tr.reset()
	b, err := s.Open(t.Context(), info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := sha256.New()
	if n, err := io.Copy(got, b); err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Error("read content differs from written")
	}
	// Windows of 1, 2, 4, ..., 64 MiB: 7 GETs cover 64 MiB.
	if n := tr.count(http.MethodGet); n > 7 {
		t.Errorf("sequential read sent %d GETs, want at most 7", n)
	}
	p := peak()
	t.Logf("heap peak %.1f MiB above start", float64(p)/(1<<20))
	if p > 48<<20 {
		t.Errorf("heap peaked %d MiB above the start while moving a %d MiB blob", p>>20, size>>20)
	}
}

// trackHeap samples the live heap until the test ends; the returned func
// reports the peak growth over the heap at the start.
func trackHeap(t *testing.T) func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
				peak.Store(ms.HeapAlloc - base)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return peak.Load
}

// newChaChaReader is an endless deterministic byte stream.
func newChaChaReader(seed uint64) io.Reader {
	return &chunkReader{seed: seed}
}

type chunkReader struct {
	seed uint64
	buf  []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		r.seed++
		r.buf = blobstoretest.RandomBytes(r.seed, 1<<20)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fakeS3 answers HEAD for one object and stalls GET and PUT bodies, to test
// the timeouts without a misbehaving real server.
func fakeS3(t *testing.T, size int64, stallHead bool) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/bucket/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			if stallHead {
				<-r.Context().Done()
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet:
			// Headers and a few bytes, then nothing.
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", size-1, size))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte("abc"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.Error(w, "unexpected", http.StatusNotImplemented)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestTimeouts(t *testing.T) {
	digest := blobstoretest.Digest([]byte("stalled"))
	newFake := func(t *testing.T, stallHead bool) *Store {
		ts := fakeS3(t, 100, stallHead)
		s, err := New(t.Context(), Options{
			Endpoint:       strings.TrimPrefix(ts.URL, "http://"),
			Insecure:       true,
			Bucket:         "bucket",
			Credentials:    credentials.NewStaticV4("a", "b", ""),
			RequestTimeout: 300 * time.Millisecond,
			StallTimeout:   300 * time.Millisecond,
			MaxRetries:     1,
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	}
	check := func(t *testing.T, what string, start time.Time, err error) {
		t.Helper()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s error = %v, want context.DeadlineExceeded", what, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", what, d)
		}
	}

	t.Run("metadata request", func(t *testing.T) {
		s := newFake(t, true)
		start := time.Now()
		_, err := s.Stat(t.Context(), digest)
		check(t, "Stat", start, err)
	})
	t.Run("stalled read", func(t *testing.T) {
		s := newFake(t, false)
		b, err := s.Open(t.Context(), digest)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer b.Close()
		start := time.Now()
		_, err = b.ReadAt(make([]byte, 50), 0)
		check(t, "ReadAt", start, err)
		if !errors.Is(err, errStalled) {
			t.Errorf("ReadAt error = %v, want errStalled", err)
		}
		start = time.Now()
		_, err = io.ReadAll(b)
		check(t, "Read", start, err)
	})
	t.Run("caller context", func(t *testing.T) {
		s := newFake(t, false)
		ctx, cancel := context.WithCancel(t.Context())
		b, err := s.Open(ctx, digest)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer b.Close()
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := b.ReadAt(make([]byte, 50), 0); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAt after cancel: error = %v, want context.Canceled", err)
		}
	})
}

// TestConditionalPut checks that an upload of content another writer has
// just stored keeps the other writer's object.
func TestConditionalPut(t *testing.T) {
	srv := s3test.Start(t)
	s := newTestStore(t, srv, nil)
	content := []byte("the real content")
	digest := blobstoretest.Digest(content)
	// Pretend a concurrent writer won the race between our HEAD and PUT. The
	// bytes differ only so that the test can tell which object survived.
	putRaw(t, srv, s.Bucket(), s.key(digest), []byte("the earlier object"))

	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	info, err := s.upload(t.Context(), digest, f, int64(len(content)), true)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if got := blobstoretest.ReadBlob(t, s, digest); string(got) != "the earlier object" {
		t.Errorf("object = %q after conditional upload, want the earlier object kept", got)
	}
	if info.Size != int64(len("the earlier object")) {
		t.Errorf("upload returned %+v, want the existing object's Info", info)
	}
}

// TestUploadChecksum checks that the server verifies a single-part upload
// against the digest it is stored under.
func TestUploadChecksum(t *testing.T) {
	srv := s3test.Start(t)
	s := newTestStore(t, srv, nil)
	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("corrupted on the way")); err != nil {
		t.Fatal(err)
	}
	digest := blobstoretest.Digest([]byte("what the writer hashed"))
	_, err = s.upload(t.Context(), digest, f, 20, true)
	if err == nil {
		t.Fatal("upload of bytes that do not match the digest succeeded")
	}
	if code := minio.ToErrorResponse(errors.Unwrap(err)).Code; code != "BadDigest" {
		t.Errorf("upload error = %v (code %q), want BadDigest", err, code)
	}
	if _, err := s.Stat(t.Context(), digest); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat after refused upload: error = %v, want ErrNotFound", err)
	}
}
