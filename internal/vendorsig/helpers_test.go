package vendorsig_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"filippo.io/edwards25519"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

// opensslDir holds keys and signatures made with openssl (an implementation
// independent of Go's), shared with internal/signature's tests so that the
// differential tests cover every one of them.
var opensslDir = filepath.Join("..", "signature", "testdata", "openssl")

// RSA key generation is slow, so each key is made once per test binary.
var (
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKeyB = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	p256A   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	p256B   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	p384    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P384()) })
	p521    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P521()) })
	edA     = sync.OnceValue(func() ed25519.PrivateKey { return mustEd25519() })
	edB     = sync.OnceValue(func() ed25519.PrivateKey { return mustEd25519() })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustECDSA(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEd25519() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// sign signs image the way the vendor tools do: ECDSA over SHA-256 in ASN.1
// DER (cosign sign-blob, openssl dgst -sha256 -sign), RSA PKCS#1 v1.5 over
// SHA-256, pure Ed25519 over the raw image.
func sign(t testing.TB, priv crypto.Signer, image []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(image)
	var (
		sig []byte
		err error
	)
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, digest[:])
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, image)
	default:
		t.Fatalf("unsupported key %T", priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signWith signs the digest of image under hash h with priv's own scheme
// (ECDSA DER, RSA PKCS#1 v1.5), e.g. SHA-384 for the curve-chosen hash of
// recent cosign releases.
func signWith(t testing.TB, priv crypto.Signer, h crypto.Hash, image []byte) []byte {
	t.Helper()
	hh := h.New()
	hh.Write(image)
	sig, err := priv.Sign(rand.Reader, hh.Sum(nil), h)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func trusted(t testing.TB, name string, priv crypto.Signer) vendorsig.Key {
	t.Helper()
	k, err := vendorsig.ParsePublicKey(name, pubPEM(t, priv.Public()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func cosignHint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipBit(b []byte, bit int) []byte {
	c := slices.Clone(b)
	c[bit/8] ^= 1 << (bit % 8)
	return c
}

// writeChunked writes b to w in random pieces, some empty.
func writeChunked(t testing.TB, w io.Writer, b []byte, rng *mrand.Rand) {
	t.Helper()
	for len(b) > 0 {
		n := min(rng.IntN(2*len(b)/3+2), len(b))
		if m, err := w.Write(b[:n]); m != n || err != nil {
			t.Fatalf("Write = %d, %v", m, err)
		}
		b = b[n:]
	}
}

// rsaPublicKey returns an RSA public key of exactly bits bits without the
// cost (or Go's refusal below 1024 bits) of generating a private key.
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

// oddModulus returns a random odd number of exactly bits bits: not an RSA
// modulus, but parsers and size checks cannot tell.
func oddModulus(t testing.TB, bits int) *big.Int {
	t.Helper()
	size := (bits + 7) / 8
	n := new(big.Int).SetBytes(randomBytes(t, size))
	n.Rsh(n, uint(size*8-bits))
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	return n
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
		out = append(out, unhex(t, h))
	}
	return out
}

// notAPoint returns 32 bytes that decode to no curve point (y = 2).
func notAPoint(t testing.TB) []byte {
	t.Helper()
	b := unhex(t, "0200000000000000000000000000000000000000000000000000000000000000")
	if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
		t.Fatal("expected y=2 not to be on the curve")
	}
	return b
}

// nonCanonicalPoints are the encodings y + p (y < 19, either sign bit) that
// edwards25519 accepts.
func nonCanonicalPoints(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for y := range byte(19) {
		for _, top := range []byte{0x7f, 0xff} {
			enc := bytes.Repeat([]byte{0xff}, 32)
			enc[0] = 0xed + y // p = 2^255 - 19 = ed ff … ff 7f, little-endian
			enc[31] = top
			if _, err := new(edwards25519.Point).SetBytes(enc); err == nil {
				out = append(out, enc)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no non-canonical encodings found")
	}
	return out
}

// addL returns the little-endian scalar s + l, the same value mod l in a
// non-canonical encoding.
func addL(s []byte) []byte {
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	v := new(big.Int).SetBytes(reversed(s))
	v.Add(v, l)
	out := make([]byte, 32)
	v.FillBytes(out)
	return reversed(out)
}

func reversed(b []byte) []byte {
	c := slices.Clone(b)
	slices.Reverse(c)
	return c
}

func withS(sig, s []byte) []byte {
	return append(slices.Clone(sig[:32]), s...)
}

// ed25519ph signs with Ed25519ph (RFC 8032 prehash), which cosign uses for
// Ed25519 keys when it uploads to a transparency log.
func ed25519ph(t testing.TB, priv ed25519.PrivateKey, image []byte) []byte {
	t.Helper()
	digest := sha512.Sum512(image)
	sig, err := priv.Sign(nil, digest[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signEd25519Stream signs like ed25519.Sign but reads the message twice from
// gen instead of holding it, so tests can sign large images.
func signEd25519Stream(t testing.TB, priv ed25519.PrivateKey, gen func(io.Writer)) []byte {
	t.Helper()
	h := sha512.Sum512(priv.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	mh := sha512.New()
	mh.Write(h[32:])
	gen(mh)
	r, err := edwards25519.NewScalar().SetUniformBytes(mh.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	kh := sha512.New()
	kh.Write(R)
	kh.Write(priv.Public().(ed25519.PublicKey))
	gen(kh)
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return append(R, edwards25519.NewScalar().MultiplyAdd(k, a, r).Bytes()...)
}

// rsaPSS signs the SHA-256 of image with RSA-PSS, a scheme neither side
// accepts.
func rsaPSS(t testing.TB, priv *rsa.PrivateKey, image []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(image)
	sig, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// ecdsaRS decodes a DER ECDSA signature.
func ecdsaRS(t testing.TB, der []byte) (r, s *big.Int) {
	t.Helper()
	var v struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &v); err != nil || len(rest) != 0 {
		t.Fatalf("not DER: %v", err)
	}
	return v.R, v.S
}

func ecdsaDER(t testing.TB, r, s *big.Int) []byte {
	t.Helper()
	b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// p1363 re-encodes a DER ECDSA signature as r ‖ s of size bytes each, the
// encoding sigstore's verifier would also try and this package refuses.
func p1363(t testing.TB, der []byte, size int) []byte {
	t.Helper()
	r, s := ecdsaRS(t, der)
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out
}

// highS returns the other valid signature (r, n - s) of the same message.
func highS(t testing.TB, der []byte, curve elliptic.Curve) []byte {
	t.Helper()
	r, s := ecdsaRS(t, der)
	return ecdsaDER(t, r, new(big.Int).Sub(curve.Params().N, s))
}

// berLength re-encodes the outer SEQUENCE of a DER signature with a
// long-form length, valid BER but not DER.
func berLength(t testing.TB, der []byte) []byte {
	t.Helper()
	if der[1] >= 0x80 {
		t.Fatalf("signature already uses a long-form length")
	}
	return append([]byte{0x30, 0x81, der[1]}, der[2:]...)
}
