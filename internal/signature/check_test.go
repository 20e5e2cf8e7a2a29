package signature

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// verifyImage streams image through a Check in one write.
func verifyImage(t testing.TB, sig Signature, keys []Key, image []byte) (Key, error) {
	t.Helper()
	c, err := NewCheck(sig, keys)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write(image); n != len(image) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	return c.Verify()
}

func randomImage(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	image := randomImage(t, 100_000)
	other := append([]byte(nil), image...)
	other[len(other)-1] ^= 0x80 // the image changed by one byte

	kP256 := trusted(t, "vendor-keys/cosign.pub", p256A())
	kP256B := trusted(t, "vendor-keys/other.pub", p256B())
	kP384 := trusted(t, "vendor-keys/p384.pub", p384())
	kP521 := trusted(t, "vendor-keys/p521.pub", p521())
	kRSA := trusted(t, "vendor-keys/rsa.pub", rsaKey())
	kEd := trusted(t, "vendor-keys/ed.pub", edA())
	kEdB := trusted(t, "vendor-keys/old.pub", edB())

	value := func(sig []byte) Signature { return Signature{Raw: sig} }
	ecdsaSig := sign(t, p256A(), image)
	edSig := sign(t, edA(), image)

	tests := []struct {
		name    string
		sig     Signature
		keys    []Key
		image   []byte
		want    *Key   // the key that verifies
		wantErr error  // sentinel
		msg     string // exact error message, if set
		parts   []string
	}{
		{name: "ecdsa p256 cosign style", sig: value(ecdsaSig), keys: []Key{kP256}, want: &kP256},
		{name: "ecdsa p384", sig: value(sign(t, p384(), image)), keys: []Key{kP384}, want: &kP384},
		{name: "ecdsa p521", sig: value(sign(t, p521(), image)), keys: []Key{kP521}, want: &kP521},
		{name: "rsa 2048", sig: value(sign(t, rsaKey(), image)), keys: []Key{kRSA}, want: &kRSA},
		{name: "ed25519", sig: value(edSig), keys: []Key{kEd}, want: &kEd},
		{name: "sigstore ecdsa", sig: value(signSigstore(t, p256A(), image)), keys: []Key{kP256}, want: &kP256},
		{name: "sigstore rsa", sig: value(signSigstore(t, rsaKey(), image)), keys: []Key{kRSA}, want: &kRSA},
		{name: "sigstore ed25519", sig: value(signSigstore(t, edA(), image)), keys: []Key{kEd}, want: &kEd},
		{name: "empty image", sig: value(sign(t, edA(), nil)), keys: []Key{kEd}, image: []byte{}, want: &kEd},

		{name: "one of several keys, last", sig: value(ecdsaSig), keys: []Key{kEdB, kRSA, kP256B, kP256}, want: &kP256},
		{name: "one of several keys, first", sig: value(edSig), keys: []Key{kEd, kEdB, kP256}, want: &kEd},
		{name: "one of several keys, middle", sig: value(sign(t, rsaKey(), image)), keys: []Key{kEd, kRSA, kP256}, want: &kRSA},
		{name: "same key twice", sig: value(ecdsaSig), keys: []Key{kP256B, kP256, kP256}, want: &kP256},

		{
			name: "other ecdsa key", sig: value(ecdsaSig), keys: []Key{kP256B}, wantErr: ErrNotVerified,
			msg: "signature not verified by the only trusted key: vendor-keys/other.pub (ecdsa-p256): invalid signature",
		},
		{
			name: "other ed25519 keys", sig: value(edSig), keys: []Key{kEdB, kEdB}, wantErr: ErrNotVerified,
			msg: "signature not verified by any of 2 trusted keys: vendor-keys/old.pub (ed25519): invalid signature; vendor-keys/old.pub (ed25519): invalid signature",
		},
		{
			name: "other keys of each type", sig: value(ecdsaSig), keys: []Key{kP256B, kEdB, kRSA}, wantErr: ErrNotVerified,
			msg: "signature not verified by any of 3 trusted keys: " +
				"vendor-keys/other.pub (ecdsa-p256): invalid signature; " +
				"vendor-keys/old.pub (ed25519): signature is 7x bytes, Ed25519 signatures are 64; " +
				"vendor-keys/rsa.pub (rsa-2048): signature is 7x bytes, rsa-2048 signatures are 256",
		},
		{name: "ecdsa image changed by one byte", sig: value(ecdsaSig), keys: []Key{kP256}, image: other, wantErr: ErrNotVerified},
		{name: "rsa image changed by one byte", sig: value(sign(t, rsaKey(), image)), keys: []Key{kRSA}, image: other, wantErr: ErrNotVerified},
		{name: "ed25519 image changed by one byte", sig: value(edSig), keys: []Key{kEd}, image: other, wantErr: ErrNotVerified},
		{name: "ecdsa image truncated", sig: value(ecdsaSig), keys: []Key{kP256}, image: image[:len(image)-1], wantErr: ErrNotVerified},
		{name: "ed25519 image extended", sig: value(edSig), keys: []Key{kEd}, image: append(append([]byte(nil), image...), 0), wantErr: ErrNotVerified},
		{
			name: "ed25519ph is not pure ed25519", sig: value(ed25519ph(t, edA(), image)), keys: []Key{kEd}, wantErr: ErrNotVerified,
			parts: []string{"vendor-keys/ed.pub (ed25519): invalid signature"},
		},
		{
			name: "ecdsa signature of the image's digest as message", sig: value(sign(t, p256A(), sha(image))), keys: []Key{kP256}, wantErr: ErrNotVerified,
		},

		{
			name: "truncated DER", sig: value(ecdsaSig[:len(ecdsaSig)-1]), keys: []Key{kP256}, wantErr: ErrMalformedSignature,
			msg: fmt.Sprintf("malformed signature: %d bytes cannot be a signature for the only trusted key: vendor-keys/cosign.pub (ecdsa-p256): not an ASN.1 DER ECDSA signature", len(ecdsaSig)-1),
		},
		{
			name: "DER with trailing byte", sig: value(append(append([]byte(nil), ecdsaSig...), 0)), keys: []Key{kP256}, wantErr: ErrMalformedSignature,
		},
		{
			name: "truncated DER for every key type", sig: value(ecdsaSig[:10]), keys: []Key{kP256, kEd, kRSA}, wantErr: ErrMalformedSignature,
			parts: []string{
				"10 bytes cannot be a signature for any of 3 trusted keys",
				"vendor-keys/cosign.pub (ecdsa-p256): not an ASN.1 DER ECDSA signature",
				"vendor-keys/ed.pub (ed25519): signature is 10 bytes, Ed25519 signatures are 64",
				"vendor-keys/rsa.pub (rsa-2048): signature is 10 bytes, rsa-2048 signatures are 256",
			},
		},
		{name: "empty signature", sig: Signature{}, keys: []Key{kP256, kEd}, wantErr: ErrMalformedSignature},
		{name: "ed25519 signature one byte short", sig: value(edSig[:63]), keys: []Key{kEd}, wantErr: ErrMalformedSignature},
		{
			name: "64 random bytes fit ed25519 only", sig: value(randomImage(t, 64)), keys: []Key{kP256, kEd}, wantErr: ErrNotVerified,
			parts: []string{"not an ASN.1 DER ECDSA signature", "vendor-keys/ed.pub (ed25519): invalid signature"},
		},
		{
			name: "ed25519 S not reduced", sig: value(withS(edSig, addL(edSig[32:]))), keys: []Key{kEd}, wantErr: ErrNotVerified,
			parts: []string{"S is not reduced"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := image
			if tt.image != nil {
				img = tt.image
			}
			got, err := verifyImage(t, tt.sig, tt.keys, img)
			if tt.want != nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Name != tt.want.Name || got.ID != tt.want.ID || got.Algorithm != tt.want.Algorithm {
					t.Fatalf("verified by %s %s, want %s %s", got, got.ID, tt.want, tt.want.ID)
				}
				return
			}
			assertOneSentinel(t, err, tt.wantErr)
			msg := err.Error()
			if tt.msg != "" {
				// DER ECDSA signatures vary in length by a byte or two.
				want := strings.ReplaceAll(tt.msg, "7x bytes", fmt.Sprintf("%d bytes", len(tt.sig.Raw)))
				if msg != want {
					t.Errorf("message\n got %q\nwant %q", msg, want)
				}
			}
			for _, p := range tt.parts {
				if !strings.Contains(msg, p) {
					t.Errorf("message %q lacks %q", msg, p)
				}
			}
			for _, k := range tt.keys {
				if !strings.Contains(msg, k.String()) {
					t.Errorf("message %q does not name key %s", msg, k)
				}
			}
			if got != (Key{}) {
				t.Errorf("failed Verify returned key %s", got)
			}
		})
	}
}

func TestVerifyBundle(t *testing.T) {
	image := randomImage(t, 50_000)
	kP256 := trusted(t, "vendor-keys/cosign.pub", p256A())
	kP256B := trusted(t, "vendor-keys/other.pub", p256B())
	kEd := trusted(t, "vendor-keys/ed.pub", edA())
	untrustedHint := cosignHint(t, p256B().Public())

	tests := []struct {
		name    string
		bundle  []byte
		keys    []Key
		want    string // name of the verifying key
		wantErr error
		parts   []string
	}{
		{
			name:   "happy path",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256A(), image), sha(image), kP256.ID),
			keys:   []Key{kEd, kP256}, want: "vendor-keys/cosign.pub",
		},
		{
			name:   "no hint",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256A(), image), sha(image), ""),
			keys:   []Key{kP256}, want: "vendor-keys/cosign.pub",
		},
		{
			name:   "ed25519 bundle",
			bundle: cosignBundle(t, "application/vnd.dev.sigstore.bundle+json;version=0.2", sign(t, edA(), image), sha(image), kEd.ID),
			keys:   []Key{kP256, kEd}, want: "vendor-keys/ed.pub",
		},
		{
			name:   "hint of an untrusted key",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256B(), image), sha(image), untrustedHint),
			keys:   []Key{kP256, kEd}, wantErr: ErrNotVerified,
			parts: []string{
				fmt.Sprintf("the bundle names key %q, which is not trusted", untrustedHint),
				"vendor-keys/cosign.pub (ecdsa-p256): invalid signature",
			},
		},
		{
			name:   "hint of a trusted key that did not sign",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256B(), image), sha(image), kP256.ID),
			keys:   []Key{kP256, kEd}, wantErr: ErrNotVerified,
			parts: []string{"vendor-keys/cosign.pub (ecdsa-p256, named by the bundle): invalid signature"},
		},
		{
			// The hint is not authenticated; the signature decides.
			name:   "wrong hint, trusted signer",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256B(), image), sha(image), kP256.ID),
			keys:   []Key{kP256, kP256B}, want: "vendor-keys/other.pub",
		},
		{
			name:   "digest of another image",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256A(), []byte("other")), sha([]byte("other")), kP256.ID),
			keys:   []Key{kP256}, wantErr: ErrDigestMismatch,
			parts: []string{fmt.Sprintf("bundle signs sha256:%x, image is sha256:%x", sha([]byte("other")), sha(image))},
		},
		{
			// The signature is over this image but the digest is not:
			// refused, since the bundle contradicts itself.
			name:   "digest wrong, signature right",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256A(), image), sha([]byte("other")), kP256.ID),
			keys:   []Key{kP256}, wantErr: ErrDigestMismatch,
		},
		{
			// A bundle's digest is never trusted in place of the image.
			name:   "digest right, signature over another image",
			bundle: cosignBundle(t, mediaTypeV03, sign(t, p256A(), []byte("other")), sha(image), kP256.ID),
			keys:   []Key{kP256}, wantErr: ErrNotVerified,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := ParseBundle(tt.bundle)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verifyImage(t, sig, tt.keys, image)
			if tt.want != "" {
				if err != nil || got.Name != tt.want {
					t.Fatalf("Verify = %s, %v; want %s", got, err, tt.want)
				}
				return
			}
			assertOneSentinel(t, err, tt.wantErr)
			for _, p := range tt.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("message %q lacks %q", err, p)
				}
			}
		})
	}
}

// Whatever the pieces the image arrives in, the outcome is the same.
func TestWriteChunking(t *testing.T) {
	image := randomImage(t, 3_000)
	tampered := append([]byte(nil), image...)
	tampered[0] ^= 1
	keys := []Key{
		trusted(t, "p256", p256A()),
		trusted(t, "rsa", rsaKey()),
		trusted(t, "ed", edA()),
		trusted(t, "ed-b", edB()),
	}
	sigs := map[string]Signature{
		"ecdsa":             {Raw: sign(t, p256A(), image)},
		"rsa":               {Raw: sign(t, rsaKey(), image)},
		"ed25519":           {Raw: sign(t, edA(), image)},
		"ed25519 other key": {Raw: sign(t, mustEd25519(), image)},
		"bundle":            {Raw: sign(t, edA(), image), Digest: sha(image)},
	}
	chunkings := map[string]func(int) int{
		"one write":    func(rest int) int { return rest },
		"1 byte":       func(int) int { return 1 },
		"7 bytes":      func(int) int { return 7 },
		"random":       func(rest int) int { return 1 + mrand.IntN(rest) },
		"with empties": func(int) int { return mrand.IntN(3) },
	}
	for _, img := range [][]byte{image, tampered} {
		for sname, sig := range sigs {
			var first string
			for cname, next := range chunkings {
				c, err := NewCheck(sig, keys)
				if err != nil {
					t.Fatal(err)
				}
				for rest := img; len(rest) > 0; {
					n := min(next(len(rest)), len(rest))
					if w, err := c.Write(rest[:n]); w != n || err != nil {
						t.Fatalf("Write = %d, %v", w, err)
					}
					rest = rest[n:]
				}
				if !bytes.Equal(c.SHA256(), sha(img)) {
					t.Fatalf("%s/%s: SHA256 differs from sha256.Sum256", sname, cname)
				}
				key, err := c.Verify()
				got := fmt.Sprintf("%s %v", key.Name, err)
				if first == "" {
					first = got
				} else if got != first {
					t.Errorf("%s: %s gives %q, another chunking %q", sname, cname, got, first)
				}
			}
		}
	}
}

// Verify only reads state, so asking twice gives the same answer.
func TestVerifyTwice(t *testing.T) {
	image := []byte("firmware")
	c, err := NewCheck(Signature{Raw: sign(t, edA(), image)}, []Key{trusted(t, "ed", edA())})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(c, bytes.NewReader(image))
	for range 2 {
		if _, err := c.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

func assertOneSentinel(t testing.TB, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v", want)
	}
	for _, s := range []error{ErrMalformedSignature, ErrNotVerified, ErrDigestMismatch, ErrInvalidKey, ErrNoKeys} {
		if got := errors.Is(err, s); got != (s == want) {
			t.Fatalf("errors.Is(%q, %v) = %v", err, s, got)
		}
	}
}

// ed25519ph signs with Ed25519ph (RFC 8032 prehash), which cosign uses for
// Ed25519 keys when it uploads to a transparency log.
func ed25519ph(t testing.TB, priv ed25519.PrivateKey, image []byte) []byte {
	t.Helper()
	digest := sha512.Sum512(image)
	sig, err := priv.Sign(nil, digest[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
