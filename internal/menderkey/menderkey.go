// Package menderkey reads the public keys mender-client devices identify
// with and checks their signatures. In the Mender device API a device's
// key is its identity: it signs each authentication request, and its
// otaflow device ID is derived from it.
package menderkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// MinRSABits is the smallest RSA key accepted (mender-client makes 3072).
const MinRSABits = 2048

// MaxPEMBytes bounds a PEM public key (RSA 8192 is about 1.5 KiB).
const MaxPEMBytes = 4096

// ErrInvalidKey: not a PEM public key of a supported kind.
var ErrInvalidKey = errors.New("invalid public key")

// ErrBadSignature: the signature does not verify with the key.
var ErrBadSignature = errors.New("signature does not verify")

// Key is a parsed device public key.
type Key struct {
	// Public is an *rsa.PublicKey, *ecdsa.PublicKey (P-256) or
	// ed25519.PublicKey.
	Public crypto.PublicKey
	// DER is the PKIX (SubjectPublicKeyInfo) encoding: the identity.
	DER []byte
	// Kind is "rsa", "ecdsa-p256" or "ed25519".
	Kind string
}

// Parse reads one PEM "PUBLIC KEY" block (PKIX) as mender-client sends
// it: RSA of at least MinRSABits, ECDSA P-256 or Ed25519. Anything after
// the block but blanks is refused.
func Parse(pemBytes []byte) (Key, error) {
	if len(pemBytes) > MaxPEMBytes {
		return Key{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxPEMBytes)
	}
	b, rest := pem.Decode(pemBytes)
	if b == nil {
		return Key{}, fmt.Errorf("%w: no PEM block", ErrInvalidKey)
	}
	if b.Type != "PUBLIC KEY" {
		return Key{}, fmt.Errorf("%w: PEM block is %q, not \"PUBLIC KEY\"", ErrInvalidKey, b.Type)
	}
	for _, c := range rest {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return Key{}, fmt.Errorf("%w: data after the PEM block", ErrInvalidKey)
		}
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	k := Key{Public: pub, DER: b.Bytes}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSABits {
			return Key{}, fmt.Errorf("%w: RSA key of %d bits, at least %d needed", ErrInvalidKey, p.N.BitLen(), MinRSABits)
		}
		k.Kind = "rsa"
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return Key{}, fmt.Errorf("%w: ECDSA curve %s, only P-256 is supported", ErrInvalidKey, p.Curve.Params().Name)
		}
		k.Kind = "ecdsa-p256"
	case ed25519.PublicKey:
		k.Kind = "ed25519"
	default:
		return Key{}, fmt.Errorf("%w: unsupported key type %T", ErrInvalidKey, pub)
	}
	return k, nil
}

// Verify checks sig over msg as mender-client signs: RSA PKCS#1 v1.5 and
// ECDSA (ASN.1 DER) over SHA-256 of msg, Ed25519 over msg itself.
func (k Key) Verify(msg, sig []byte) error {
	ok := false
	switch p := k.Public.(type) {
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = rsa.VerifyPKCS1v15(p, crypto.SHA256, d[:], sig) == nil
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(p, d[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(p, msg, sig)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// DeviceIDPrefix starts every Mender device's ID.
const DeviceIDPrefix = "mender-"

// DeviceID is the otaflow device ID of the key: "mender-" and the first
// 40 hex digits (160 bits) of the SHA-256 of its DER encoding, which
// `openssl pkey -pubin -outform DER | sha256sum` shows.
func (k Key) DeviceID() string {
	h := sha256.Sum256(k.DER)
	return DeviceIDPrefix + hex.EncodeToString(h[:20])
}
