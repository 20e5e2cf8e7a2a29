package assignment

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// checkKey refuses anything but Ed25519 and ECDSA P-256 keys.
func checkKey(key any) error {
	switch k := key.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return nil
	case *ecdsa.PrivateKey:
		if k != nil && k.Curve == elliptic.P256() {
			return nil
		}
	case *ecdsa.PublicKey:
		if k != nil && k.Curve == elliptic.P256() {
			return nil
		}
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
	}
	return fmt.Errorf("%w: ECDSA key is not on P-256", ErrUnsupportedKey)
}

// decodePEM returns the first PEM block of data.
func decodePEM(data []byte) (*pem.Block, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrMalformed)
	}
	return block, nil
}

// ParsePrivateKeyPEM parses the first PEM block of data: a PKCS#8
// "PRIVATE KEY" holding an Ed25519 or ECDSA P-256 key, or a SEC 1
// "EC PRIVATE KEY" on P-256.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q", ErrUnsupportedKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, block.Type, err)
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return key.(crypto.Signer), nil
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("assignment: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if err := checkKey(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("assignment: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM parses the first PEM block of data, a PKIX
// "PUBLIC KEY" holding an Ed25519 or ECDSA P-256 key.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM block %q", ErrUnsupportedKey, block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: PUBLIC KEY: %w", ErrMalformed, err)
	}
	if err := checkKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// ParsePublicKeysPEM parses a bundle: one or more PKIX "PUBLIC KEY"
// blocks, each an Ed25519 or ECDSA P-256 key, and nothing else but
// whitespace. A device is provisioned with a bundle when it should trust
// several assignment keys from the start. The same key twice is refused,
// as is anything that is not a block (a truncated bundle would otherwise
// lose keys silently).
func ParsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	seen := map[string]bool{}
	rest := data
	for n := 1; ; n++ {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		pub, err := ParsePublicKeyPEM(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("key %d of the bundle: %w", n, err)
		}
		id, err := keyID(pub)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: key %d of the bundle repeats key %s", ErrMalformed, n, id)
		}
		seen[id] = true
		keys = append(keys, pub)
		rest = next
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: data that is not a PEM block after key %d of the bundle", ErrMalformed, len(keys))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no PEM block", ErrMalformed)
	}
	return keys, nil
}
