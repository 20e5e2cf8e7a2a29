// Package tokenseal seals a device's bearer token to the device's enrolled
// HPKE public key (RFC 9180, base mode) in the answer to POST /v1/enroll.
// Public keys are not secret, so anyone holding a bootstrap token can ask
// to enroll a known device ID with its key; sealing makes the answer
// useless to everyone but the holder of the private key (proof of
// possession at the moment the token is used).
//
// The suite is keywrap's: DHKEM(X25519, HKDF-SHA256) or DHKEM(P-256,
// HKDF-SHA256) with HKDF-SHA256 and AES-256-GCM, single-shot, empty aad.
// The HPKE info is
//
//	"otaflow-token/v1 bearer" ‖ server key ID (32 raw bytes) ‖ device ID
//
// where the server key ID is the enrollment answer's assignmentKeyID (the
// SHA-256 of the server's assignment-signing key, which the device trusts
// already). The prefix differs from keywrap's "otaflow-enc/v1 key" within
// its first 9 bytes, so no info string is both: a sealed token never opens
// as a wrapped content key, nor a wrapped content key as a token, even at
// equal sizes.
package tokenseal

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// InfoPrefix starts every HPKE info string. The key ID that follows has a
// fixed size and the device ID runs to the end, so no length is needed.
const InfoPrefix = "otaflow-token/v1 bearer"

// aeadOverhead is the AES-256-GCM tag size.
const aeadOverhead = 16

var (
	// ErrOpen reports a sealed token that does not open with the given
	// private key, server key ID and device ID, or that opens to something
	// other than a bearer token.
	ErrOpen = errors.New("tokenseal: cannot open sealed token")
	// ErrBadToken reports a token Seal refuses: not 1 to MaxTokenLen
	// characters of RFC 6750's b64token.
	ErrBadToken = errors.New("tokenseal: not a bearer token")
	// ErrBadKeyID reports a server key ID that is not 64 lowercase hex
	// characters.
	ErrBadKeyID = errors.New("tokenseal: server key ID is not a hex SHA-256")
)

// ValidToken reports whether t can be sent as "Authorization: Bearer t":
// 1 to protov1.MaxTokenLen characters of RFC 6750's b64token (letters,
// digits, - . _ ~ + /, then optional trailing =).
func ValidToken(t string) bool {
	if t == "" || len(t) > protov1.MaxTokenLen {
		return false
	}
	body := strings.TrimRight(t, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

// ParseKeyID decodes a server key ID (assignmentKeyID): exactly 64
// lowercase hex characters.
func ParseKeyID(s string) ([32]byte, error) {
	var id [32]byte
	if len(s) != 64 || strings.ToLower(s) != s {
		return id, fmt.Errorf("%w: %q", ErrBadKeyID, s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w: %q", ErrBadKeyID, s)
	}
	return id, nil
}

// Info returns the HPKE info string that binds a sealed token to one
// server key and one device: InfoPrefix ‖ keyID ‖ deviceID.
func Info(keyID [32]byte, deviceID string) []byte {
	b := make([]byte, 0, len(InfoPrefix)+len(keyID)+len(deviceID))
	b = append(b, InfoPrefix...)
	b = append(b, keyID[:]...)
	return append(b, deviceID...)
}

// encSize is the size of the encapsulated key for kem, 0 if unknown.
func encSize(kem keywrap.KEM) int {
	switch kem {
	case keywrap.X25519:
		return 32
	case keywrap.P256:
		return 65
	}
	return 0
}

// SealedSize returns the size of a sealed token of tokenLen characters, or
// 0 for an unsupported KEM.
func SealedSize(kem keywrap.KEM, tokenLen int) int {
	if encSize(kem) == 0 {
		return 0
	}
	return encSize(kem) + tokenLen + aeadOverhead
}

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// Seal encrypts token to the device public key devicePub (raw bytes as
// keywrap.ParsePublicKey accepts them) for the server whose assignment key
// ID is serverKeyID and the device deviceID. The result is enc ‖
// ciphertext, SealedSize(kem, len(token)) bytes.
func Seal(kem keywrap.KEM, devicePub []byte, token, serverKeyID, deviceID string) ([]byte, error) {
	if !ValidToken(token) {
		return nil, ErrBadToken
	}
	keyID, err := ParseKeyID(serverKeyID)
	if err != nil {
		return nil, err
	}
	// The full check, small-order X25519 points included: enrollment is
	// rare, and a sealed token must never be readable without the key.
	pub, err := keywrap.ParsePublicKey(kem, devicePub)
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tokenseal: %w", err)
	}
	kdf, aead := suite()
	sealed, err := hpke.Seal(pk, kdf, aead, Info(keyID, deviceID), []byte(token))
	if err != nil {
		return nil, fmt.Errorf("tokenseal: seal for device %q: %w", deviceID, err)
	}
	if len(sealed) != SealedSize(kem, len(token)) {
		return nil, fmt.Errorf("tokenseal: sealed token is %d bytes, want %d", len(sealed), SealedSize(kem, len(token)))
	}
	return sealed, nil
}

// Open recovers the bearer token from sealed with the device private key.
// Apart from an unknown kem (keywrap.ErrUnsupportedKEM), every failure
// wraps ErrOpen: wrong size, wrong key, another server key ID or device,
// tampering, or a plaintext that is not a bearer token.
func Open(kem keywrap.KEM, priv *ecdh.PrivateKey, sealed []byte, serverKeyID, deviceID string) (string, error) {
	if _, err := keywrap.ParseKEM(string(kem)); err != nil {
		return "", err
	}
	want := ecdh.X25519()
	if kem == keywrap.P256 {
		want = ecdh.P256()
	}
	if priv == nil || priv.Curve() != want {
		return "", fmt.Errorf("%w: private key is not a %s key", ErrOpen, kem)
	}
	keyID, err := ParseKeyID(serverKeyID)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrOpen, err)
	}
	if minSize, maxSize := SealedSize(kem, 1), SealedSize(kem, protov1.MaxTokenLen); len(sealed) < minSize || len(sealed) > maxSize {
		return "", fmt.Errorf("%w: sealed token is %d bytes, want %d to %d", ErrOpen, len(sealed), minSize, maxSize)
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("tokenseal: %w", err)
	}
	kdf, aead := suite()
	plain, err := hpke.Open(sk, kdf, aead, Info(keyID, deviceID), sealed)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrOpen, err)
	}
	if tok := string(plain); ValidToken(tok) {
		return tok, nil
	}
	return "", fmt.Errorf("%w: it opens, but not to a bearer token", ErrOpen)
}

// OpenResponse returns the bearer token of an enrollment answer for
// deviceID: the answer must name that device, carry sealedToken (standard
// base64) and no clear token, and the sealed token must open with priv for
// the answer's assignmentKeyID. Apart from an unknown kem, every failure
// wraps ErrOpen.
func OpenResponse(kem keywrap.KEM, priv *ecdh.PrivateKey, deviceID string, r protov1.EnrollResponse) (string, error) {
	switch {
	case r.DeviceID != deviceID:
		return "", fmt.Errorf("%w: the answer is for device %q, not %q", ErrOpen, r.DeviceID, deviceID)
	case r.LegacyToken != "":
		return "", fmt.Errorf("%w: the answer also carries a token in clear", ErrOpen)
	case r.SealedToken == "":
		return "", fmt.Errorf("%w: the answer has no sealedToken", ErrOpen)
	}
	sealed, err := base64.StdEncoding.Strict().DecodeString(r.SealedToken)
	if err != nil {
		return "", fmt.Errorf("%w: sealedToken is not standard base64: %v", ErrOpen, err)
	}
	return Open(kem, priv, sealed, r.AssignmentKeyID, deviceID)
}
