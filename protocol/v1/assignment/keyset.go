package assignment

// Key sets: how a device follows a rotation of the server's assignment
// keys (GET /v1/keys, docs/protocol.md "Assignment keys and their
// rotation").
//
// The server publishes the public halves of every key it holds, at a
// serial, signed by every one of them over "otaflow-keyset/v1\n" ‖
// payload (the same keys sign assignments under another domain, so
// neither signature verifies as the other). A device accepts a new set
// when a key it already trusts signed it, every key listed signed it
// (proof of possession), and its serial is above the one it holds; it
// then trusts exactly the listed keys, so keys that leave the set are
// forgotten. Trust is what a device holds between two sets.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/otaflow/otaflow/protocol/v1/strictjson"
)

// keySetDomain separates key set signatures from assignment signatures.
const keySetDomain = "otaflow-keyset/v1\n"

// Limits of a key set.
const (
	// MaxKeySetSize bounds a key set payload.
	MaxKeySetSize = 16 << 10
	// MaxKeySetKeys bounds the keys of a set (and its signatures).
	MaxKeySetKeys = 16
	// MaxKeySetSerial is the largest serial: an integer every JSON
	// decoder reads exactly.
	MaxKeySetSerial = 1<<53 - 1
)

// Algorithms of key set entries.
const (
	AlgEd25519   = "ed25519"
	AlgECDSAP256 = "ecdsa-p256-sha256"
)

var (
	// ErrUntrustedKey reports an assignment or a key set signed by no key
	// the device trusts.
	ErrUntrustedKey = errors.New("assignment: not signed by a trusted key")
	// ErrStaleKeySet reports a key set whose serial is below the trusted
	// one, or equal to it with other keys: a replay or a rollback.
	ErrStaleKeySet = errors.New("assignment: key set is not newer than the trusted one")
)

// KeySet is the payload of a signed key set: the server's assignment keys
// (the public halves) at one serial, ordered by key ID.
type KeySet struct {
	// Serial orders sets: 1 to MaxKeySetSerial, raised with every change of
	// keys. A device keeps 0 until it accepted a set.
	Serial int64       `json:"serial"`
	Keys   []PublicKey `json:"keys"`
}

// PublicKey is one entry of a key set.
type PublicKey struct {
	// KeyID is the lowercase hex SHA-256 of PublicKey.
	KeyID string `json:"keyID"`
	// Algorithm is AlgEd25519 or AlgECDSAP256.
	Algorithm string `json:"algorithm"`
	// PublicKey is the PKIX DER encoding.
	PublicKey []byte `json:"publicKey"`
}

// SignedKeySet is a key set as sent on the wire (the body of GET /v1/keys).
type SignedKeySet struct {
	Payload []byte `json:"payload"`
	// Signatures are by every key of the set, ordered by key ID.
	Signatures []KeySignature `json:"signatures"`
}

// KeySignature is one key's signature over "otaflow-keyset/v1\n" ‖ payload.
type KeySignature struct {
	KeyID     string `json:"keyID"`
	Signature []byte `json:"signature"`
}

// PublicKeyOf returns the key set entry of pub.
func PublicKeyOf(pub crypto.PublicKey) (PublicKey, error) {
	v, err := NewVerifier(pub)
	if err != nil {
		return PublicKey{}, err
	}
	return v.entry()
}

func (v *Verifier) entry() (PublicKey, error) {
	der, err := x509.MarshalPKIXPublicKey(v.pub)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	alg := AlgEd25519
	if _, ok := v.pub.(*ecdsa.PublicKey); ok {
		alg = AlgECDSAP256
	}
	return PublicKey{KeyID: v.keyID, Algorithm: alg, PublicKey: der}, nil
}

// verifier checks the entry (algorithm, key, key ID) and returns its
// Verifier.
func (p PublicKey) verifier() (*Verifier, error) {
	pub, err := x509.ParsePKIXPublicKey(p.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: key %.16s: publicKey: %w", ErrMalformed, p.KeyID, err)
	}
	v, err := NewVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: key %.16s: %w", ErrMalformed, p.KeyID, err)
	}
	want, _ := v.entry()
	switch {
	case p.Algorithm != want.Algorithm:
		return nil, fmt.Errorf("%w: key %.16s: algorithm %q, the key is %s", ErrMalformed, p.KeyID, p.Algorithm, want.Algorithm)
	case p.KeyID != v.keyID:
		return nil, fmt.Errorf("%w: keyID %q is not the SHA-256 of its publicKey (%s)", ErrMalformed, p.KeyID, v.keyID)
	case !bytes.Equal(p.PublicKey, want.PublicKey):
		return nil, fmt.Errorf("%w: key %.16s: publicKey is not in canonical PKIX DER", ErrMalformed, p.KeyID)
	}
	return v, nil
}

// verifiers checks every entry of ks and returns their Verifiers by key ID.
func (ks KeySet) verifiers(minSerial int64) (map[string]*Verifier, error) {
	if ks.Serial < minSerial || ks.Serial > MaxKeySetSerial {
		return nil, fmt.Errorf("%w: serial %d is not %d to %d", ErrMalformed, ks.Serial, minSerial, int64(MaxKeySetSerial))
	}
	if len(ks.Keys) == 0 || len(ks.Keys) > MaxKeySetKeys {
		return nil, fmt.Errorf("%w: %d keys, want 1 to %d", ErrMalformed, len(ks.Keys), MaxKeySetKeys)
	}
	out := make(map[string]*Verifier, len(ks.Keys))
	for _, k := range ks.Keys {
		v, err := k.verifier()
		if err != nil {
			return nil, err
		}
		if out[v.keyID] != nil {
			return nil, fmt.Errorf("%w: key %s is listed twice", ErrMalformed, v.keyID)
		}
		out[v.keyID] = v
	}
	return out, nil
}

func keySetMessage(payload []byte) []byte {
	m := make([]byte, 0, len(keySetDomain)+len(payload))
	m = append(m, keySetDomain...)
	return append(m, payload...)
}

// SignKeySet publishes the public keys of signers at serial, signed by
// every one of them. The payload depends only on serial and the keys (they
// are ordered by key ID), so servers holding the same keys publish the
// same bytes.
func SignKeySet(serial int64, signers ...*Signer) (SignedKeySet, error) {
	signers = slices.Clone(signers)
	slices.SortFunc(signers, func(a, b *Signer) int { return strings.Compare(a.KeyID(), b.KeyID()) })
	ks := KeySet{Serial: serial}
	for _, s := range signers {
		e, err := s.verifier.entry()
		if err != nil {
			return SignedKeySet{}, err
		}
		ks.Keys = append(ks.Keys, e)
	}
	if _, err := ks.verifiers(1); err != nil {
		return SignedKeySet{}, err
	}
	payload, err := json.Marshal(ks)
	if err != nil {
		return SignedKeySet{}, fmt.Errorf("assignment: encode key set: %w", err)
	}
	if len(payload) > MaxKeySetSize {
		return SignedKeySet{}, fmt.Errorf("%w: key set is %d bytes, limit %d", ErrMalformed, len(payload), MaxKeySetSize)
	}
	out := SignedKeySet{Payload: payload}
	msg := keySetMessage(payload)
	for _, s := range signers {
		sig, err := s.signMessage(msg)
		if err != nil {
			return SignedKeySet{}, err
		}
		out.Signatures = append(out.Signatures, KeySignature{KeyID: s.KeyID(), Signature: sig})
	}
	return out, nil
}

// parseKeySet decodes a payload strictly, the entries too.
func parseKeySet(payload []byte) (KeySet, error) {
	var wire struct {
		Serial int64             `json:"serial"`
		Keys   []json.RawMessage `json:"keys"`
	}
	if err := strictjson.UnmarshalRequiring(payload, &wire, "serial", "keys"); err != nil {
		return KeySet{}, fmt.Errorf("%w: key set: %w", ErrMalformed, err)
	}
	ks := KeySet{Serial: wire.Serial, Keys: make([]PublicKey, 0, len(wire.Keys))}
	for i, raw := range wire.Keys {
		var k PublicKey
		if err := strictjson.UnmarshalRequiring(raw, &k, "keyID", "algorithm", "publicKey"); err != nil {
			return KeySet{}, fmt.Errorf("%w: key set: key %d: %w", ErrMalformed, i, err)
		}
		ks.Keys = append(ks.Keys, k)
	}
	return ks, nil
}

// Trust is the set of assignment keys a device trusts and the serial of
// the key set they came from (0 for keys it was provisioned with). It is
// immutable; Update returns a new one.
type Trust struct {
	serial    int64
	verifiers map[string]*Verifier
	ids       []string // sorted
}

// NewTrust returns the trust of ks (a device's persisted keys, or keys it
// was provisioned with at serial 0).
func NewTrust(ks KeySet) (*Trust, error) {
	vs, err := ks.verifiers(0)
	if err != nil {
		return nil, err
	}
	return newTrust(ks.Serial, vs), nil
}

// TrustKeys returns the trust of a device provisioned with pubs (serial 0).
func TrustKeys(pubs ...crypto.PublicKey) (*Trust, error) {
	ks := KeySet{}
	for _, p := range pubs {
		e, err := PublicKeyOf(p)
		if err != nil {
			return nil, err
		}
		ks.Keys = append(ks.Keys, e)
	}
	return NewTrust(ks)
}

func newTrust(serial int64, vs map[string]*Verifier) *Trust {
	t := &Trust{serial: serial, verifiers: vs}
	for id := range vs {
		t.ids = append(t.ids, id)
	}
	slices.Sort(t.ids)
	return t
}

// Serial is the serial of the key set the keys came from, 0 for
// provisioned keys.
func (t *Trust) Serial() int64 { return t.serial }

// KeyIDs are the trusted key IDs, sorted.
func (t *Trust) KeyIDs() []string { return slices.Clone(t.ids) }

// Trusts reports whether the key keyID is trusted.
func (t *Trust) Trusts(keyID string) bool { return t.verifiers[keyID] != nil }

// Verifier returns the Verifier of a trusted key.
func (t *Trust) Verifier(keyID string) (*Verifier, bool) {
	v, ok := t.verifiers[keyID]
	return v, ok
}

// KeySet returns the trust as a key set, to persist it (NewTrust reads it
// back).
func (t *Trust) KeySet() KeySet {
	ks := KeySet{Serial: t.serial}
	for _, id := range t.ids {
		e, _ := t.verifiers[id].entry() // the key was encoded before
		ks.Keys = append(ks.Keys, e)
	}
	return ks
}

// Verify checks s with the trusted key it names (Verifier.Verify); a key
// ID that names no trusted key is ErrUntrustedKey.
func (t *Trust) Verify(s Signed, deviceID string, now time.Time, skew time.Duration) (Assignment, error) {
	v, ok := t.verifiers[s.KeyID]
	if !ok {
		return Assignment{}, fmt.Errorf("%w: signed by key %q", ErrUntrustedKey, s.KeyID)
	}
	return v.Verify(s, deviceID, now, skew)
}

// Update checks a signed key set against t and returns the trust it
// establishes, in order: a signature by a trusted key verifies
// (ErrUntrustedKey when no signature names one, ErrBadSignature when none
// of theirs verifies), before the payload is parsed; the payload parses
// strictly and is valid (ErrMalformed); every signature is by a listed key,
// once, and every listed key's signature verifies (ErrMalformed,
// ErrBadSignature); the serial is above t's (ErrStaleKeySet). A set at t's
// serial with t's keys changes nothing: t itself is returned.
func (t *Trust) Update(s SignedKeySet) (*Trust, error) {
	if len(s.Payload) > MaxKeySetSize {
		return nil, fmt.Errorf("%w: key set is %d bytes, limit %d", ErrMalformed, len(s.Payload), MaxKeySetSize)
	}
	if len(s.Signatures) == 0 || len(s.Signatures) > MaxKeySetKeys {
		return nil, fmt.Errorf("%w: %d key set signatures, want 1 to %d", ErrMalformed, len(s.Signatures), MaxKeySetKeys)
	}
	msg := keySetMessage(s.Payload)
	authentic := false
	var signers []string
	for _, sig := range s.Signatures {
		signers = append(signers, sig.KeyID)
		if v := t.verifiers[sig.KeyID]; v != nil && v.verifySignature(msg, sig.Signature) {
			authentic = true
			break
		}
	}
	if !authentic {
		for _, id := range signers {
			if t.verifiers[id] != nil {
				return nil, fmt.Errorf("%w: key set signature by trusted key %s", ErrBadSignature, id)
			}
		}
		return nil, fmt.Errorf("%w: key set signed by %s; trusted: %s", ErrUntrustedKey, shortIDs(signers), shortIDs(t.ids))
	}
	ks, err := parseKeySet(s.Payload)
	if err != nil {
		return nil, err
	}
	vs, err := ks.verifiers(1)
	if err != nil {
		return nil, err
	}
	if !slices.IsSortedFunc(ks.Keys, func(a, b PublicKey) int { return strings.Compare(a.KeyID, b.KeyID) }) {
		return nil, fmt.Errorf("%w: key set entries are not ordered by keyID", ErrMalformed)
	}
	signed := map[string]bool{}
	for _, sig := range s.Signatures {
		v := vs[sig.KeyID]
		switch {
		case v == nil:
			return nil, fmt.Errorf("%w: key set signed by key %q, which it does not list", ErrMalformed, sig.KeyID)
		case signed[sig.KeyID]:
			return nil, fmt.Errorf("%w: key set signed twice by key %s", ErrMalformed, sig.KeyID)
		case !v.verifySignature(msg, sig.Signature):
			return nil, fmt.Errorf("%w: key set signature by listed key %s", ErrBadSignature, sig.KeyID)
		}
		signed[sig.KeyID] = true
	}
	for id := range vs {
		if !signed[id] {
			return nil, fmt.Errorf("%w: listed key %s did not sign the key set", ErrMalformed, id)
		}
	}
	next := newTrust(ks.Serial, vs)
	switch {
	case ks.Serial < t.serial:
		return nil, fmt.Errorf("%w: serial %d, trusted serial %d", ErrStaleKeySet, ks.Serial, t.serial)
	case ks.Serial == t.serial && slices.Equal(next.ids, t.ids):
		return t, nil
	case ks.Serial == t.serial:
		return nil, fmt.Errorf("%w: serial %d is trusted with other keys", ErrStaleKeySet, ks.Serial)
	}
	return next, nil
}

// shortIDs abbreviates key IDs for messages (16 hex characters each).
func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		if len(id) > 16 {
			id = id[:16]
		}
		out[i] = id
	}
	return strings.Join(out, ", ")
}

// IsKeyID reports whether s has the form of a key ID: 64 lowercase hex
// characters.
func IsKeyID(s string) bool { return isSHA256Hex(s) }
