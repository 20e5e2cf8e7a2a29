package vendorsig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"filippo.io/edwards25519"
)

// Ed25519Stream verifies a pure Ed25519 signature over a message written to
// it in pieces.
//
// Pure Ed25519 hashes R ‖ A ‖ M with SHA-512, so it cannot be checked from
// the image's SHA-256, and crypto/ed25519 has no streaming API: it needs
// the whole message in memory. Seeding the SHA-512 with R ‖ A up front lets
// the image stream through; the final check is the one crypto/ed25519.Verify
// does, on filippo.io/edwards25519 (the code Go's own crypto/ed25519 is
// built on, which the standard library does not export).
type Ed25519Stream struct {
	a   *edwards25519.Point
	sig [ed25519.SignatureSize]byte
	h   hash.Hash
}

// NewEd25519Stream fails if sig cannot be an Ed25519 signature or pub is not
// a curve point. Like crypto/ed25519 it accepts small-order and
// non-canonical public key encodings; describeKey refuses small-order keys.
func NewEd25519Stream(pub ed25519.PublicKey, sig []byte) (*Ed25519Stream, error) {
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature is %d bytes, Ed25519 signatures are %d", len(sig), ed25519.SignatureSize)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, errors.New("Ed25519 key is not a valid curve point")
	}
	s := &Ed25519Stream{a: a, h: sha512.New()}
	copy(s.sig[:], sig)
	s.h.Write(sig[:32]) // R
	s.h.Write(pub)      // A, as encoded: the signer hashed these bytes
	return s, nil
}

func (s *Ed25519Stream) Write(p []byte) (int, error) {
	return s.h.Write(p)
}

// Verify checks [S]B = R + [k]A with k = SHA-512(R ‖ A ‖ M) mod l, after all
// of M was written. It may be called more than once.
func (s *Ed25519Stream) Verify() error {
	// Cheap early reject of S ≥ 2^253, as crypto/ed25519 does.
	if s.sig[63]&224 != 0 {
		return fmt.Errorf("%w: S is not reduced", errInvalid)
	}
	S, err := edwards25519.NewScalar().SetCanonicalBytes(s.sig[32:])
	if err != nil {
		return fmt.Errorf("%w: S is not reduced", errInvalid)
	}
	var digest [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(s.h.Sum(digest[:0]))
	if err != nil {
		// Unreachable: SHA-512 output is always 64 bytes.
		return fmt.Errorf("hash to scalar: %w", err)
	}
	minusA := new(edwards25519.Point).Negate(s.a)
	R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S)
	if !bytes.Equal(s.sig[:32], R.Bytes()) {
		return errInvalid
	}
	return nil
}
