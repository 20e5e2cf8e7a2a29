package otaserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a fresh self-signed certificate named cn and its key.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// atomicWriter mimics kubelet's Secret volume (and so cert-manager's
// renewals as pods see them): the files are symlinks through ..data to a
// timestamped directory; an update writes a new directory, swaps ..data
// with a rename, and deletes the old directory.
type atomicWriter struct {
	t   *testing.T
	dir string
	cur string
	n   int
}

func (w *atomicWriter) write(cn string) {
	w.t.Helper()
	w.n++
	gen := filepath.Join(w.dir, "..gen"+string(rune('0'+w.n)))
	if err := os.Mkdir(gen, 0o700); err != nil {
		w.t.Fatal(err)
	}
	writePair(w.t, filepath.Join(gen, "tls.crt"), filepath.Join(gen, "tls.key"), cn)
	tmp := filepath.Join(w.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, "..data")); err != nil {
		w.t.Fatal(err)
	}
	if w.cur == "" {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(w.dir, f)); err != nil {
				w.t.Fatal(err)
			}
		}
	} else if err := os.RemoveAll(w.cur); err != nil {
		w.t.Fatal(err)
	}
	w.cur = gen
}

// serveDevices starts the device API's server the way cmd/otaserver does:
// NewHTTPServer, LimitListener and ReloadingTLSConfig.
func serveDevices(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	cfg, w, err := ReloadingTLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A poll interval longer than the test: reloads must come from file
	// events, not from the periodic re-read.
	w.WithWatchInterval(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Start(ctx) }()

	srv := NewHTTPServer("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), DefaultHTTPLimits())
	srv.TLSConfig = cfg
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(LimitListener(ln, 10), "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("serve: %v", err)
		}
		cancel()
		if err := <-watchErr; err != nil {
			t.Errorf("certificate watcher: %v", err)
		}
	})
	return ln.Addr().String()
}

// servedCN does a fresh TLS handshake and returns the certificate's name.
func servedCN(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func waitCN(t *testing.T, addr, want string) {
	t.Helper()
	// certwatcher also re-reads the files every 10 s, so a change whose
	// file event is lost on a loaded machine is still seen: wait past that.
	deadline := time.Now().Add(25 * time.Second)
	for {
		got := servedCN(t, addr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handshake still shows %q, want %q: the rotated certificate was not picked up", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeviceTLSReloadsRotatedCertificate(t *testing.T) {
	t.Run("symlink swap (kubelet, cert-manager)", func(t *testing.T) {
		dir := t.TempDir()
		w := &atomicWriter{t: t, dir: dir}
		w.write("cert-a")
		addr := serveDevices(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if got := servedCN(t, addr); got != "cert-a" {
			t.Fatalf("served %q, want cert-a", got)
		}
		w.write("cert-b")
		waitCN(t, addr, "cert-b")
		w.write("cert-c") // and again: the watch follows the new target
		waitCN(t, addr, "cert-c")
	})
	t.Run("plain rewrite", func(t *testing.T) {
		dir := t.TempDir()
		crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writePair(t, crt, key, "cert-a")
		addr := serveDevices(t, crt, key)
		if got := servedCN(t, addr); got != "cert-a" {
			t.Fatalf("served %q, want cert-a", got)
		}
		writePair(t, crt, key, "cert-b")
		waitCN(t, addr, "cert-b")
	})
	t.Run("a broken pair keeps the last good one", func(t *testing.T) {
		dir := t.TempDir()
		crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writePair(t, crt, key, "cert-a")
		addr := serveDevices(t, crt, key)
		if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if got := servedCN(t, addr); got != "cert-a" {
			t.Fatalf("served %q after a broken write, want cert-a", got)
		}
	})
}

func TestReloadingTLSConfigNeedsFiles(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReloadingTLSConfig(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err == nil {
		t.Fatal("started without a certificate")
	}
}
