// Package vendorsig verifies firmware vendors' signatures on the device.
//
// It accepts exactly the plain signature values that the cluster side
// (internal/signature) accepts, and refuses exactly what it refuses, with
// the same messages, but it depends only on the Go standard library's
// crypto and on filippo.io/edwards25519 (no sigstore), so that the device
// library stays small. Bundles are a cluster-side input and are not read
// here: a device receives the plain signature value in its assignment.
//
// Supported signatures, each over the raw image bytes:
//   - ECDSA (P-256, P-384, P-521) with SHA-256 whatever the curve, ASN.1 DER
//     encoded, as printed by `cosign sign-blob --key` or
//     `openssl dgst -sha256 -sign`;
//   - RSA PKCS#1 v1.5 with SHA-256, keys of 2048 to 16384 bits (not PSS);
//   - pure Ed25519 (RFC 8032), verified while streaming.
//
// A Check is an io.Writer: the image is written to it once, in pieces of any
// size, and never held. ECDSA and RSA keys share one SHA-256 of the image
// (also available to the caller, see Check.SHA256); each Ed25519 key needs
// its own SHA-512, seeded with R ‖ A.
package vendorsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
)

var (
	// ErrMalformedSignature means the signature cannot be decoded: bad
	// base64, or bytes that fit none of the trusted keys' signature formats.
	ErrMalformedSignature = errors.New("malformed signature")
	// ErrNotVerified means the signature is well formed but no trusted key
	// verifies it over this image.
	ErrNotVerified = errors.New("signature not verified")
	// ErrInvalidKey means a public key cannot be parsed or is not supported.
	ErrInvalidKey = errors.New("invalid public key")
	// ErrNoKeys means no trusted public key was given.
	ErrNoKeys = errors.New("no trusted public keys")
)

const (
	minRSABits = 2048
	// Larger moduli only make verification slow enough to hurt.
	maxRSABits = 16384
)

// Key is a trusted public key.
type Key struct {
	// Name says where the key came from, e.g. "vendor key 1".
	Name      string
	PublicKey crypto.PublicKey
	// ID is the base64 SHA-256 of the PKIX DER public key (cosign's key
	// hint format, and what the cluster reports as the key's fingerprint).
	ID string
	// Algorithm is e.g. "ecdsa-p256", "ed25519", "rsa-3072".
	Algorithm string
}

// String names the key in messages, e.g. "vendor key 1 (ecdsa-p256)".
func (k Key) String() string {
	return fmt.Sprintf("%s (%s)", k.Name, k.Algorithm)
}

// PEM block types of public keys.
const (
	pemPKIX  = "PUBLIC KEY"     // what cosign and openssl write
	pemPKCS1 = "RSA PUBLIC KEY" // PKCS#1, RSA only
)

// ParsePublicKey parses a PEM public key: PKIX "PUBLIC KEY" (what cosign and
// openssl write) or PKCS#1 "RSA PUBLIC KEY". The PEM must hold exactly one
// block; text around it is ignored. Errors wrap ErrInvalidKey.
func ParsePublicKey(name string, pemBytes []byte) (Key, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return Key{}, fmt.Errorf("parse public key %s: %w: no PEM block found", name, ErrInvalidKey)
	}
	if next, _ := pem.Decode(rest); next != nil {
		// Silently trusting only the first of several keys would surprise.
		return Key{}, fmt.Errorf("parse public key %s: %w: more than one PEM block; give each key its own Secret key", name, ErrInvalidKey)
	}
	var (
		pub crypto.PublicKey
		err error
	)
	switch t := block.Type; {
	case strings.Contains(t, "PRIVATE KEY"):
		return Key{}, fmt.Errorf("parse public key %s: %w: PEM block is a private key (%q); only public keys belong in the cluster", name, ErrInvalidKey, t)
	case t == "CERTIFICATE":
		return Key{}, fmt.Errorf("parse public key %s: %w: PEM block is a certificate; extract its public key with `openssl x509 -pubkey -noout`", name, ErrInvalidKey)
	case t == pemPKIX:
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case t == pemPKCS1:
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		// Worded as the cluster side (sigstore's cryptoutils) words it.
		err = fmt.Errorf("unknown Public key PEM file type: %v. Are you passing the correct public key?", t)
	}
	if err != nil {
		return Key{}, fmt.Errorf("parse public key %s: %w: %w", name, ErrInvalidKey, err)
	}
	key, err := describeKey(name, pub)
	if err != nil {
		return Key{}, fmt.Errorf("parse public key %s: %w", name, err)
	}
	return key, nil
}

// fingerprint returns the base64 SHA-256 of the PKIX DER encoding of pub.
func fingerprint(pub crypto.PublicKey) (string, error) {
	if pub == nil {
		return "", errors.New("fingerprint public key: empty key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// describeKey checks that pub is supported and fills in Algorithm and ID.
// Errors wrap ErrInvalidKey.
func describeKey(name string, pub crypto.PublicKey) (Key, error) {
	alg, err := KeyAlgorithm(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	id, err := fingerprint(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return Key{Name: name, PublicKey: pub, ID: id, Algorithm: alg}, nil
}

// KeyAlgorithm names a supported key ("ecdsa-p256", "rsa-3072",
// "ed25519") or says why it is refused. It is the one policy of which
// vendor keys are trusted, for the controller (internal/signature) and the
// device alike.
func KeyAlgorithm(pub crypto.PublicKey) (string, error) {
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		if pk == nil || pk.Curve == nil {
			return "", errors.New("empty ECDSA key")
		}
		var alg string
		switch pk.Curve {
		case elliptic.P256():
			alg = "ecdsa-p256"
		case elliptic.P384():
			alg = "ecdsa-p384"
		case elliptic.P521():
			alg = "ecdsa-p521"
		default:
			return "", fmt.Errorf("unsupported ECDSA curve %s, want P-256, P-384 or P-521", pk.Curve.Params().Name)
		}
		// Bytes refuses points that are not on the curve.
		if _, err := pk.Bytes(); err != nil {
			return "", fmt.Errorf("ECDSA key is not a valid point: %w", err)
		}
		return alg, nil
	case *rsa.PublicKey:
		if pk == nil || pk.N == nil {
			return "", errors.New("empty RSA key")
		}
		bits := pk.N.BitLen()
		switch {
		case bits < minRSABits:
			return "", fmt.Errorf("RSA key is %d bits, at least %d required", bits, minRSABits)
		case bits > maxRSABits:
			return "", fmt.Errorf("RSA key is %d bits, at most %d supported", bits, maxRSABits)
		case pk.E < 3 || pk.E%2 == 0:
			return "", fmt.Errorf("RSA public exponent %d is not an odd number of at least 3", pk.E)
		case pk.N.Bit(0) == 0:
			return "", errors.New("RSA modulus is even")
		}
		return fmt.Sprintf("rsa-%d", bits), nil
	case ed25519.PublicKey:
		if len(pk) != ed25519.PublicKeySize {
			return "", fmt.Errorf("Ed25519 key is %d bytes, want %d", len(pk), ed25519.PublicKeySize)
		}
		a, err := new(edwards25519.Point).SetBytes(pk)
		if err != nil {
			return "", errors.New("Ed25519 key is not a valid curve point")
		}
		// A small-order key lets anyone forge signatures; crypto/ed25519
		// accepts such keys, so refuse them here, before they are trusted.
		if new(edwards25519.Point).MultByCofactor(a).Equal(edwards25519.NewIdentityPoint()) == 1 {
			return "", errors.New("Ed25519 key is a small-order point")
		}
		return "ed25519", nil
	case nil:
		return "", errors.New("no public key")
	default:
		return "", fmt.Errorf("unsupported public key type %T, want ECDSA, RSA or Ed25519", pub)
	}
}
