package swupdatetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// OpenSSL is the openssl binary BuildSWU signs sw-description with, as
// SWUpdate's documentation does (`openssl cms -sign`).
const OpenSSL = "/usr/bin/openssl"

const signTimeout = 30 * time.Second

// Signer is a self-signed image signing certificate and its key, as PEM
// files. SWUpdate verifies sw-description.sig (CMS) against CertFile
// (`-k`); the Debian build expects the certificate purpose
// emailProtection, hence the extended key usage.
type Signer struct {
	CertFile string
	KeyFile  string
	Cert     *x509.Certificate
}

// NewSigner writes a fresh ECDSA P-256 signer into dir.
func NewSigner(t testing.TB, dir string) *Signer {
	t.Helper()
	s, err := newSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newSigner(dir string) (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signer key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("signer serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "otaflow test image signer", Organization: []string{"otaflow"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signer certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("signer certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("signer key: %w", err)
	}
	s := &Signer{
		CertFile: filepath.Join(dir, "signer.pem"),
		KeyFile:  filepath.Join(dir, "signer.key"),
		Cert:     cert,
	}
	if err := os.WriteFile(s.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	if err := os.WriteFile(s.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return s, nil
}

// Sign returns the detached CMS signature (DER) of content, made with
// `openssl cms -sign -outform DER -nosmimecap -binary`.
func (s *Signer) Sign(content []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, OpenSSL, "cms", "-sign",
		"-signer", s.CertFile, "-inkey", s.KeyFile,
		"-outform", "DER", "-nosmimecap", "-binary")
	cmd.Stdin = bytes.NewReader(content)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("openssl cms -sign: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// Image describes a .swu with one rawfile image: installing it writes
// Payload to OutPath.
type Image struct {
	// Signer signs sw-description (required).
	Signer *Signer
	// Payload is the image's content, stored as PayloadName (default
	// "payload.bin") in the archive.
	Payload     []byte
	PayloadName string
	// OutPath is where SWUpdate's rawfile handler writes the payload
	// (absolute, under 255 bytes; missing directories are created).
	OutPath string
	// HardwareCompat lists the accepted hardware revisions (the REV of
	// `-H board:REV`); default ["1.0"].
	HardwareCompat []string
	// Version and Description go into sw-description's software section
	// (defaults "1.0.0" and "otaflow test image").
	Version     string
	Description string
	// FileName is the .swu's name in dir (default "update.swu").
	FileName string
	// WrongSHA256 writes a sha256 that does not match Payload, so the
	// install fails after the download, at the payload.
	WrongSHA256 bool
}

// SWU is a built image.
type SWU struct {
	Path          string
	SWDescription []byte
	Signature     []byte
}

// BuildSWU writes img as a signed .swu into dir and returns its path.
func BuildSWU(t testing.TB, dir string, img Image) string {
	t.Helper()
	swu, err := Build(dir, img)
	if err != nil {
		t.Fatal(err)
	}
	return swu.Path
}

// Build is BuildSWU returning errors and the archive's parts.
func Build(dir string, img Image) (*SWU, error) {
	if img.Signer == nil {
		return nil, fmt.Errorf("swupdatetest: Image.Signer is required")
	}
	if img.PayloadName == "" {
		img.PayloadName = "payload.bin"
	}
	if img.FileName == "" {
		img.FileName = "update.swu"
	}
	desc, err := swDescription(img)
	if err != nil {
		return nil, err
	}
	sig, err := img.Signer.Sign(desc)
	if err != nil {
		return nil, fmt.Errorf("swupdatetest: sign sw-description: %w", err)
	}
	swu := &SWU{Path: filepath.Join(dir, img.FileName), SWDescription: desc, Signature: sig}
	if err := writeSWU(swu.Path, desc, sig, img.PayloadName, img.Payload); err != nil {
		return nil, err
	}
	return swu, nil
}

func writeSWU(path string, desc, sig []byte, payloadName string, payload []byte) error {
	var b bytes.Buffer
	err := writeCPIO(&b, []cpioEntry{
		{name: "sw-description", data: desc},
		{name: "sw-description.sig", data: sig},
		{name: payloadName, data: payload},
	})
	if err != nil {
		return fmt.Errorf("swupdatetest: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("swupdatetest: %w", err)
	}
	return nil
}

// swDescription renders the libconfig sw-description of img.
func swDescription(img Image) ([]byte, error) {
	if !filepath.IsAbs(img.OutPath) {
		return nil, fmt.Errorf("swupdatetest: Image.OutPath %q is not absolute", img.OutPath)
	}
	// The rawfile handler copies the path into a 255-byte buffer.
	if len(img.OutPath) >= 255 {
		return nil, fmt.Errorf("swupdatetest: Image.OutPath is %d bytes, SWUpdate takes at most 254", len(img.OutPath))
	}
	if strings.ContainsAny(img.PayloadName, "/\x00") || img.PayloadName == cpioTrailer {
		return nil, fmt.Errorf("swupdatetest: bad payload name %q", img.PayloadName)
	}
	hw := img.HardwareCompat
	if len(hw) == 0 {
		hw = []string{"1.0"}
	}
	version := img.Version
	if version == "" {
		version = "1.0.0"
	}
	description := img.Description
	if description == "" {
		description = "otaflow test image"
	}
	sum := sha256.Sum256(img.Payload)
	if img.WrongSHA256 {
		sum[0] ^= 0xff
	}
	quoted := make([]string, len(hw))
	for i, r := range hw {
		quoted[i] = quote(r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "software =\n{\n")
	fmt.Fprintf(&b, "\tversion = %s;\n", quote(version))
	fmt.Fprintf(&b, "\tdescription = %s;\n", quote(description))
	fmt.Fprintf(&b, "\thardware-compatibility: [ %s ];\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "\timages: (\n\t\t{\n")
	fmt.Fprintf(&b, "\t\t\tfilename = %s;\n", quote(img.PayloadName))
	fmt.Fprintf(&b, "\t\t\ttype = \"rawfile\";\n")
	fmt.Fprintf(&b, "\t\t\tpath = %s;\n", quote(img.OutPath))
	fmt.Fprintf(&b, "\t\t\tsha256 = %s;\n", quote(hex.EncodeToString(sum[:])))
	fmt.Fprintf(&b, "\t\t\tproperties: { create-destination = \"true\"; };\n")
	fmt.Fprintf(&b, "\t\t}\n\t);\n}\n")
	return []byte(b.String()), nil
}
