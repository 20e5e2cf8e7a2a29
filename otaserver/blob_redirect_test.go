package otaserver_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/blobstore/s3"
	"github.com/otaflow/otaflow/internal/s3test"
)

// TestBlobRedirect: with object storage and BlobRedirectTTL, an authorized
// device is sent to a presigned URL (307) and downloads, resumes and
// decrypts from the object store; a device without the assignment is
// refused before any URL is made; HEAD is still answered by the server.
func TestBlobRedirect(t *testing.T) {
	srv := s3test.Start(t)
	blobs, err := s3.New(t.Context(), s3.Options{Endpoint: srv.Endpoint, Insecure: srv.Insecure, Region: srv.Region,
		Bucket: srv.NewBucket(t), Credentials: srv.Credentials(), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, 100, harnessOptions{blobs: blobs, redirectTTL: time.Minute})
	d := h.device("redirected", true)
	_, u, err := d.Check(ctx, "")
	if err != nil || u.Assignment == nil {
		t.Fatalf("check: %v %+v", err, u)
	}
	a, err := d.Verify(h.verifier, u.Assignment)
	if err != nil {
		t.Fatal(err)
	}
	path := mustPath(t, a.BlobURL)

	// The server's own answer: 307 to the object store, not cacheable.
	noFollow := *d.HTTP
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.Base+path, nil)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == nil || loc.Host != srv.Endpoint ||
		!strings.Contains(loc.RawQuery, "X-Amz-Signature=") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET: %d Location %q Cache-Control %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Cache-Control"))
	}

	// Followed, with a resume in the middle, as a device downloads.
	blob, err := d.Download(ctx, a, a.EncryptedSize/3)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := d.Decrypt(a, blob)
	if err != nil || !bytes.Equal(plain, h.image) {
		t.Fatalf("decrypt after redirected download: %v", err)
	}

	// HEAD cannot use a URL signed for GET: the server answers it.
	r, err := d.Head(ctx, path, nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("HEAD: %v %d", err, r.Status)
	}

	// Authorization still comes first: another device gets no URL.
	other := h.device("other", true)
	r, err = other.Get(ctx, path, nil)
	if err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("unassigned device: %v %d %s", err, r.Status, r.Body)
	}
}

func mustPath(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}
