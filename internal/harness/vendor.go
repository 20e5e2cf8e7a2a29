package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Vendor is a firmware vendor: it signs images the way
// `cosign sign-blob --key` does (ECDSA P-256 over SHA-256, base64 DER).
type Vendor struct {
	key *ecdsa.PrivateKey
	// PublicPEM is what goes into the cluster's trusted-key Secret.
	PublicPEM []byte
}

// NewVendor makes a vendor with a fresh signing key.
func NewVendor() (*Vendor, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Vendor{key: k, PublicPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
}

// Sign returns the base64 signature over img.
func (v *Vendor) Sign(img []byte) (string, error) {
	d := sha256.Sum256(img)
	sig, err := ecdsa.SignASN1(rand.Reader, v.key, d[:])
	if err != nil {
		return "", fmt.Errorf("sign image: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// FileServer serves firmware images over plain HTTP on loopback, as a
// vendor's download site would; a path not published yet is a 404.
type FileServer struct {
	srv   *http.Server
	ln    net.Listener
	mu    sync.Mutex
	files map[string][]byte
}

// StartFileServer listens on a loopback port.
func StartFileServer() (*FileServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fs := &FileServer{ln: ln, files: map[string][]byte{}}
	fs.srv = &http.Server{Handler: http.HandlerFunc(fs.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = fs.srv.Serve(ln) }()
	return fs, nil
}

func (fs *FileServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	b, ok := fs.files[r.URL.Path]
	fs.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}

// Put publishes content at path and returns its URL.
func (fs *FileServer) Put(path string, content []byte) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files[path] = content
	return fs.At(path)
}

// At is the URL of a path, published or not.
func (fs *FileServer) At(path string) string { return "http://" + fs.ln.Addr().String() + path }

// Close stops the server.
func (fs *FileServer) Close() error { return fs.srv.Close() }
