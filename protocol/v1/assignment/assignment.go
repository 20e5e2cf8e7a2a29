// Package assignment signs and verifies the per-device answers of the OTA
// server ("install this release", or, with Commit, "the release you run is
// committed: raise your security floor to its securityVersion").
//
// The envelope is DSSE-like: the payload is JSON serialized once, and the
// signature covers "otaflow-assignment/v1\n" ‖ payload, so the exact bytes
// that were signed are the bytes that get parsed, and a signature made for
// any other purpose with the same key never verifies as an assignment.
// Devices refuse assignments for other devices and outside their validity
// window; replay of an old answer is bounded by ExpiresAt and, when the
// device sent a nonce, by comparing Nonce with it.
//
// The server's keys rotate through a signed key set (keyset.go): a device
// holds a Trust, verifies each assignment with the trusted key its keyID
// names, and follows the server's key sets.
package assignment

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/strictjson"
)

// domain separates assignment signatures from anything else the key signs.
const domain = "otaflow-assignment/v1\n"

// MaxPayloadSize bounds a payload; devices parse it in small RAM.
const MaxPayloadSize = 64 << 10

// MaxSecurityVersion bounds security versions and floors (32 bits, as the
// CRD and the device's persisted floor allow).
const MaxSecurityVersion = 1<<32 - 1

// Suite is the only image envelope format of v1 (docs/envelope.md); an
// assignment names it in its suite field.
const Suite = envelope.Suite

var (
	// ErrBadSignature reports a signature that does not verify with the
	// verifier's key.
	ErrBadSignature = errors.New("assignment: bad signature")
	// ErrExpired reports an assignment past its ExpiresAt.
	ErrExpired = errors.New("assignment: expired")
	// ErrNotYetValid reports an assignment issued in the future.
	ErrNotYetValid = errors.New("assignment: not yet valid")
	// ErrWrongDevice reports an assignment for another device.
	ErrWrongDevice = errors.New("assignment: issued for another device")
	// ErrMalformed reports a payload or key that does not parse or misses
	// required fields.
	ErrMalformed = errors.New("assignment: malformed")
	// ErrUnsupportedKey reports a key that is neither Ed25519 nor ECDSA
	// P-256.
	ErrUnsupportedKey = errors.New("assignment: unsupported key type")
	// ErrUnsupportedSuite reports an envelope suite this version does not
	// know; it comes wrapped in ErrMalformed.
	ErrUnsupportedSuite = errors.New("unsupported suite")
)

// Assignment tells one device which encrypted release to install, or, with
// Commit, that the release it runs is committed: its SecurityVersion
// becomes the device's anti-rollback floor.
type Assignment struct {
	DeviceID        string `json:"deviceID"`
	Rollout         string `json:"rollout"` // namespace/name
	Release         string `json:"release"` // namespace/name
	Version         string `json:"version"`
	SecurityVersion int64  `json:"securityVersion"`
	PlainSHA256     string `json:"plainSHA256"` // hex
	PlainSize       int64  `json:"plainSize"`
	EncryptedSHA256 string `json:"encryptedSHA256"` // hex
	EncryptedSize   int64  `json:"encryptedSize"`
	Suite           string `json:"suite"` // envelope.Suite
	BlobURL         string `json:"blobURL"`
	KEM             string `json:"kem"`
	WrappedKey      []byte `json:"wrappedKey"`
	// VendorSignature is the vendor's base64 signature over the plaintext,
	// passed on untouched. It is optional here; whether unsigned firmware
	// is acceptable is the device's policy.
	VendorSignature string `json:"vendorSignature"`
	// Rollback marks a previous release offered after an abort.
	Rollback bool `json:"rollback,omitempty"`
	// Commit marks a commit: the rollout that installed this release (the
	// one the device runs) committed, so the device raises its security
	// floor to SecurityVersion. Nothing is installed. Omitted when false,
	// so payloads without it are byte-identical to those of before the
	// field existed. Commit and Rollback are mutually exclusive.
	Commit bool `json:"commit,omitempty"`
	// Nonce is random hex, or the device's own nonce echoed back.
	Nonce     string    `json:"nonce"`
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Signed is a signed assignment as sent on the wire.
type Signed struct {
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
	KeyID     string `json:"keyID"`
}

// NewNonce returns a fresh random nonce for an assignment.
func NewNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("assignment: generate nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// signedMessage is what the signature covers.
func signedMessage(payload []byte) []byte {
	m := make([]byte, 0, len(domain)+len(payload))
	m = append(m, domain...)
	return append(m, payload...)
}

// Validate checks that every required field is present and well formed.
func (a *Assignment) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.DeviceID == "" {
		bad("deviceID is empty")
	}
	if !isNamespacedName(a.Rollout) {
		bad("rollout %q is not namespace/name", a.Rollout)
	}
	if !isNamespacedName(a.Release) {
		bad("release %q is not namespace/name", a.Release)
	}
	if a.Version == "" {
		bad("version is empty")
	}
	if a.SecurityVersion < 0 || a.SecurityVersion > MaxSecurityVersion {
		bad("securityVersion %d is not 0 to %d", a.SecurityVersion, int64(MaxSecurityVersion))
	}
	if !isSHA256Hex(a.PlainSHA256) {
		bad("plainSHA256 is not 64 lowercase hex characters")
	}
	if !isSHA256Hex(a.EncryptedSHA256) {
		bad("encryptedSHA256 is not 64 lowercase hex characters")
	}
	if a.PlainSize < 0 {
		bad("plainSize %d is negative", a.PlainSize)
	}
	if a.EncryptedSize < envelope.HeaderSize+envelope.TagSize || a.EncryptedSize <= a.PlainSize {
		bad("encryptedSize %d cannot hold %d plaintext bytes", a.EncryptedSize, a.PlainSize)
	}
	if a.Suite != envelope.Suite {
		errs = append(errs, fmt.Errorf("%w: suite %q, want %q", ErrUnsupportedSuite, a.Suite, envelope.Suite))
	}
	if u, err := url.Parse(a.BlobURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("blobURL %q is not an absolute http(s) URL", a.BlobURL)
	}
	if kem, err := keywrap.ParseKEM(a.KEM); err != nil {
		bad("kem: %v", err)
	} else if len(a.WrappedKey) != kem.WrappedSize() {
		bad("wrappedKey is %d bytes, want %d for %s", len(a.WrappedKey), kem.WrappedSize(), kem)
	}
	if a.VendorSignature != "" {
		if _, err := base64.StdEncoding.Strict().DecodeString(a.VendorSignature); err != nil {
			bad("vendorSignature is not base64: %v", err)
		}
	}
	if a.Commit && a.Rollback {
		bad("commit and rollback are mutually exclusive")
	}
	if !isNonce(a.Nonce) {
		bad("nonce must be 16 to 128 hex characters")
	}
	if a.IssuedAt.IsZero() {
		bad("issuedAt is missing")
	}
	if !a.ExpiresAt.After(a.IssuedAt) {
		bad("expiresAt %v is not after issuedAt %v", a.ExpiresAt, a.IssuedAt)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

func isNamespacedName(s string) bool {
	ns, name, ok := strings.Cut(s, "/")
	return ok && ns != "" && name != "" && !strings.Contains(name, "/")
}

func isSHA256Hex(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

// isNonce accepts either case: a nonce may be the device's, echoed as sent.
func isNonce(s string) bool {
	return len(s) >= 16 && len(s) <= 128 && len(s)%2 == 0 && isLowerHex(strings.ToLower(s))
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// requiredFields are the payload's JSON keys that must be present. The only
// other keys are optionalFields, which the encoder omits when false.
const requiredFields = "deviceID rollout release version securityVersion " +
	"plainSHA256 plainSize encryptedSHA256 encryptedSize suite blobURL kem " +
	"wrappedKey vendorSignature nonce issuedAt expiresAt"

// optionalFields are the payload's keys that may be absent (booleans,
// omitted when false).
const optionalFields = "rollback commit"

// parsePayload decodes a payload strictly. encoding/json alone would match
// keys case-insensitively, let the last of two duplicate keys win, read
// null and absent keys as zero values, and ignore what follows the object;
// protocol/v1/strictjson refuses all of that, and missing required keys.
func parsePayload(payload []byte) (Assignment, error) {
	var a Assignment
	if err := strictjson.UnmarshalRequiring(payload, &a, strings.Fields(requiredFields)...); err != nil {
		return Assignment{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := a.Validate(); err != nil {
		return Assignment{}, err
	}
	return a, nil
}
