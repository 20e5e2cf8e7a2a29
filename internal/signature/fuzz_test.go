package signature

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// checkAny runs sig through a Check with a key of each type over a short
// image; it must not panic and must fail with one of Verify's sentinels.
func checkAny(t *testing.T, sig Signature) {
	t.Helper()
	keys := []Key{trusted(t, "p256", p256A()), trusted(t, "ed", edA()), trusted(t, "rsa", rsaKey())}
	c, err := NewCheck(sig, keys)
	if err != nil {
		t.Fatalf("NewCheck: %v", err)
	}
	c.Write([]byte("fuzzed firmware"))
	key, err := c.Verify()
	if err == nil {
		// Only a seed signed over this very image can get here.
		if key.ID == "" || key.Name == "" {
			t.Fatalf("verified by an empty key %+v", key)
		}
		return
	}
	if n := countSentinels(err); n != 1 {
		t.Fatalf("error %q wraps %d of Verify's sentinels, want 1", err, n)
	}
}

func countSentinels(err error) int {
	n := 0
	for _, s := range []error{ErrMalformedSignature, ErrNotVerified, ErrDigestMismatch} {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

func FuzzParseBundle(f *testing.F) {
	image := []byte("fuzzed firmware")
	f.Add(cosignBundle(f, mediaTypeV03, sign(f, p256A(), image), sha(image), cosignHint(f, p256A().Public())))
	f.Add(cosignBundle(f, "application/vnd.dev.sigstore.bundle+json;version=0.2", sign(f, edA(), image), sha(image), ""))
	f.Add(cosignBundle(f, mediaTypeV03, sign(f, edA(), image), sha([]byte("other")), "hint"))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payload":"e30="}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"signature":"AA==","messageDigest":{"algorithm":"SHA2_384","digest":"AA=="}}}`))
	f.Add([]byte(`{"base64Signature":"MEUCIQ==","rekorBundle":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sig, err := ParseBundle(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedSignature) {
				t.Fatalf("error %q does not wrap ErrMalformedSignature", err)
			}
			return
		}
		if len(sig.Raw) == 0 || len(sig.Digest) != 32 || len(sig.KeyHint) > maxHintSize {
			t.Fatalf("accepted an impossible bundle: %+v", sig)
		}
		// What was read survives a rewrite in cosign's layout.
		again, err := ParseBundle(cosignBundle(t, mediaTypeV03, sig.Raw, sig.Digest, sig.KeyHint))
		if err != nil {
			t.Fatalf("rewritten bundle: %v", err)
		}
		if !bytes.Equal(again.Raw, sig.Raw) || !bytes.Equal(again.Digest, sig.Digest) || again.KeyHint != sig.KeyHint {
			t.Fatalf("rewritten bundle reads %+v, first read %+v", again, sig)
		}
		checkAny(t, sig)
	})
}

func FuzzParseValue(f *testing.F) {
	image := []byte("fuzzed firmware")
	f.Add(base64.StdEncoding.EncodeToString(sign(f, p256A(), image)) + "\n")
	f.Add(base64.StdEncoding.EncodeToString(sign(f, edA(), image)))
	f.Add(base64.RawStdEncoding.EncodeToString(sign(f, rsaKey(), image)))
	f.Add("MEUCIQ==")
	f.Add(" \n")
	f.Add("-_-_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseValue(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedSignature) {
				t.Fatalf("error %q does not wrap ErrMalformedSignature", err)
			}
			return
		}
		if len(sig.Raw) == 0 || sig.Digest != nil || sig.KeyHint != "" {
			t.Fatalf("accepted %q as %+v", s, sig)
		}
		again, err := ParseValue(base64.StdEncoding.EncodeToString(sig.Raw))
		if err != nil || !bytes.Equal(again.Raw, sig.Raw) {
			t.Fatalf("re-encoded value reads %x, %v; first read %x", again.Raw, err, sig.Raw)
		}
		checkAny(t, sig)
	})
}
