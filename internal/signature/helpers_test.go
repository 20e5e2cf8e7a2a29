package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"

	sigstore "github.com/sigstore/sigstore/pkg/signature"
)

// signer is a test key pair of one algorithm.
type signer struct {
	name string
	priv crypto.Signer
}

// RSA key generation is slow, so each key is made once per test binary.
var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	p256A  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	p256B  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	p384   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P384()) })
	p521   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P521()) })
	edA    = sync.OnceValue(func() ed25519.PrivateKey { return mustEd25519() })
	edB    = sync.OnceValue(func() ed25519.PrivateKey { return mustEd25519() })
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

// signSigstore signs with sigstore's default SignerVerifier for the key, as
// cosign does with a key file.
func signSigstore(t testing.TB, priv crypto.Signer, image []byte) []byte {
	t.Helper()
	sv, err := sigstore.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(image))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// trusted turns a private key into a trusted Key through its PEM public key,
// as the controller does with keys from Secrets.
func trusted(t testing.TB, name string, priv crypto.Signer) Key {
	t.Helper()
	key, err := ParsePublicKey(name, pubPEM(t, priv.Public()))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// cosignHint computes cosign's key hint independently of Fingerprint.
func cosignHint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// cosignBundle builds a bundle shaped like `cosign sign-blob --bundle` v3
// output, transparency-log entry included.
func cosignBundle(t testing.TB, mediaType string, sig, digest []byte, hint string) []byte {
	t.Helper()
	vm := map[string]any{
		"tlogEntries": []any{map[string]any{
			"logIndex":          "123456789",
			"logId":             map[string]any{"keyId": "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0="},
			"kindVersion":       map[string]any{"kind": "hashedrekord", "version": "0.0.1"},
			"integratedTime":    "1760000000",
			"inclusionPromise":  map[string]any{"signedEntryTimestamp": "MEUCIQD="},
			"canonicalizedBody": "eyJhcGlWZXJzaW9uIjoiMC4wLjEifQ==",
		}},
	}
	if hint != "" {
		vm["publicKey"] = map[string]any{"hint": hint}
	}
	b, err := json.MarshalIndent(map[string]any{
		"mediaType":            mediaType,
		"verificationMaterial": vm,
		"messageSignature": map[string]any{
			"messageDigest": map[string]any{
				"algorithm": "SHA2_256",
				"digest":    base64.StdEncoding.EncodeToString(digest),
			},
			"signature": base64.StdEncoding.EncodeToString(sig),
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const mediaTypeV03 = "application/vnd.dev.sigstore.bundle.v0.3+json"

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
