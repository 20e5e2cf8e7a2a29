package signature

import (
	"bytes"
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

	sigstore "github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

// Check verifies a signature over an image written to it. It is an io.Writer
// so the image can be streamed once, alongside other consumers, and never
// held in memory. A Check is not safe for concurrent use.
type Check struct {
	sig    Signature
	keys   []keyCheck
	sha256 hash.Hash
}

// keyCheck is the verification state for one trusted key.
type keyCheck struct {
	key Key
	// malformed says why the signature bytes cannot be a signature of this
	// key's algorithm; such a key is not tried.
	malformed error
	// verifier checks ECDSA and RSA signatures from the image's SHA-256.
	verifier sigstore.Verifier
	// ed checks Ed25519 signatures while the image streams.
	ed *vendorsig.Ed25519Stream
}

// NewCheck prepares to verify sig with any one of keys. It fails with
// ErrNoKeys if keys is empty and with ErrInvalidKey if a key is unsupported.
// Problems with the signature itself are reported by Verify, so that every
// verdict about an image comes from one place.
func NewCheck(sig Signature, keys []Key) (*Check, error) {
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
			if !isDERSignature(sig.Raw) {
				kc.malformed = errors.New("not an ASN.1 DER ECDSA signature")
				break
			}
			kc.verifier, err = sigstore.LoadVerifier(pub, crypto.SHA256)
		case *rsa.PublicKey:
			if len(sig.Raw) != pub.Size() {
				kc.malformed = fmt.Errorf("signature is %d bytes, %s signatures are %d", len(sig.Raw), key.Algorithm, pub.Size())
				break
			}
			kc.verifier, err = sigstore.LoadVerifier(pub, crypto.SHA256)
		case ed25519.PublicKey:
			kc.ed, kc.malformed = vendorsig.NewEd25519Stream(pub, sig.Raw)
		}
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: load verifier: %w", key, err)
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

// SHA256 returns the SHA-256 of everything written so far.
func (c *Check) SHA256() []byte {
	return c.sha256.Sum(nil)
}

// Verify reports which trusted key verified the signature over everything
// written, or why none did. Errors wrap exactly one of ErrDigestMismatch,
// ErrMalformedSignature and ErrNotVerified, and give each key's reason.
func (c *Check) Verify() (Key, error) {
	sum := c.SHA256()
	if c.sig.Digest != nil && !bytes.Equal(c.sig.Digest, sum) {
		return Key{}, fmt.Errorf("%w: bundle signs sha256:%x, image is sha256:%x", ErrDigestMismatch, c.sig.Digest, sum)
	}
	reasons := make([]string, 0, len(c.keys))
	decodable, hinted := 0, false
	for _, kc := range c.keys {
		label := kc.key.String()
		if c.sig.KeyHint != "" && kc.key.ID == c.sig.KeyHint {
			hinted = true
			label = fmt.Sprintf("%s (%s, named by the bundle)", kc.key.Name, kc.key.Algorithm)
		}
		if kc.malformed != nil {
			reasons = append(reasons, label+": "+kc.malformed.Error())
			continue
		}
		decodable++
		err := kc.verify(c.sig.Raw, sum)
		if err == nil {
			return kc.key, nil
		}
		reasons = append(reasons, label+": "+err.Error())
	}
	detail := strings.Join(reasons, "; ")
	if decodable == 0 {
		return Key{}, fmt.Errorf("%w: %d bytes cannot be a signature for %s: %s", ErrMalformedSignature, len(c.sig.Raw), keysPhrase(len(c.keys)), detail)
	}
	if c.sig.KeyHint != "" && !hinted {
		return Key{}, fmt.Errorf("%w by %s; the bundle names key %q, which is not trusted: %s", ErrNotVerified, keysPhrase(len(c.keys)), c.sig.KeyHint, detail)
	}
	return Key{}, fmt.Errorf("%w by %s: %s", ErrNotVerified, keysPhrase(len(c.keys)), detail)
}

func (kc keyCheck) verify(raw, sum []byte) error {
	if kc.ed != nil {
		return kc.ed.Verify()
	}
	// The digest was computed while streaming, so the verifier never reads
	// the image.
	if err := kc.verifier.VerifySignature(bytes.NewReader(raw), nil, options.WithDigest(sum)); err != nil {
		return errors.New("invalid signature")
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
// INTEGERs, the encoding cosign and openssl use for ECDSA. sigstore would
// also try other encodings; this package accepts only DER.
func isDERSignature(b []byte) bool {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(b, &v)
	return err == nil && len(rest) == 0
}
