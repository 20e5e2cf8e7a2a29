package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/blobstoretest"
	"github.com/otaflow/otaflow/internal/s3test"
)

// newTestStore returns a Store on a new bucket of srv. tweak may adjust the
// options before the store is built.
func newTestStore(t *testing.T, srv *s3test.Server, tweak func(*Options)) *Store {
	t.Helper()
	opts := Options{
		Endpoint:    srv.Endpoint,
		Insecure:    srv.Insecure,
		Region:      srv.Region,
		Bucket:      srv.NewBucket(t),
		Credentials: srv.Credentials(),
		TempDir:     t.TempDir(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	blobstoretest.RunConformance(t, func(t *testing.T) blobstore.Store {
		return newTestStore(t, srv, nil)
	})
}

// TestConformanceSharedBucket runs the suite with every store in the same
// bucket under its own prefix, and with listing pages of two keys: stores
// under different prefixes must not see each other's blobs.
func TestConformanceSharedBucket(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	// A key under the blobs "directory" that is not a blob must be ignored.
	putRaw(t, srv, bucket, "shared/sha256/README", []byte("not a blob"))
	var n atomic.Int64
	blobstoretest.RunConformance(t, func(t *testing.T) blobstore.Store {
		s, err := New(t.Context(), Options{
			Endpoint:     srv.Endpoint,
			Insecure:     srv.Insecure,
			Region:       srv.Region,
			Bucket:       bucket,
			Prefix:       fmt.Sprintf("shared/%d/", n.Add(1)),
			Credentials:  srv.Credentials(),
			TempDir:      t.TempDir(),
			ListPageSize: 2,
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

func putRaw(t *testing.T, srv *s3test.Server, bucket, key string, content []byte) {
	t.Helper()
	_, err := srv.Client().PutObject(t.Context(), bucket, key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestNew(t *testing.T) {
	srv := s3test.Start(t)
	base := Options{
		Endpoint:    srv.Endpoint,
		Insecure:    srv.Insecure,
		Region:      srv.Region,
		Bucket:      srv.NewBucket(t),
		Credentials: srv.Credentials(),
	}
	tests := []struct {
		name    string
		tweak   func(*Options)
		wantErr string
	}{
		{"ok", func(*Options) {}, ""},
		{"missing bucket", func(o *Options) { o.Bucket = "otaflow-no-such-bucket" }, "does not exist"},
		{"no endpoint", func(o *Options) { o.Endpoint = "" }, "endpoint is required"},
		{"endpoint with scheme", func(o *Options) { o.Endpoint = "http://" + srv.Endpoint }, "without scheme"},
		{"no bucket", func(o *Options) { o.Bucket = "" }, "bucket is required"},
		{"no credentials", func(o *Options) { o.Credentials = nil }, "credentials are required"},
		{"dot-dot prefix", func(o *Options) { o.Prefix = "a/../b" }, "invalid key prefix"},
		{"wrong secret", func(o *Options) { o.Credentials = credentials.NewStaticV4(srv.AccessKey, "wrong", "") }, "check bucket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := base
			tc.tweak(&opts)
			_, err := New(t.Context(), opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestKeyLayout(t *testing.T) {
	srv := s3test.Start(t)
	s := newTestStore(t, srv, func(o *Options) { o.Prefix = "/fleet/images" })
	info := blobstoretest.Put(t, s, []byte("layout"))
	want := "fleet/images/sha256/" + info.Digest
	var keys []string
	for oi := range srv.Client().ListObjects(t.Context(), s.Bucket(), minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("list: %v", oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	if len(keys) != 1 || keys[0] != want {
		t.Errorf("bucket holds %q, want only %q", keys, want)
	}
}

// TestSpoolFiles checks that a writer's spool file has no name while the
// writer is open, so nothing is left behind by a crash.
func TestSpoolFiles(t *testing.T) {
	srv := s3test.Start(t)
	tmp := t.TempDir()
	s := newTestStore(t, srv, func(o *Options) { o.TempDir = tmp })
	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write([]byte("spooled")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("temp dir holds %d entries while writing, want 0", len(entries))
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}

	s = newTestStore(t, srv, func(o *Options) { o.TempDir = "/nonexistent/otaflow" })
	if _, err := s.Create(t.Context()); err == nil || !strings.Contains(err.Error(), "spool file") {
		t.Errorf("Create with missing temp dir error = %v, want spool file error", err)
	}
}

// countingTransport counts requests by method and the response body bytes
// read, and can refuse all requests.
type countingTransport struct {
	base      http.RoundTripper
	mu        sync.Mutex
	requests  map[string]int
	bodyBytes atomic.Int64
	// rangeBytes sums the lengths of the closed ranges GETs asked for.
	rangeBytes atomic.Int64
	refuse     atomic.Bool
}

func newCountingTransport(t *testing.T) *countingTransport {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	return &countingTransport{base: tr, requests: map[string]int{}}
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	key := r.Method
	if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
		key = "LIST"
	}
	c.mu.Lock()
	c.requests[key]++
	c.mu.Unlock()
	var first, last int64
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err == nil {
		c.rangeBytes.Add(last - first + 1)
	}
	if c.refuse.Load() {
		return nil, errors.New("test transport: no requests allowed")
	}
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.bodyBytes}
	return resp, nil
}

func (c *countingTransport) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[key]
}

func (c *countingTransport) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.requests {
		n += v
	}
	return n
}

func (c *countingTransport) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.requests)
	c.bodyBytes.Store(0)
	c.rangeBytes.Store(0)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func TestInvalidDigestSendsNoRequest(t *testing.T) {
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	s := newTestStore(t, srv, func(o *Options) { o.Transport = tr })
	tr.refuse.Store(true)
	tr.reset()
	for _, d := range []string{"", "abc", strings.Repeat("A", 64), "../" + strings.Repeat("a", 61), strings.Repeat("a", 65)} {
		if _, err := s.Open(t.Context(), d); !errors.Is(err, blobstore.ErrInvalidDigest) {
			t.Errorf("Open(%q) error = %v, want ErrInvalidDigest", d, err)
		}
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrInvalidDigest) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidDigest", d, err)
		}
		if err := s.Delete(t.Context(), d); !errors.Is(err, blobstore.ErrInvalidDigest) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidDigest", d, err)
		}
		if _, err := s.PresignGet(t.Context(), d, time.Minute); !errors.Is(err, blobstore.ErrInvalidDigest) {
			t.Errorf("PresignGet(%q) error = %v, want ErrInvalidDigest", d, err)
		}
		w, err := s.Create(t.Context())
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := w.CommitExpect(t.Context(), d); !errors.Is(err, blobstore.ErrInvalidDigest) {
			t.Errorf("CommitExpect(%q) error = %v, want ErrInvalidDigest", d, err)
		}
	}
	if n := tr.total(); n != 0 {
		t.Errorf("%d requests sent for invalid digests, want 0", n)
	}
}

func TestListPaginates(t *testing.T) {
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	s := newTestStore(t, srv, func(o *Options) { o.Transport = tr; o.ListPageSize = 3 })
	var want []string
	for i := range 10 {
		want = append(want, blobstoretest.Put(t, s, []byte(fmt.Sprint("blob ", i))).Digest)
	}
	tr.reset()
	infos, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(infos) != len(want) {
		t.Fatalf("List returned %d blobs, want %d", len(infos), len(want))
	}
	for i := 1; i < len(infos); i++ {
		if infos[i-1].Digest >= infos[i].Digest {
			t.Fatalf("List not sorted at %d", i)
		}
	}
	if n := tr.count("LIST"); n < 4 {
		t.Errorf("List sent %d listing requests for 10 keys in pages of 3, want at least 4", n)
	}
}

func TestPresignGet(t *testing.T) {
	srv := s3test.Start(t)
	s := newTestStore(t, srv, nil)
	content := blobstoretest.RandomBytes(7, 100_000)
	info := blobstoretest.Put(t, s, content)

	var _ blobstore.Presigner = s
	u, err := s.PresignGet(t.Context(), info.Digest, 2*time.Second)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	// Signing happens before the request goes out, so the URL expires no
	// earlier than this.
	expires := time.Now().Add(2 * time.Second)
	if u.User != nil || strings.Contains(u.String(), srv.SecretKey) {
		t.Fatalf("presigned URL leaks credentials: %s", u.Redacted())
	}

	get := func(rangeHeader string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET presigned URL: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read presigned body: %v", err)
		}
		return resp, body
	}

	resp, body := get("")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, content) {
		t.Errorf("GET = %s with %d bytes, want 200 with the blob's %d", resp.Status, len(body), len(content))
	}
	resp, body = get("bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, content[1000:2000]) {
		t.Errorf("ranged GET = %s with %d bytes, want 206 with bytes 1000-1999", resp.Status, len(body))
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", len(content)); got != want {
		t.Errorf("Content-Range = %q, want %q", got, want)
	}

	time.Sleep(time.Until(expires) + 1500*time.Millisecond)
	resp, body = get("")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET after expiry = %s (%d bytes), want 403 Forbidden", resp.Status, len(body))
	}

	for _, ttl := range []time.Duration{0, 500 * time.Millisecond, 8 * 24 * time.Hour} {
		if _, err := s.PresignGet(t.Context(), info.Digest, ttl); err == nil {
			t.Errorf("PresignGet with ttl %v succeeded, want error", ttl)
		}
	}
}

// TestConcurrentMultipartCommits races writers of the same content large
// enough for multipart uploads, where S3 offers no conditional write.
func TestConcurrentMultipartCommits(t *testing.T) {
	srv := s3test.Start(t)
	s := newTestStore(t, srv, func(o *Options) { o.PartSize = 5 << 20 })
	content := blobstoretest.RandomBytes(11, 12<<20)
	const writers = 4
	var wg sync.WaitGroup
	infos := make([]blobstore.Info, writers)
	for i := range writers {
		wg.Go(func() {
			w, err := s.Create(t.Context())
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			if _, err := w.Write(content); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
			if infos[i], err = w.Commit(t.Context()); err != nil {
				t.Errorf("writer %d Commit: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, info := range infos {
		if info.Digest != blobstoretest.Digest(content) || info.Size != int64(len(content)) {
			t.Errorf("writer %d: Info = %+v", i, info)
		}
	}
	if got := blobstoretest.ReadBlob(t, s, infos[0].Digest); !bytes.Equal(got, content) {
		t.Error("content differs after concurrent multipart commits")
	}
	// No multipart upload may be left over.
	for up := range srv.Client().ListIncompleteUploads(t.Context(), s.Bucket(), "", true) {
		if up.Err != nil {
			t.Fatalf("list uploads: %v", up.Err)
		}
		t.Errorf("incomplete upload left: %s %s", up.Key, up.UploadID)
	}
}

// TestCommitKeepsExistingObject checks that committing stored content does
// not upload it again.
func TestCommitKeepsExistingObject(t *testing.T) {
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	s := newTestStore(t, srv, func(o *Options) { o.Transport = tr })
	content := blobstoretest.RandomBytes(12, 50_000)
	first := blobstoretest.Put(t, s, content)
	before, err := s.Stat(t.Context(), first.Digest)
	if err != nil {
		t.Fatal(err)
	}
	tr.reset()
	second := blobstoretest.Put(t, s, content)
	if n := tr.count(http.MethodPut) + tr.count(http.MethodPost); n != 0 {
		t.Errorf("second commit of the same content sent %d uploads, want 0", n)
	}
	if !second.ModTime.Equal(before.ModTime) {
		t.Errorf("second commit ModTime = %v, want the existing object's %v", second.ModTime, before.ModTime)
	}
}
