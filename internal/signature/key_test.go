package signature

import (
	"bufio"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

func TestParsePublicKey(t *testing.T) {
	rsaPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)})
	tests := []struct {
		name    string
		pem     []byte
		pub     crypto.PublicKey
		alg     string
		wantErr string // substring; "" means success
	}{
		{name: "ecdsa p256", pem: pubPEM(t, p256A().Public()), pub: p256A().Public(), alg: "ecdsa-p256"},
		{name: "ecdsa p384", pem: pubPEM(t, p384().Public()), pub: p384().Public(), alg: "ecdsa-p384"},
		{name: "ecdsa p521", pem: pubPEM(t, p521().Public()), pub: p521().Public(), alg: "ecdsa-p521"},
		{name: "ed25519", pem: pubPEM(t, edA().Public()), pub: edA().Public(), alg: "ed25519"},
		{name: "rsa pkix", pem: pubPEM(t, rsaKey().Public()), pub: rsaKey().Public(), alg: "rsa-2048"},
		{name: "rsa pkcs1", pem: rsaPKCS1, pub: rsaKey().Public(), alg: "rsa-2048"},
		{name: "surrounding text is ignored", pem: append([]byte("# vendor key\n"), pubPEM(t, p256A().Public())...), pub: p256A().Public(), alg: "ecdsa-p256"},
		{name: "empty", pem: nil, wantErr: "no PEM block"},
		{name: "not PEM", pem: []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), wantErr: "no PEM block"},
		{name: "garbage DER", pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), wantErr: "asn1"},
		{name: "unknown PEM type", pem: pem.EncodeToMemory(&pem.Block{Type: "SSH KEY", Bytes: []byte{1}}), wantErr: "unknown Public key PEM file type"},
		{name: "private key", pem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), wantErr: "private key"},
		{name: "cosign private key", pem: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: []byte{1}}), wantErr: "private key"},
		{name: "certificate", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), wantErr: "certificate"},
		{name: "two keys", pem: append(pubPEM(t, p256A().Public()), pubPEM(t, p256B().Public())...), wantErr: "more than one PEM block"},
		{name: "rsa 1024", pem: pubPEM(t, rsaPublicKey(t, 1024)), wantErr: "RSA key is 1024 bits, at least 2048 required"},
		{name: "rsa 2047", pem: pubPEM(t, rsaPublicKey(t, 2047)), wantErr: "RSA key is 2047 bits"},
		{name: "p224", pem: pubPEM(t, mustECDSA(elliptic.P224()).Public()), wantErr: "unsupported ECDSA curve P-224"},
		{name: "small-order ed25519", pem: pubPEM(t, ed25519.PublicKey(smallOrderPoints(t)[0])), wantErr: "small-order"},
		{name: "ed25519 not a point", pem: pubPEM(t, ed25519.PublicKey(notAPoint(t))), wantErr: "not a valid curve point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePublicKey("vendor-keys/"+tt.name, tt.pem)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("err = %v, want ErrInvalidKey", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "vendor-keys/"+tt.name) {
					t.Fatalf("err = %q, want it to name the key and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if key.Name != "vendor-keys/"+tt.name || key.Algorithm != tt.alg {
				t.Errorf("got name %q algorithm %q, want %q", key.Name, key.Algorithm, tt.alg)
			}
			if !tt.pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.PublicKey) {
				t.Error("parsed public key differs")
			}
			if want := cosignHint(t, tt.pub); key.ID != want {
				t.Errorf("ID = %q, want cosign hint %q", key.ID, want)
			}
		})
	}
}

// The keys, signatures and fingerprints under testdata/openssl were made with
// openssl (see docs/signatures.md), an implementation independent of Go's.
func TestOpenSSLFixtures(t *testing.T) {
	dir := filepath.Join("testdata", "openssl")
	image := readFile(t, filepath.Join(dir, "image.bin"))
	fingerprints := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "fingerprints.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		name, fp, _ := strings.Cut(s.Text(), " ")
		fingerprints[name] = fp
	}

	tests := []struct {
		key, sig, alg string
	}{
		{key: "ecdsa-p256.pub", sig: "image.bin.ecdsa-p256.sig", alg: "ecdsa-p256"},
		{key: "ecdsa-p384.pub", sig: "image.bin.ecdsa-p384.sig", alg: "ecdsa-p384"},
		{key: "ed25519.pub", sig: "image.bin.ed25519.sig", alg: "ed25519"},
		{key: "rsa-3072.pub", sig: "image.bin.rsa-3072.sig", alg: "rsa-3072"},       // base64 wrapped at 64 columns
		{key: "rsa-3072-pkcs1.pub", sig: "image.bin.rsa-3072.sig", alg: "rsa-3072"}, // RSA PUBLIC KEY
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			key, err := ParsePublicKey(tt.key, readFile(t, filepath.Join(dir, tt.key)))
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm != tt.alg {
				t.Errorf("Algorithm = %q, want %q", key.Algorithm, tt.alg)
			}
			if want := fingerprints[tt.alg]; key.ID != want {
				t.Errorf("ID = %q, openssl says %q", key.ID, want)
			}
			sig, err := ParseValue(string(readFile(t, filepath.Join(dir, tt.sig))))
			if err != nil {
				t.Fatal(err)
			}
			got, err := verifyImage(t, sig, []Key{key}, image)
			if err != nil || got.Name != tt.key {
				t.Fatalf("Verify = %v, %v; want %s", got, err, tt.key)
			}
			tampered := append([]byte(nil), image...)
			tampered[len(tampered)/2] ^= 1
			if _, err := verifyImage(t, sig, []Key{key}, tampered); !errors.Is(err, ErrNotVerified) {
				t.Fatalf("tampered image: err = %v, want ErrNotVerified", err)
			}
		})
	}
	for _, name := range []string{"ecdsa-p224.pub", "rsa-1024.pub"} {
		if _, err := ParsePublicKey(name, readFile(t, filepath.Join(dir, name))); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", name, err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	for _, priv := range []crypto.Signer{p256A(), edA(), rsaKey()} {
		got, err := Fingerprint(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if want := cosignHint(t, priv.Public()); got != want {
			t.Errorf("%T: Fingerprint = %q, want %q", priv, got, want)
		}
	}
	if a, b := mustFingerprint(t, p256A().Public()), mustFingerprint(t, p256B().Public()); a == b {
		t.Error("different keys share a fingerprint")
	}
	if _, err := Fingerprint(struct{}{}); err == nil {
		t.Error("Fingerprint of an unsupported type succeeded")
	}
}

func TestNewCheckRefusesKeys(t *testing.T) {
	p224 := mustECDSA(elliptic.P224())
	tests := []struct {
		name string
		keys []Key
		want error
	}{
		{name: "none", keys: nil, want: ErrNoKeys},
		{name: "empty", keys: []Key{}, want: ErrNoKeys},
		{name: "nil public key", keys: []Key{{Name: "nil"}}, want: ErrInvalidKey},
		{name: "p224", keys: []Key{{Name: "p224", PublicKey: &p224.PublicKey}}, want: ErrInvalidKey},
		{name: "rsa 1024", keys: []Key{{Name: "rsa", PublicKey: rsaPublicKey(t, 1024)}}, want: ErrInvalidKey},
		{name: "small-order ed25519", keys: []Key{{Name: "ed", PublicKey: ed25519.PublicKey(smallOrderPoints(t)[1])}}, want: ErrInvalidKey},
		{name: "short ed25519", keys: []Key{{Name: "ed", PublicKey: ed25519.PublicKey{1, 2, 3}}}, want: ErrInvalidKey},
		{name: "pointer to ed25519", keys: []Key{{Name: "ed", PublicKey: new(ed25519.PublicKey)}}, want: ErrInvalidKey},
		{name: "one bad among good", keys: []Key{trusted(t, "good", p256A()), {Name: "bad", PublicKey: &p224.PublicKey}}, want: ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCheck(Signature{Raw: []byte{1}}, tt.keys)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// Keys built by hand get their Algorithm and ID filled in.
func TestNewCheckDescribesKeys(t *testing.T) {
	image := []byte("firmware")
	c, err := NewCheck(Signature{Raw: sign(t, edA(), image)}, []Key{{Name: "manual", PublicKey: edA().Public()}})
	if err != nil {
		t.Fatal(err)
	}
	c.Write(image)
	key, err := c.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if key.Algorithm != "ed25519" || key.ID != cosignHint(t, edA().Public()) || key.Name != "manual" {
		t.Errorf("Verify returned %+v", key)
	}
}

// rsaPublicKey returns an RSA public key of exactly bits bits without the
// cost (or the Go 1.24 refusal below 1024 bits) of generating a private key.
func rsaPublicKey(t testing.TB, bits int) *rsa.PublicKey {
	t.Helper()
	for {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, bits-bits/2)
		if err != nil {
			t.Fatal(err)
		}
		n := new(big.Int).Mul(p, q)
		if n.BitLen() == bits {
			return &rsa.PublicKey{N: n, E: 65537}
		}
	}
}

// smallOrderPoints are encodings of the eight points of order dividing 8,
// plus non-canonical encodings of some of them.
func smallOrderPoints(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"0000000000000000000000000000000000000000000000000000000000000080", // order 4
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // identity, y = p+1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 4, y = p
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// notAPoint returns 32 bytes that decode to no curve point.
func notAPoint(t testing.TB) []byte {
	t.Helper()
	b, _ := hex.DecodeString("0200000000000000000000000000000000000000000000000000000000000000")
	if _, err := vendorsig.KeyAlgorithm(ed25519.PublicKey(b)); err == nil {
		t.Fatal("expected y=2 not to be on the curve")
	}
	return b
}

func mustFingerprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	fp, err := Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
