package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv"
)

// Blob layout of otaflow-enc/v1 with the default 16 KiB chunks
// (docs/envelope.md §1.5): chunk k starts at 58 + k·(16384+16).
const (
	blobHeader = 58
	blobChunk  = 16384 + 16
)

func chunkOffset(k int64) int64 { return blobHeader + k*blobChunk }

// buildMCUClient builds the C client with the mcu Makefile into a build
// directory of its own (test/mcu builds mcu/build at the same time) and
// returns its path.
func buildMCUClient(t *testing.T) string {
	t.Helper()
	mcu := filepath.Join(testenv.Root(), "mcu")
	build := t.TempDir()
	out, err := exec.Command("make", "-C", mcu, "posix", "BUILD="+build).CombinedOutput()
	if err != nil {
		t.Fatalf("make -C %s posix: %v\n%s", mcu, err, out)
	}
	bin := filepath.Join(build, "host", "otaflow-mcu-client")
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// proxyOptions say what a blobProxy does to one device's traffic.
type proxyOptions struct {
	// cutAfter > 0: the first blob answer stops after that many body
	// bytes (the connection is closed, as a network failure does).
	cutAfter int64
	// flipAt > 0: the blob byte at that offset is changed in every answer.
	flipAt int64
	// redirect: blob requests are answered 307 to a "presigned" URL on
	// the proxy's own origin, as a server with --blob-redirect-ttl sends
	// devices to object storage; that URL serves the blob.
	redirect bool
	// unauthenticated: the first update check and the first blob request
	// are answered 401 unauthenticated, as after a token rotation.
	unauthenticated bool
}

// blobProxy stands between one C client and the OTA server (the client
// connects to it for the server's host:port, --connect-to). It records the
// Range header of every blob request and does what its options say.
type blobProxy struct {
	proxyOptions
	target *url.URL
	srv    *httptest.Server

	mu       sync.Mutex
	ranges   []string // Range of each blob GET, "" for none
	ifRanges []string
	served   int64 // blob body bytes passed on
	cuts     int
	flips    int
	// presigned: the Authorization header of each request to the
	// presigned URL; auth the device's bearer token, kept to fetch the
	// blob from the OTA server for it.
	presigned []string
	auth      string
	// refused: the paths answered 401.
	refused []string
}

func newBlobProxy(t *testing.T, target string, o proxyOptions) *blobProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &blobProxy{proxyOptions: o, target: u}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// connectTo is the client's --connect-to value for this proxy.
func (p *blobProxy) connectTo() string {
	return p.target.Host + ":" + strings.TrimPrefix(p.srv.URL, "http://")
}

func (p *blobProxy) stats() (ranges, ifRanges []string, served int64, cuts, flips int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ranges...), append([]string(nil), p.ifRanges...), p.served, p.cuts, p.flips
}

func (p *blobProxy) presignedRequests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.presigned...)
}

func (p *blobProxy) refusedRequests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// refuse answers the first update check and the first blob request 401.
func (p *blobProxy) refuse(w http.ResponseWriter, r *http.Request) bool {
	kind := ""
	switch {
	case r.URL.Path == "/v1/update":
		kind = "update"
	case strings.HasPrefix(r.URL.Path, "/v1/blobs/"):
		kind = "blob"
	default:
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.refused {
		if k == kind {
			return false
		}
	}
	p.refused = append(p.refused, kind)
	w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow", error="invalid_token"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"code":"unauthenticated","message":"unknown or rotated bearer token"}`)
	return true
}

func (p *blobProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.unauthenticated && p.refuse(w, r) {
		return
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = p.target.Scheme, p.target.Host, ""
	if name, ok := strings.CutPrefix(r.URL.Path, "/presigned/"); ok {
		// The object store: it sees no bearer token; the proxy fetches
		// the blob with the one it kept.
		p.mu.Lock()
		p.presigned = append(p.presigned, r.Header.Get("Authorization"))
		out.Header.Set("Authorization", p.auth)
		p.mu.Unlock()
		out.URL.Path, out.URL.RawQuery = "/v1/blobs/"+name, ""
	} else if p.redirect && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/blobs/") {
		p.mu.Lock()
		p.auth = r.Header.Get("Authorization")
		p.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, p.srv.URL+"/presigned/"+strings.TrimPrefix(r.URL.Path, "/v1/blobs/")+"?X-Amz-Signature=0123", http.StatusTemporaryRedirect)
		return
	}
	blob := r.Method == http.MethodGet && (strings.HasPrefix(r.URL.Path, "/v1/blobs/") || strings.HasPrefix(r.URL.Path, "/presigned/"))
	first := false
	if blob {
		p.mu.Lock()
		p.ranges = append(p.ranges, r.Header.Get("Range"))
		p.ifRanges = append(p.ifRanges, r.Header.Get("If-Range"))
		first = len(p.ranges) == 1
		p.mu.Unlock()
	}
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if !blob || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent) {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	pos := int64(0) // blob offset of the next byte
	if resp.StatusCode == http.StatusPartialContent {
		pos = contentRangeFirst(resp.Header.Get("Content-Range"))
	}
	sent := int64(0)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		b := buf[:n]
		if p.flipAt > 0 && p.flipAt >= pos && p.flipAt < pos+int64(n) {
			b[p.flipAt-pos] ^= 0x5a
			p.mu.Lock()
			p.flips++
			p.mu.Unlock()
		}
		if first && p.cutAfter > 0 && sent+int64(n) > p.cutAfter {
			b = b[:p.cutAfter-sent]
			_, _ = w.Write(b)
			w.(http.Flusher).Flush()
			p.mu.Lock()
			p.served += int64(len(b))
			p.cuts++
			p.mu.Unlock()
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		p.mu.Lock()
		p.served += int64(n)
		p.mu.Unlock()
		pos += int64(n)
		sent += int64(n)
		if errors.Is(rerr, io.EOF) {
			return
		}
		if rerr != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

func contentRangeFirst(v string) int64 {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return -1
	}
	first, _, _ := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// mcuDevice is one C client process and its files.
type mcuDevice struct {
	ID      string
	Dir     string
	Install string
	Proxy   *blobProxy
	Proc    *harness.Process
}

type mcuDeviceOptions struct {
	ID, Ring, Version, ExitAfter string
	KEM                          string // x25519 or p256
	VendorKeyFile                string
	Proxy                        *blobProxy
}

func startMCUDevice(t *testing.T, bin, tokenFile string, o mcuDeviceOptions) *mcuDevice {
	t.Helper()
	// Under the stack's directory: kept with the other logs when a test fails.
	dir := filepath.Join(stack.Opts.Dir, "mcu", o.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &mcuDevice{ID: o.ID, Dir: dir, Install: filepath.Join(dir, "image.bin"), Proxy: o.Proxy}
	args := []string{
		"--server", stack.ServerURL,
		"--connect-to", o.Proxy.connectTo(),
		"--state-dir", filepath.Join(dir, "state"),
		"--device-id", o.ID,
		"--device-type", "sensor-v1",
		"--label", "ring=" + o.Ring,
		"--version", o.Version,
		"--kem", o.KEM,
		"--bootstrap-token-file", tokenFile,
		"--assignment-key", stack.AssignmentKeyFile,
		"--vendor-key", o.VendorKeyFile,
		"--require-vendor-signature",
		"--install-to", d.Install,
		"--poll-interval", "500",
		"--exit-after-state", o.ExitAfter,
		"--max-runtime", "240",
	}
	p, err := harness.StartProcess(harness.ProcessSpec{
		Name: "otaflow-mcu-client " + o.ID, Path: bin, Args: args, LogPath: filepath.Join(dir, "client.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	d.Proc = p
	return d
}

func (d *mcuDevice) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.Proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// otherVendorKey writes the public key of a fresh ECDSA P-256 key: a
// vendor key the releases are not signed with.
func otherVendorKey(t *testing.T, dir string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other-vendor.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (d *mcuDevice) String() string { return fmt.Sprintf("%s (log %s)", d.ID, d.Proc.LogPath()) }
