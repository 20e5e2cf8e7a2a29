// Package signature verifies vendor signatures over firmware images.
//
// Firmware engineers sign images offline; the cluster holds only their public
// keys. An image is streamed once through a Check (an io.Writer) and Verify
// then reports which trusted key verified the signature, or why none did.
//
// Supported signatures, each over the raw image bytes:
//   - ECDSA (P-256, P-384, P-521) with SHA-256, ASN.1 DER encoded, as printed
//     by `cosign sign-blob --key` or `openssl dgst -sha256 -sign`;
//   - RSA PKCS#1 v1.5 with SHA-256, keys of at least 2048 bits;
//   - pure Ed25519 (RFC 8032), verified while streaming;
//   - cosign bundles (`cosign sign-blob --bundle`) holding one of the above.
//
// Trust comes only from the configured public keys: transparency-log entries,
// certificates and timestamps in a bundle are not verified.
package signature

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

var (
	// ErrMalformedSignature means the signature cannot be decoded: bad
	// base64, a bad bundle, or bytes that fit none of the trusted keys'
	// signature formats.
	ErrMalformedSignature = errors.New("malformed signature")
	// ErrNotVerified means the signature is well formed but no trusted key
	// verifies it over this image.
	ErrNotVerified = errors.New("signature not verified")
	// ErrDigestMismatch means a bundle's message digest is not the SHA-256
	// of the image: the bundle was made for another image.
	ErrDigestMismatch = errors.New("bundle digest does not match image")
	// ErrInvalidKey means a public key cannot be parsed or is not supported.
	ErrInvalidKey = errors.New("invalid public key")
	// ErrNoKeys means no trusted public key was given.
	ErrNoKeys = errors.New("no trusted public keys")
)

// Key is a trusted public key.
type Key struct {
	// Name says where the key came from, e.g. "vendor-keys/cosign.pub".
	Name      string
	PublicKey crypto.PublicKey
	// ID is the base64 SHA-256 of the PKIX DER public key, the format of
	// cosign's bundle key hint.
	ID string
	// Algorithm is e.g. "ecdsa-p256", "ed25519", "rsa-3072".
	Algorithm string
}

// String names the key in messages, e.g. "vendor-keys/cosign.pub (ecdsa-p256)".
func (k Key) String() string {
	return fmt.Sprintf("%s (%s)", k.Name, k.Algorithm)
}

// ParsePublicKey parses a PEM public key: PKIX "PUBLIC KEY" (what cosign and
// openssl write) or PKCS#1 "RSA PUBLIC KEY". Errors wrap ErrInvalidKey.
func ParsePublicKey(name string, pemBytes []byte) (Key, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return Key{}, fmt.Errorf("parse public key %s: %w: no PEM block found", name, ErrInvalidKey)
	}
	if next, _ := pem.Decode(rest); next != nil {
		// Silently trusting only the first of several keys would surprise.
		return Key{}, fmt.Errorf("parse public key %s: %w: more than one PEM block; give each key its own Secret key", name, ErrInvalidKey)
	}
	switch t := block.Type; {
	case strings.Contains(t, "PRIVATE KEY"):
		return Key{}, fmt.Errorf("parse public key %s: %w: PEM block is a private key (%q); only public keys belong in the cluster", name, ErrInvalidKey, t)
	case t == "CERTIFICATE":
		return Key{}, fmt.Errorf("parse public key %s: %w: PEM block is a certificate; extract its public key with `openssl x509 -pubkey -noout`", name, ErrInvalidKey)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return Key{}, fmt.Errorf("parse public key %s: %w: %w", name, ErrInvalidKey, err)
	}
	key, err := describeKey(name, pub)
	if err != nil {
		return Key{}, fmt.Errorf("parse public key %s: %w", name, err)
	}
	return key, nil
}

// Fingerprint returns the base64 SHA-256 of the PKIX DER encoding of pub,
// which is what cosign writes as a bundle's public key hint.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// describeKey checks that pub is supported and fills in Algorithm and ID.
// Errors wrap ErrInvalidKey.
func describeKey(name string, pub crypto.PublicKey) (Key, error) {
	alg, err := vendorsig.KeyAlgorithm(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	id, err := Fingerprint(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return Key{Name: name, PublicKey: pub, ID: id, Algorithm: alg}, nil
}
