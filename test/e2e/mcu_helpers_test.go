package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// blobLayout is the layout of otaflow-enc/v1 blobs with the default chunk
// size (docs/envelope.md §1.5): chunk k starts at HeaderSize +
// k·sealedChunk.
var (
	blobLayout  = envelope.Header{ChunkLog2: envelope.DefaultChunkLog2}
	sealedChunk = int64(blobLayout.ChunkSize() + envelope.TagSize)
)

func chunkOffset(k int64) int64 { return envelope.ChunkOffset(blobLayout, k) }

// mcuClient is the C client, built once per test process (buildMCUClient)
// into a directory of its own that TestMain removes (removeMCUClient).
var mcuClient struct {
	once     sync.Once
	dir, bin string
	err      error
}

// buildMCUClient builds the C client (with AddressSanitizer) with the mcu
// Makefile into a build directory of its own (test/mcu builds mcu/build at
// the same time), the first time it is called, and returns its path.
func buildMCUClient(t *testing.T) string {
	t.Helper()
	mcuClient.once.Do(func() {
		if mcuClient.dir, mcuClient.err = os.MkdirTemp("", "otaflow-mcu-client-"); mcuClient.err != nil {
			return
		}
		mcu := filepath.Join(testenv.Root(), "mcu")
		if out, err := exec.Command("make", "-C", mcu, "posix", "BUILD="+mcuClient.dir).CombinedOutput(); err != nil {
			mcuClient.err = fmt.Errorf("make -C %s posix: %v\n%s", mcu, err, out)
			return
		}
		mcuClient.bin = filepath.Join(mcuClient.dir, "host", "otaflow-mcu-client")
		_, mcuClient.err = os.Stat(mcuClient.bin)
	})
	if mcuClient.err != nil {
		t.Fatal(mcuClient.err)
	}
	return mcuClient.bin
}

// removeMCUClient removes the C client's build directory, if it was built.
func removeMCUClient() {
	if mcuClient.dir != "" {
		_ = os.RemoveAll(mcuClient.dir)
	}
}

// mcuDir is the directory of the C clients' files of stack s, or of elem
// under it, made if need be: under the stack's directory, it is kept with
// the other logs when a test fails.
func mcuDir(t *testing.T, s *harness.Stack, elem ...string) string {
	t.Helper()
	dir := filepath.Join(append([]string{s.Opts.Dir, "mcu"}, elem...)...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// otherVendorKey writes the public key of a fresh ECDSA P-256 key: a
// vendor key the releases are not signed with.
func otherVendorKey(t *testing.T, s *harness.Stack) string {
	t.Helper()
	path := filepath.Join(mcuDir(t, s), "other-vendor.pub")
	if err := os.WriteFile(path, releasetest.NewECDSAKey(t).PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mcuDevice is one C client process, its files, and the proxy it reaches
// the OTA server through.
type mcuDevice struct {
	ID, Dir, Install string
	Proxy            *deviceProxy
	Proc             *harness.Process
}

// mcuDeviceOptions say how a C client is provisioned and run.
type mcuDeviceOptions struct {
	ID, Ring  string
	ExitAfter string // --exit-after-state
	// KEM is --kem (x25519 or p256); empty: the client's default.
	KEM string
	// VendorKeyFile is --vendor-key; empty: the stack's vendor key.
	VendorKeyFile string
	// CAFile is --ca-file, the CA it trusts for https://; empty: none.
	CAFile string
	// KeyCheckInterval is --key-check-interval in seconds (0: only when it
	// meets a key it does not trust); nil: the client's default.
	KeyCheckInterval *int
	// MaxRuntime is --max-runtime in seconds.
	MaxRuntime int
	// Proxy says what its proxy does to its traffic.
	Proxy proxyOptions
}

// startMCUDevice starts a C client of s on version 2.9.0, labelled
// ring=<Ring>, provisioned with s's initial assignment key, enrolling with
// its bootstrap token and connecting through a proxy of its own.
func startMCUDevice(t *testing.T, s *harness.Stack, o mcuDeviceOptions) *mcuDevice {
	t.Helper()
	bin := buildMCUClient(t)
	dir := mcuDir(t, s, o.ID)
	tokenFile := filepath.Join(dir, "bootstrap-token")
	if err := os.WriteFile(tokenFile, []byte(s.BootstrapToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &mcuDevice{ID: o.ID, Dir: dir, Install: filepath.Join(dir, "image.bin"), Proxy: newDeviceProxy(t, s, o.Proxy)}
	args := []string{
		"--server", s.ServerURL,
		"--connect-to", d.Proxy.connectTo(),
		"--state-dir", filepath.Join(dir, "state"),
		"--device-id", o.ID,
		"--device-type", "sensor-v1",
		"--label", "ring=" + o.Ring,
		"--version", "2.9.0",
		"--bootstrap-token-file", tokenFile,
		"--assignment-key", s.AssignmentKeyFile,
		"--vendor-key", cmp.Or(o.VendorKeyFile, s.VendorKeyFile),
		"--require-vendor-signature",
		"--install-to", d.Install,
		"--poll-interval", "500",
		"--exit-after-state", o.ExitAfter,
		"--max-runtime", strconv.Itoa(o.MaxRuntime),
	}
	if o.KEM != "" {
		args = append(args, "--kem", o.KEM)
	}
	if o.CAFile != "" {
		args = append(args, "--ca-file", o.CAFile)
	}
	if o.KeyCheckInterval != nil {
		args = append(args, "--key-check-interval="+strconv.Itoa(*o.KeyCheckInterval))
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

func (d *mcuDevice) String() string { return fmt.Sprintf("%s (log %s)", d.ID, d.Proc.LogPath()) }

func (d *mcuDevice) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.Proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logged checks that the device logged every one of events.
func (d *mcuDevice) logged(t *testing.T, events ...string) {
	t.Helper()
	log := d.log(t)
	for _, ev := range events {
		if !strings.Contains(log, ev) {
			t.Errorf("%s never logged %q", d, ev)
		}
	}
}

// neverLogged checks that the device logged none of events.
func (d *mcuDevice) neverLogged(t *testing.T, events ...string) {
	t.Helper()
	log := d.log(t)
	for _, ev := range events {
		if strings.Contains(log, ev) {
			t.Errorf("%s logged %q", d, ev)
		}
	}
}

// waitExit waits up to timeout for the process to end by itself, and
// checks that it exited 0.
func (d *mcuDevice) waitExit(ctx context.Context, t *testing.T, timeout time.Duration) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-d.Proc.Exited():
		if err := d.Proc.Err(); err != nil {
			t.Errorf("%s exited with %v", d, err)
		}
	case <-wctx.Done():
		t.Fatalf("%s did not exit", d)
	}
}

// installed checks that the device installed exactly the image of
// mcuVersion of size bytes, went through boot and confirmation, and had
// nothing refused and no failed check or enrollment.
func (d *mcuDevice) installed(t *testing.T, size int) {
	t.Helper()
	got, err := os.ReadFile(d.Install)
	if err != nil {
		t.Errorf("%s: %v", d, err)
	} else if want := harness.Image(mcuVersion, size); !bytes.Equal(got, want) {
		t.Errorf("%s installed %d bytes that differ from the %d-byte image", d, len(got), len(want))
	}
	d.logged(t, "event=installed", "event=boot version="+mcuVersion, "event=confirmed")
	d.neverLogged(t, "event=refused", "event=check-failed", "event=enroll-failed")
}

// leftNothing checks that a device that refused its update left no image,
// whole or partial.
func (d *mcuDevice) leftNothing(t *testing.T) {
	t.Helper()
	for _, f := range []string{d.Install, d.Install + ".part"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left %s behind (%v)", d, f, err)
		}
	}
}

// logDevicesOnFailure shows the last lines of every device's log at the
// end of t if it failed.
func logDevicesOnFailure(t *testing.T, devs ...*mcuDevice) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var b strings.Builder
		for _, d := range devs {
			fmt.Fprintf(&b, "\n--- %s, last lines:", d)
			raw, _ := os.ReadFile(d.Proc.LogPath())
			lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
			for _, l := range lines[max(0, len(lines)-8):] {
				b.WriteString("\n    " + l)
			}
		}
		t.Log(b.String())
	})
}

// proxyOptions say what a deviceProxy does to one device's blob traffic.
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

// deviceProxy stands between one C client and the OTA server of a stack
// (the client connects to it for the server's host:port, --connect-to).
// With the stack's StackOptions.DeviceTLS it serves TLS with a certificate
// of the stack's device CA, and it forwards with the stack's
// DeviceTransport (trusting that CA only). It records the path and status
// of every request it passes on, the key ID of every assignment in an
// update answer, the Range header of every blob request and its server's
// failed TLS handshakes, and does to blob requests what its options say.
type deviceProxy struct {
	proxyOptions
	target    *url.URL
	srv       *httptest.Server
	transport *http.Transport

	mu  sync.Mutex
	rec proxyRecord
	// auth is the device's bearer token, kept to fetch the blob from the
	// OTA server for the presigned URL.
	auth string
}

// proxyRecord is what a deviceProxy saw and did. Its slices only grow.
type proxyRecord struct {
	answers    []proxiedRequest // in the order they were answered
	signers    []string         // the key ID of each assignment sent
	handshakes []string         // failed TLS handshakes, as its server logged them
	ranges     []string         // Range of each blob GET, "" for none
	ifRanges   []string
	served     int64 // blob body bytes passed on
	cuts       int
	flips      int
	// presigned: the Authorization header of each request to the
	// presigned URL.
	presigned []string
	// refused: the kinds of request answered 401.
	refused []string
}

type proxiedRequest struct {
	path   string
	status int
}

func newDeviceProxy(t *testing.T, s *harness.Stack, o proxyOptions) *deviceProxy {
	t.Helper()
	u, err := url.Parse(s.ServerURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &deviceProxy{proxyOptions: o, target: u, transport: s.DeviceTransport()}
	p.srv = httptest.NewUnstartedServer(p)
	if s.Opts.DeviceTLS {
		if p.srv.TLS, err = s.DeviceServerTLSConfig(); err != nil {
			t.Fatal(err)
		}
		// The server logs each failed handshake: keep them.
		p.srv.Config.ErrorLog = log.New(handshakeLog{p}, "", 0)
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(func() {
		p.srv.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// connectTo is the client's --connect-to value: the server's host:port to
// the proxy's 127.0.0.1 address.
func (p *deviceProxy) connectTo() string {
	return p.target.Host + ":" + p.srv.Listener.Addr().String()
}

// handshakeLog records the proxy's failed TLS handshakes from its
// server's error log.
type handshakeLog struct{ p *deviceProxy }

func (h handshakeLog) Write(b []byte) (int, error) {
	if line := strings.TrimSpace(string(b)); strings.Contains(line, "TLS handshake error") {
		h.p.mu.Lock()
		h.p.rec.handshakes = append(h.p.rec.handshakes, line)
		h.p.mu.Unlock()
	}
	return len(b), nil
}

// record is what the proxy saw and did so far.
func (p *deviceProxy) record() proxyRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec
}

// mark is the number of requests passed on so far, whatever their
// answer: the position of the next one, for count.
func (p *deviceProxy) mark() int { return len(p.record().answers) }

// count is the number of requests for path answered 2xx since mark.
func (p *deviceProxy) count(mark int, path string) int {
	n := 0
	for _, a := range p.record().answers[mark:] {
		if a.path == path && a.status/100 == 2 {
			n++
		}
	}
	return n
}

// refuse answers the first update check and the first blob request 401.
func (p *deviceProxy) refuse(w http.ResponseWriter, r *http.Request) bool {
	kind := ""
	switch {
	case r.URL.Path == protov1.PathUpdate:
		kind = "update"
	case strings.HasPrefix(r.URL.Path, protov1.PathBlobs):
		kind = "blob"
	default:
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.rec.refused, kind) {
		return false
	}
	p.rec.refused = append(p.rec.refused, kind)
	w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow", error="invalid_token"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"code":"unauthenticated","message":"unknown or rotated bearer token"}`)
	return true
}

func (p *deviceProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.unauthenticated && p.refuse(w, r) {
		return
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = p.target.Scheme, p.target.Host, ""
	if name, ok := strings.CutPrefix(r.URL.Path, "/presigned/"); ok {
		// The object store: it sees no bearer token; the proxy fetches
		// the blob with the one it kept.
		p.mu.Lock()
		p.rec.presigned = append(p.rec.presigned, r.Header.Get("Authorization"))
		out.Header.Set("Authorization", p.auth)
		p.mu.Unlock()
		out.URL.Path, out.URL.RawQuery = protov1.PathBlobs+name, ""
	} else if p.redirect && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, protov1.PathBlobs) {
		p.mu.Lock()
		p.auth = r.Header.Get("Authorization")
		p.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, p.srv.URL+"/presigned/"+strings.TrimPrefix(r.URL.Path, protov1.PathBlobs)+"?X-Amz-Signature=0123", http.StatusTemporaryRedirect)
		return
	}
	blob := r.Method == http.MethodGet && (strings.HasPrefix(r.URL.Path, protov1.PathBlobs) || strings.HasPrefix(r.URL.Path, "/presigned/"))
	first := false
	if blob {
		p.mu.Lock()
		p.rec.ranges = append(p.rec.ranges, r.Header.Get("Range"))
		p.rec.ifRanges = append(p.rec.ifRanges, r.Header.Get("If-Range"))
		first = len(p.rec.ranges) == 1
		p.mu.Unlock()
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	// Recorded once the answer is passed on (or cut).
	defer p.answered(r.URL.Path, resp.StatusCode)
	if blob && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		writeHead(w, resp)
		p.passBlob(w, resp, first)
		return
	}
	body, err := io.ReadAll(resp.Body) // small answers
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if r.URL.Path == protov1.PathUpdate && resp.StatusCode == http.StatusOK {
		var u protov1.UpdateResponse
		if json.Unmarshal(body, &u) == nil && u.Assignment != nil {
			p.mu.Lock()
			p.rec.signers = append(p.rec.signers, u.Assignment.KeyID)
			p.mu.Unlock()
		}
	}
	writeHead(w, resp)
	_, _ = w.Write(body)
}

// writeHead passes an answer's status and header on.
func writeHead(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
}

func (p *deviceProxy) answered(path string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rec.answers = append(p.rec.answers, proxiedRequest{path: path, status: status})
}

// passBlob passes a blob answer's body on, cutting it or flipping a byte
// as the options say.
func (p *deviceProxy) passBlob(w http.ResponseWriter, resp *http.Response, first bool) {
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
			p.rec.flips++
			p.mu.Unlock()
		}
		if first && p.cutAfter > 0 && sent+int64(n) > p.cutAfter {
			b = b[:p.cutAfter-sent]
			_, _ = w.Write(b)
			w.(http.Flusher).Flush()
			p.mu.Lock()
			p.rec.served += int64(len(b))
			p.rec.cuts++
			p.mu.Unlock()
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		p.mu.Lock()
		p.rec.served += int64(n)
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
