// Package keywrap wraps a release's content key for one device with HPKE
// (RFC 9180, base mode).
//
// The suite is DHKEM(X25519, HKDF-SHA256) or DHKEM(P-256, HKDF-SHA256) with
// HKDF-SHA256 and AES-256-GCM. The HPKE info binds the wrapped key to one
// encrypted blob and one device, so a wrapped key copied to another device
// or paired with another blob does not open.
package keywrap

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
)

// KEM names a key encapsulation mechanism as written in APIs and status.
type KEM string

const (
	// X25519 is DHKEM(X25519, HKDF-SHA256), HPKE KEM ID 0x0020.
	X25519 KEM = "x25519"
	// P256 is DHKEM(P-256, HKDF-SHA256), HPKE KEM ID 0x0010, for devices
	// whose secure element only does NIST curves.
	P256 KEM = "p256"
)

// infoPrefix starts every HPKE info string. The digest and device ID that
// follow have no length prefix: the digest has a fixed size and the device
// ID runs to the end.
const infoPrefix = "otaflow-enc/v1 key"

// contentKeySize is the size of an otaflow-enc/v1 content key
// (envelope.KeySize).
// ContentKeySize is the size of an image content key (AES-256).
const ContentKeySize = 32

const contentKeySize = ContentKeySize

// aeadOverhead is the AES-256-GCM tag size.
const aeadOverhead = 16

var (
	// ErrUnsupportedKEM reports a KEM name or key type this package does not
	// implement.
	ErrUnsupportedKEM = errors.New("keywrap: unsupported KEM")
	// ErrBadPublicKey reports a device public key that is malformed, not on
	// the curve, or of low order.
	ErrBadPublicKey = errors.New("keywrap: invalid device public key")
	// ErrUnwrap reports a wrapped key that does not open with the given
	// private key, blob digest and device ID.
	ErrUnwrap = errors.New("keywrap: cannot unwrap content key")
)

// ParseKEM maps a KEM name to a KEM.
func ParseKEM(s string) (KEM, error) {
	switch k := KEM(s); k {
	case X25519, P256:
		return k, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnsupportedKEM, s)
}

func (k KEM) curve() (ecdh.Curve, error) {
	switch k {
	case X25519:
		return ecdh.X25519(), nil
	case P256:
		return ecdh.P256(), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedKEM, string(k))
}

// encSize is the size of the encapsulated key (the serialized ephemeral
// public key).
func (k KEM) encSize() int {
	switch k {
	case X25519:
		return 32
	case P256:
		return 65
	}
	return 0
}

// WrappedSize returns the size of a wrapped content key, or 0 for an
// unsupported KEM.
func (k KEM) WrappedSize() int {
	if k.encSize() == 0 {
		return 0
	}
	return k.encSize() + contentKeySize + aeadOverhead
}

// ParsePublicKey parses a device public key: 32 bytes for X25519, a 65-byte
// uncompressed point for P-256.
func ParsePublicKey(kem KEM, raw []byte) (*ecdh.PublicKey, error) {
	pub, err := parsePublicKey(kem, raw)
	if err != nil {
		return nil, err
	}
	if kem == X25519 {
		if err := checkX25519Order(pub); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

// parsePublicKey is ParsePublicKey without the X25519 order check, which
// costs a scalar multiplication.
func parsePublicKey(kem KEM, raw []byte) (*ecdh.PublicKey, error) {
	curve, err := kem.curve()
	if err != nil {
		return nil, err
	}
	if len(raw) != kem.encSize() {
		return nil, fmt.Errorf("%w: %s key is %d bytes, want %d", ErrBadPublicKey, kem, len(raw), kem.encSize())
	}
	if kem == X25519 && !canonicalX25519(raw) {
		return nil, fmt.Errorf("%w: non-canonical X25519 encoding", ErrBadPublicKey)
	}
	// crypto/ecdh checks that a P-256 point is on the curve.
	pub, err := curve.NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	return pub, nil
}

// canonicalX25519 reports whether raw is a little-endian u-coordinate below
// 2^255-19. Honest devices never produce anything else, and accepting only
// one encoding per key keeps key comparisons meaningful.
func canonicalX25519(raw []byte) bool {
	if raw[31]&0x80 != 0 {
		return false
	}
	if raw[31] != 0x7f {
		return true
	}
	for _, b := range raw[1:31] {
		if b != 0xff {
			return true
		}
	}
	return raw[0] < 0xed
}

// x25519Probe is the probe key of checkX25519Order, made once: making it
// costs a scalar multiplication (its public key), as much as the check.
var x25519Probe = sync.OnceValues(func() (*ecdh.PrivateKey, error) {
	var scalar [32]byte
	scalar[0] = 1
	return ecdh.X25519().NewPrivateKey(scalar[:])
})

// checkX25519Order refuses keys of small order. X25519 clamps this probe
// scalar to 2^254, a multiple of the cofactor and not of the prime group
// order, so it maps exactly the small-order points to zero, and crypto/ecdh
// reports an all-zero shared secret as an error.
func checkX25519Order(pub *ecdh.PublicKey) error {
	probe, err := x25519Probe()
	if err != nil {
		return fmt.Errorf("keywrap: probe key: %w", err)
	}
	if _, err := probe.ECDH(pub); err != nil {
		return fmt.Errorf("%w: small-order X25519 point", ErrBadPublicKey)
	}
	return nil
}

// GenerateKey returns a new device key pair for kem.
func GenerateKey(kem KEM) (*ecdh.PrivateKey, error) {
	curve, err := kem.curve()
	if err != nil {
		return nil, err
	}
	k, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keywrap: generate %s key: %w", kem, err)
	}
	return k, nil
}

// Info returns the HPKE info string that binds a wrapped key to one blob
// and one device: "otaflow-enc/v1 key" ‖ blobDigest ‖ deviceID.
func Info(blobDigest [32]byte, deviceID string) []byte {
	b := make([]byte, 0, len(infoPrefix)+len(blobDigest)+len(deviceID))
	b = append(b, infoPrefix...)
	b = append(b, blobDigest[:]...)
	return append(b, deviceID...)
}

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// Wrap encrypts contentKey to the device public key devicePub (raw bytes as
// accepted by ParsePublicKey). The result is enc ‖ ciphertext,
// kem.WrappedSize() bytes.
func Wrap(kem KEM, devicePub []byte, contentKey []byte, blobDigest [32]byte, deviceID string) ([]byte, error) {
	if len(contentKey) != contentKeySize {
		return nil, fmt.Errorf("keywrap: content key is %d bytes, want %d", len(contentKey), contentKeySize)
	}
	// The order check is left to HPKE: encapsulating to a small-order X25519
	// key yields an all-zero shared secret, which crypto/ecdh refuses, so
	// Wrap only pays for the check when sealing fails.
	pub, err := parsePublicKey(kem, devicePub)
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	kdf, aead := suite()
	wrapped, err := hpke.Seal(pk, kdf, aead, Info(blobDigest, deviceID), contentKey)
	if err != nil {
		if kem == X25519 {
			if oerr := checkX25519Order(pub); oerr != nil {
				return nil, oerr
			}
		}
		return nil, fmt.Errorf("keywrap: wrap for device %q: %w", deviceID, err)
	}
	if len(wrapped) != kem.WrappedSize() {
		return nil, fmt.Errorf("keywrap: wrapped key is %d bytes, want %d", len(wrapped), kem.WrappedSize())
	}
	return wrapped, nil
}

// Unwrap recovers the content key from wrapped with the device private key.
// Apart from an unknown kem (ErrUnsupportedKEM), every failure wraps
// ErrUnwrap: wrong size, wrong key, other digest or device, or tampering.
func Unwrap(kem KEM, priv *ecdh.PrivateKey, wrapped []byte, blobDigest [32]byte, deviceID string) ([]byte, error) {
	curve, err := kem.curve()
	if err != nil {
		return nil, err
	}
	if priv == nil || priv.Curve() != curve {
		return nil, fmt.Errorf("%w: private key is not a %s key", ErrUnwrap, kem)
	}
	if len(wrapped) != kem.WrappedSize() {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrUnwrap, len(wrapped), kem.WrappedSize())
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	kdf, aead := suite()
	key, err := hpke.Open(sk, kdf, aead, Info(blobDigest, deviceID), wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	if len(key) != contentKeySize {
		return nil, fmt.Errorf("%w: content key is %d bytes", ErrUnwrap, len(key))
	}
	return key, nil
}
