package signature

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

const (
	// maxBundleSize bounds what ParseBundle reads; real bundles with a
	// transparency-log entry are a few KiB.
	maxBundleSize = 1 << 20
	// maxValueSize bounds a base64 signature value; an RSA-16384 signature
	// is under 3 KiB encoded.
	maxValueSize = 16 << 10
	// maxHintSize keeps an unauthenticated hint out of messages when it is
	// absurdly long; cosign's hint is 44 characters.
	maxHintSize = 256
)

// Signature is a signature over a firmware image.
type Signature struct {
	// Raw is the signature bytes.
	Raw []byte
	// Digest is the SHA-256 the signer claims to have signed (from a
	// bundle); nil for plain signatures.
	Digest []byte
	// KeyHint is the bundle's public key hint, may be "". It is not
	// authenticated and only used in messages.
	KeyHint string
}

// ParseValue decodes a standard base64 signature, as printed by
// `cosign sign-blob --key` or `openssl base64`. Surrounding whitespace is
// trimmed; line breaks inside are ignored; padding may be omitted.
func ParseValue(b64 string) (Signature, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return Signature{}, fmt.Errorf("%w: empty signature value", ErrMalformedSignature)
	}
	if len(s) > maxValueSize {
		return Signature{}, fmt.Errorf("%w: signature value is %d bytes, at most %d expected", ErrMalformedSignature, len(s), maxValueSize)
	}
	raw, err := decodeBase64(s, base64.StdEncoding.Strict(), base64.RawStdEncoding.Strict())
	if err != nil {
		return Signature{}, fmt.Errorf("%w: signature value is not standard base64: %w", ErrMalformedSignature, err)
	}
	return Signature{Raw: raw}, nil
}

// Sigstore bundle media types that may carry a message signature.
var bundleMediaTypes = map[string]bool{
	"application/vnd.dev.sigstore.bundle+json;version=0.1": true,
	"application/vnd.dev.sigstore.bundle+json;version=0.2": true,
	"application/vnd.dev.sigstore.bundle+json;version=0.3": true,
	"application/vnd.dev.sigstore.bundle.v0.3+json":        true,
}

// Patch releases of v0.3 are compatible by definition.
var bundleV03Patch = regexp.MustCompile(`^application/vnd\.dev\.sigstore\.bundle\.v0\.3\.(0|[1-9][0-9]{0,3})\+json$`)

// bundle is the part of a protobuf-JSON sigstore bundle this package reads.
// Everything else (tlog entries, certificates, timestamps) is ignored.
type bundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial *struct {
		PublicKey *struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
	} `json:"verificationMaterial"`
	MessageSignature *struct {
		MessageDigest *struct {
			Algorithm string `json:"algorithm"`
			Digest    string `json:"digest"`
		} `json:"messageDigest"`
		Signature string `json:"signature"`
	} `json:"messageSignature"`
	DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
}

// ParseBundle reads a cosign bundle (`cosign sign-blob --bundle`), sigstore
// bundle media type v0.1 to v0.3, holding a message signature with a SHA-256
// message digest. Errors wrap ErrMalformedSignature.
func ParseBundle(data []byte) (Signature, error) {
	if len(data) > maxBundleSize {
		return Signature{}, fmt.Errorf("%w: bundle is %d bytes, at most %d accepted", ErrMalformedSignature, len(data), maxBundleSize)
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return Signature{}, fmt.Errorf("%w: cannot decode bundle JSON: %w", ErrMalformedSignature, err)
	}
	switch {
	case b.MediaType == "":
		return Signature{}, fmt.Errorf("%w: bundle has no mediaType", ErrMalformedSignature)
	case !bundleMediaTypes[b.MediaType] && !bundleV03Patch.MatchString(b.MediaType):
		return Signature{}, fmt.Errorf("%w: unsupported bundle mediaType %q", ErrMalformedSignature, b.MediaType)
	case b.MessageSignature == nil && len(b.DSSEEnvelope) > 0 && !bytes.Equal(b.DSSEEnvelope, []byte("null")):
		return Signature{}, fmt.Errorf("%w: bundle holds a DSSE attestation envelope, not a message signature over the image", ErrMalformedSignature)
	case b.MessageSignature == nil:
		return Signature{}, fmt.Errorf("%w: bundle has no messageSignature", ErrMalformedSignature)
	}
	ms := b.MessageSignature
	if ms.Signature == "" {
		return Signature{}, fmt.Errorf("%w: bundle messageSignature has no signature", ErrMalformedSignature)
	}
	// protobuf JSON writes bytes as standard base64 and reads either alphabet.
	raw, err := decodeBase64(ms.Signature, protoBase64...)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: bundle signature is not base64: %w", ErrMalformedSignature, err)
	}
	if len(raw) == 0 {
		return Signature{}, fmt.Errorf("%w: bundle signature is empty", ErrMalformedSignature)
	}
	md := ms.MessageDigest
	if md == nil {
		return Signature{}, fmt.Errorf("%w: bundle messageSignature has no messageDigest", ErrMalformedSignature)
	}
	if md.Algorithm != "SHA2_256" {
		return Signature{}, fmt.Errorf("%w: bundle messageDigest algorithm is %q, only SHA2_256 is supported", ErrMalformedSignature, md.Algorithm)
	}
	digest, err := decodeBase64(md.Digest, protoBase64...)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: bundle messageDigest is not base64: %w", ErrMalformedSignature, err)
	}
	if len(digest) != sha256.Size {
		return Signature{}, fmt.Errorf("%w: bundle messageDigest is %d bytes, SHA-256 is %d", ErrMalformedSignature, len(digest), sha256.Size)
	}
	var hint string
	if vm := b.VerificationMaterial; vm != nil && vm.PublicKey != nil {
		hint = vm.PublicKey.Hint
	}
	if len(hint) > maxHintSize {
		return Signature{}, fmt.Errorf("%w: bundle public key hint is %d bytes, at most %d accepted", ErrMalformedSignature, len(hint), maxHintSize)
	}
	return Signature{Raw: raw, Digest: digest, KeyHint: hint}, nil
}

var protoBase64 = []*base64.Encoding{
	base64.StdEncoding, base64.RawStdEncoding,
	base64.URLEncoding, base64.RawURLEncoding,
}

// decodeBase64 decodes s with the first encoding that accepts it and reports
// the first encoding's error otherwise.
func decodeBase64(s string, encs ...*base64.Encoding) ([]byte, error) {
	var first error
	for _, enc := range encs {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
