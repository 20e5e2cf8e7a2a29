package vendorsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
)

// Check verifies a signature over an image written to it. It is an io.Writer
// so the image can be streamed once, alongside other consumers, and never
// held in memory. A Check is not safe for concurrent use.
type Check struct {
	sig    []byte
	keys   []keyCheck
	sha256 hash.Hash
}

// keyCheck is the verification state for one trusted key.
type keyCheck struct {
	key Key
	// malformed says why the signature bytes cannot be a signature of this
	// key's algorithm; such a key is not tried.
	malformed error
	// ed checks Ed25519 signatures while the image streams; ECDSA and RSA
	// keys are checked from the image's SHA-256.
	ed *Ed25519Stream
}

// NewCheck prepares to verify sig (the decoded signature bytes, see
// ParseSignature) with any one of keys. It fails with ErrNoKeys if keys is
// empty and with ErrInvalidKey if a key is unsupported. Problems with the
// signature itself are reported by Verify, so that every verdict about an
// image comes from one place.
func NewCheck(sig []byte, keys []Key) (*Check, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	c := &Check{sig: sig, keys: make([]keyCheck, 0, len(keys)), sha256: sha256.New()}
	for _, k := range keys {
		key, err := describeKey(k.Name, k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w", k.Name, err)
		}
		kc := keyCheck{key: key}
		switch pub := key.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if !isDERSignature(sig) {
				kc.malformed = errors.New("not an ASN.1 DER ECDSA signature")
			}
		case *rsa.PublicKey:
			if len(sig) != pub.Size() {
				kc.malformed = fmt.Errorf("signature is %d bytes, %s signatures are %d", len(sig), key.Algorithm, pub.Size())
			}
		case ed25519.PublicKey:
			kc.ed, kc.malformed = NewEd25519Stream(pub, sig)
		}
		c.keys = append(c.keys, kc)
	}
	return c, nil
}

// Write feeds the next piece of the image. It never fails.
func (c *Check) Write(p []byte) (int, error) {
	c.sha256.Write(p)
	for _, kc := range c.keys {
		if kc.ed != nil {
			kc.ed.Write(p)
		}
	}
	return len(p), nil
}

// SHA256 returns the SHA-256 of everything written so far, so that a caller
// that needs the image's digest too does not hash it a second time.
func (c *Check) SHA256() []byte {
	return c.sha256.Sum(nil)
}

// Verify reports which trusted key verified the signature over everything
// written, or why none did. Errors wrap exactly one of ErrMalformedSignature
// and ErrNotVerified, and give each key's reason.
func (c *Check) Verify() (Key, error) {
	sum := c.SHA256()
	reasons := make([]string, 0, len(c.keys))
	decodable := 0
	for _, kc := range c.keys {
		if kc.malformed != nil {
			reasons = append(reasons, kc.key.String()+": "+kc.malformed.Error())
			continue
		}
		decodable++
		err := kc.verify(c.sig, sum)
		if err == nil {
			return kc.key, nil
		}
		reasons = append(reasons, kc.key.String()+": "+err.Error())
	}
	detail := strings.Join(reasons, "; ")
	if decodable == 0 {
		return Key{}, fmt.Errorf("%w: %d bytes cannot be a signature for %s: %s", ErrMalformedSignature, len(c.sig), keysPhrase(len(c.keys)), detail)
	}
	return Key{}, fmt.Errorf("%w by %s: %s", ErrNotVerified, keysPhrase(len(c.keys)), detail)
}

var errInvalid = errors.New("invalid signature")

func (kc keyCheck) verify(sig, sum []byte) error {
	switch pub := kc.key.PublicKey.(type) {
	case ed25519.PublicKey:
		return kc.ed.Verify()
	case *ecdsa.PublicKey:
		// SHA-256 whatever the curve: that is what cosign signed with
		// before it chose the hash by curve, and what openssl is told to
		// use in docs/signatures.md.
		if !ecdsa.VerifyASN1(pub, sum, sig) {
			return errInvalid
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum, sig) != nil {
			return errInvalid
		}
	default:
		return errInvalid // unreachable: describeKey admits no other type
	}
	return nil
}

func keysPhrase(n int) string {
	if n == 1 {
		return "the only trusted key"
	}
	return fmt.Sprintf("any of %d trusted keys", n)
}

// isDERSignature reports whether b is exactly one DER SEQUENCE of two
// INTEGERs, the encoding cosign and openssl use for ECDSA. Other encodings
// (IEEE P1363 r ‖ s) are refused.
func isDERSignature(b []byte) bool {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(b, &v)
	return err == nil && len(rest) == 0
}
