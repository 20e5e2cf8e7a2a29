package assignment

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Signer signs assignments with the OTA server's key.
type Signer struct {
	key      crypto.Signer
	verifier *Verifier
}

// NewSigner returns a Signer for an Ed25519 or ECDSA P-256 key. The key may
// live in an HSM or KMS; only crypto.Signer is used.
func NewSigner(key crypto.Signer) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: nil key", ErrUnsupportedKey)
	}
	v, err := NewVerifier(key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, verifier: v}, nil
}

// KeyID returns the lowercase hex SHA-256 of the PKIX DER public key.
func (s *Signer) KeyID() string { return s.verifier.keyID }

// Public returns the signer's public key.
func (s *Signer) Public() crypto.PublicKey { return s.verifier.pub }

// Sign validates a, serializes it once and signs the serialization.
func (s *Signer) Sign(a Assignment) (Signed, error) {
	if err := a.Validate(); err != nil {
		return Signed{}, err
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return Signed{}, fmt.Errorf("assignment: encode: %w", err)
	}
	return s.signPayload(payload)
}

// signPayload signs payload bytes as they are; tests use it to sign
// payloads Sign would refuse.
func (s *Signer) signPayload(payload []byte) (Signed, error) {
	if len(payload) > MaxPayloadSize {
		return Signed{}, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrMalformed, len(payload), MaxPayloadSize)
	}
	sig, err := s.signMessage(signedMessage(payload))
	if err != nil {
		return Signed{}, err
	}
	return Signed{Payload: payload, Signature: sig, KeyID: s.KeyID()}, nil
}

// signMessage signs msg (domain ‖ payload) and checks the signature.
func (s *Signer) signMessage(msg []byte) ([]byte, error) {
	var (
		sig []byte
		err error
	)
	switch s.verifier.pub.(type) {
	case ed25519.PublicKey:
		sig, err = s.key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err = s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("assignment: sign: %w", err)
	}
	// A remote signer that answers with a bad signature would otherwise
	// only show up as every device refusing its update.
	if !s.verifier.verifySignature(msg, sig) {
		return nil, fmt.Errorf("assignment: signer %s produced a signature that does not verify", s.KeyID())
	}
	return sig, nil
}

// Verifier checks assignments on behalf of one device.
type Verifier struct {
	pub   crypto.PublicKey
	keyID string
}

// NewVerifier returns a Verifier for an Ed25519 or ECDSA P-256 public key.
func NewVerifier(pub crypto.PublicKey) (*Verifier, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key is %d bytes", ErrUnsupportedKey, len(k))
		}
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA key is not on P-256", ErrUnsupportedKey)
		}
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	id, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, keyID: id}, nil
}

// KeyID returns the key ID of the verifier's public key.
func (v *Verifier) KeyID() string { return v.keyID }

func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

func (v *Verifier) verifySignature(msg, sig []byte) bool {
	switch k := v.pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	}
	return false
}

// Verify checks s for the device deviceID at time now, allowing skew of
// clock difference either way. The signature is checked before the payload
// is parsed, so unauthenticated bytes never reach the JSON decoder.
func (v *Verifier) Verify(s Signed, deviceID string, now time.Time, skew time.Duration) (Assignment, error) {
	if skew < 0 {
		return Assignment{}, fmt.Errorf("assignment: negative clock skew %v", skew)
	}
	if len(s.Payload) > MaxPayloadSize {
		return Assignment{}, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrMalformed, len(s.Payload), MaxPayloadSize)
	}
	if s.KeyID != v.keyID {
		return Assignment{}, fmt.Errorf("%w: signed by key %q, want %q", ErrBadSignature, s.KeyID, v.keyID)
	}
	if !v.verifySignature(signedMessage(s.Payload), s.Signature) {
		return Assignment{}, ErrBadSignature
	}
	a, err := parsePayload(s.Payload)
	if err != nil {
		return Assignment{}, err
	}
	if a.DeviceID != deviceID {
		return Assignment{}, fmt.Errorf("%w: for %q, this is %q", ErrWrongDevice, a.DeviceID, deviceID)
	}
	if now.Add(skew).Before(a.IssuedAt) {
		return Assignment{}, fmt.Errorf("%w: issued at %v, now %v", ErrNotYetValid, a.IssuedAt, now)
	}
	if !now.Add(-skew).Before(a.ExpiresAt) {
		return Assignment{}, fmt.Errorf("%w: expired at %v, now %v", ErrExpired, a.ExpiresAt, now)
	}
	return a, nil
}
