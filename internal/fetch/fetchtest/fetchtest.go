// Package fetchtest runs image sources for tests: an OCI registry
// (go-containerregistry's registry, in process) behind basic or bearer
// authentication, artifacts pushed to it with oras-go as `oras push` does,
// and a static DNS table for the egress dialer.
package fetchtest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Registry is an OCI registry for one test.
type Registry struct {
	// Addr is the listener's host:port (127.0.0.1).
	Addr string
	// Username and Password are required as basic auth, unless Token is
	// set: then only "Bearer Token" is accepted.
	Username, Password, Token string

	srv      *httptest.Server
	blobGets atomic.Int64
	// redirectBlobs, when set, answers blob GETs with a redirect to it.
	redirectBlobs atomic.Pointer[string]
}

// StartRegistry starts a registry requiring basic auth with username and
// password; it stops when t ends.
func StartRegistry(t testing.TB, username, password string) *Registry {
	t.Helper()
	r := &Registry{Username: username, Password: password}
	r.start(t)
	return r
}

// StartTokenRegistry starts a registry requiring "Authorization: Bearer
// token" (a registry access token).
func StartTokenRegistry(t testing.TB, token string) *Registry {
	t.Helper()
	r := &Registry{Token: token}
	r.start(t)
	return r
}

func (r *Registry) start(t testing.TB) {
	inner := registry.New(registry.Logger(nopLogger()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(req) {
			if r.Token != "" {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="fetchtest"`, req.Host))
			} else {
				w.Header().Set("WWW-Authenticate", `Basic realm="fetchtest"`)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.blobGets.Add(1)
			if to := r.redirectBlobs.Load(); to != nil {
				http.Redirect(w, req, *to+req.URL.Path, http.StatusTemporaryRedirect)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Addr = r.srv.Listener.Addr().String()
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func (r *Registry) authorized(req *http.Request) bool {
	if r.Token != "" {
		return subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), []byte("Bearer "+r.Token)) == 1
	}
	u, p, ok := req.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u), []byte(r.Username)) == 1 && subtle.ConstantTimeCompare([]byte(p), []byte(r.Password)) == 1
}

// BlobGets is the number of authorized blob downloads so far.
func (r *Registry) BlobGets() int64 { return r.blobGets.Load() }

// RedirectBlobs makes blob downloads redirect to base (scheme://host:port)
// with the same path; "" stops it.
func (r *Registry) RedirectBlobs(base string) {
	if base == "" {
		r.redirectBlobs.Store(nil)
		return
	}
	r.redirectBlobs.Store(&base)
}

// Layer is one file of an artifact.
type Layer struct {
	MediaType string
	Title     string // org.opencontainers.image.title
	Data      []byte
}

// FirmwareLayer is an artifact's single image file, as
// `oras push reg/repo:tag fw.bin` makes it.
func FirmwareLayer(data []byte) Layer {
	return Layer{MediaType: "application/vnd.oci.image.layer.v1.tar", Title: "fw.bin", Data: data}
}

func (r *Registry) repo(t testing.TB, name string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(r.Addr + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &auth.Client{
		Client: http.DefaultClient,
		Credential: auth.StaticCredential(r.Addr, auth.Credential{
			Username: r.Username, Password: r.Password, AccessToken: r.Token,
		}),
	}
	return repo
}

// Push pushes an artifact of layers as an OCI 1.1 image manifest tagged
// tag (no tag when empty) and returns the manifest's descriptor.
func (r *Registry) Push(t testing.TB, repoName, tag string, layers ...Layer) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	repo := r.repo(t, repoName)
	descs := make([]ocispec.Descriptor, 0, len(layers))
	for _, l := range layers {
		d := content.NewDescriptorFromBytes(l.MediaType, l.Data)
		if l.Title != "" {
			d.Annotations = map[string]string{ocispec.AnnotationTitle: l.Title}
		}
		if err := repo.Push(ctx, d, bytes.NewReader(l.Data)); err != nil {
			t.Fatalf("push layer %s: %v", l.Title, err)
		}
		descs = append(descs, d)
	}
	m, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.otaflow.firmware.artifact", oras.PackManifestOptions{Layers: descs})
	if err != nil {
		t.Fatalf("push manifest: %v", err)
	}
	if tag != "" {
		if err := repo.Tag(ctx, m, tag); err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
	}
	return m
}

// PushIndex pushes an image index over manifests and tags it.
func (r *Registry) PushIndex(t testing.TB, repoName, tag string, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, b)
	if err := r.repo(t, repoName).PushReference(context.Background(), d, bytes.NewReader(b), tag); err != nil {
		t.Fatalf("push index: %v", err)
	}
	return d
}

// Resolver is a static DNS table: names (without the trailing dot) to
// addresses. It answers absolute names only, as the egress dialer asks.
type Resolver map[string][]netip.Addr

// LookupNetIP implements egress.Resolver.
func (r Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if !strings.HasSuffix(host, ".") {
		return nil, fmt.Errorf("fetchtest: %q looked up as a relative name", host)
	}
	if a, ok := r[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// Loopback maps each name to 127.0.0.1.
func Loopback(names ...string) Resolver {
	r := Resolver{}
	for _, n := range names {
		r[n] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	return r
}

// WithHost replaces the host of addr (host:port) with name.
func WithHost(addr, name string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(name, port)
}

// LoopbackDomains resolves every name under its domains (and the domains
// themselves) to 127.0.0.1, and nothing else.
type LoopbackDomains []string

// LookupNetIP implements egress.Resolver.
func (d LoopbackDomains) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if !strings.HasSuffix(host, ".") {
		return nil, fmt.Errorf("fetchtest: %q looked up as a relative name", host)
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, dom := range d {
		if name == dom || strings.HasSuffix(name, "."+dom) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
