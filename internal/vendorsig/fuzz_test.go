package vendorsig_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/signature"
	"github.com/otaflow/otaflow/internal/vendorsig"
)

// The fuzz targets are differential: whatever the input, this package and
// internal/signature must agree. Their seeds (f.Add and testdata/fuzz) run
// with every `go test`; `go test -fuzz=FuzzVerify` and so on explore more.

// fuzzWorld is fixed across runs so that corpus entries keep their meaning:
// openssl's fixture keys and image, plus a P-521 and an Ed25519 key made
// from fixed secrets (openssl's fixtures have no P-521 key and no private
// keys to sign mutated images with).
type fuzzWorld struct {
	image []byte
	keys  []keyPair
	p521  *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
}

func newFuzzWorld(t testing.TB) *fuzzWorld {
	t.Helper()
	w := &fuzzWorld{image: readFile(t, filepath.Join(opensslDir, "image.bin"))}
	d := bytes.Repeat([]byte{0x5a}, 66)
	d[0] = 0x01 // below the P-521 order
	var err error
	if w.p521, err = ecdsa.ParseRawPrivateKey(elliptic.P521(), d); err != nil {
		t.Fatal(err)
	}
	w.ed = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xed}, 32))
	for _, name := range []string{"ecdsa-p256.pub", "ecdsa-p384.pub", "ed25519.pub", "rsa-3072.pub"} {
		k, v := parseBoth(t, name, readFile(t, filepath.Join(opensslDir, name)))
		if v.Class != "ok" {
			t.Fatalf("%s: %s", name, v)
		}
		w.keys = append(w.keys, k)
	}
	for name, priv := range map[string]crypto.Signer{"p521": w.p521, "ed": w.ed} {
		k, v := parseBoth(t, name, pubPEM(t, priv.Public()))
		if v.Class != "ok" {
			t.Fatalf("%s: %s", name, v)
		}
		w.keys = append(w.keys, k)
	}
	slices.SortFunc(w.keys, func(a, b keyPair) int { return strings.Compare(a.vs.Name, b.vs.Name) })
	return w
}

// verifyAll checks raw over image with every fuzz key on both packages.
func (w *fuzzWorld) verifyAll(t *testing.T, raw, image []byte) verdict {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(uint64(len(raw)), uint64(len(image))))
	sv, vv := verifyBoth(t, rng, raw, w.keys, image)
	if sv != vv {
		t.Fatalf("Verify differs on signature %x:\n signature %s\n vendorsig %s", raw, sv, vv)
	}
	if n := countSentinels(vv); vv.Class != "ok" && n != 1 {
		t.Fatalf("Verify error wraps %d sentinels: %s", n, vv)
	}
	return vv
}

func countSentinels(v verdict) int {
	n := 0
	for _, s := range []error{vendorsig.ErrMalformedSignature, vendorsig.ErrNotVerified, vendorsig.ErrInvalidKey, vendorsig.ErrNoKeys} {
		if strings.Contains(v.Class, s.Error()) {
			n++
		}
	}
	return n
}

// FuzzParsePublicKey feeds the input as a PEM file, and as the DER of a
// PKIX and of a PKCS#1 PEM block.
func FuzzParsePublicKey(f *testing.F) {
	for _, in := range keyInputs(f) {
		f.Add(in)
	}
	for _, priv := range []crypto.Signer{p256A(), p384(), p521(), edA(), rsaKey()} {
		f.Add(mustDER(f, priv.Public()))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, pemBlock("PUBLIC KEY", data), pemBlock("RSA PUBLIC KEY", data)} {
			k, v := parseBoth(t, "fuzz", in)
			if t.Failed() {
				return
			}
			if v.Class != "ok" {
				if v.Class != vendorsig.ErrInvalidKey.Error() {
					t.Fatalf("error wraps %s, want only ErrInvalidKey", v.Class)
				}
				continue
			}
			// A parsed key survives a rewrite as PKIX PEM unchanged.
			again, err := vendorsig.ParsePublicKey("fuzz", pubPEM(t, k.vs.PublicKey))
			if err != nil || again.ID != k.vs.ID || again.Algorithm != k.vs.Algorithm {
				t.Fatalf("rewritten key: %+v, %v; first %+v", again, err, k.vs)
			}
			if k.vs.ID != cosignHint(t, k.vs.PublicKey) {
				t.Fatalf("ID %q is not the cosign hint", k.vs.ID)
			}
		}
	})
}

// FuzzParseSignature parses the input as a signature value and, when it
// decodes, verifies it with a key of every type over the fixture image.
func FuzzParseSignature(f *testing.F) {
	w := newFuzzWorld(f)
	for _, in := range signatureInputs(f) {
		f.Add(in)
	}
	f.Add(base64.StdEncoding.EncodeToString(sign(f, w.p521, w.image)))
	f.Add(base64.RawStdEncoding.EncodeToString(sign(f, w.ed, w.image)))
	f.Fuzz(func(t *testing.T, s string) {
		sig, serr := signature.ParseValue(s)
		raw, verr := vendorsig.ParseSignature(s)
		if sv, vv := sigVerdict(signature.Key{}, serr), vsVerdict(vendorsig.Key{}, verr); sv != vv || !bytes.Equal(sig.Raw, raw) {
			t.Fatalf("ParseSignature(%q) differs:\n signature %s %x\n vendorsig %s %x", s, sv, sig.Raw, vv, raw)
		}
		if verr != nil {
			if !errors.Is(verr, vendorsig.ErrMalformedSignature) || errors.Is(verr, vendorsig.ErrNotVerified) {
				t.Fatalf("error %q does not wrap only ErrMalformedSignature", verr)
			}
			return
		}
		if len(raw) == 0 {
			t.Fatalf("accepted %q as an empty signature", s)
		}
		if again, err := vendorsig.ParseSignature(base64.StdEncoding.EncodeToString(raw)); err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("re-encoded value reads %x, %v; first read %x", again, err, raw)
		}
		w.verifyAll(t, raw, w.image)
	})
}

// FuzzVerify checks raw signature bytes with a key of every type over the
// fixture image, or over the image with one bit flipped when flip > 0.
func FuzzVerify(f *testing.F) {
	w := newFuzzWorld(f)
	rng := mrand.New(mrand.NewPCG(5, 6))
	sigFiles, _ := filepath.Glob(filepath.Join(opensslDir, "*.sig"))
	for _, file := range sigFiles {
		raw, err := vendorsig.ParseSignature(string(readFile(f, file)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, uint32(0))
		f.Add(raw, uint32(1))
	}
	for _, c := range tamperedSignatures(f, rng, w.p521, w.image) {
		f.Add(c.raw, uint32(0))
	}
	for _, c := range tamperedSignatures(f, rng, w.ed, w.image) {
		f.Add(c.raw, uint32(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		image := w.image
		if flip > 0 {
			image = flipBit(image, int(flip-1)%(8*len(image)))
		}
		v := w.verifyAll(t, raw, image)
		if v.Class == "ok" && flip > 0 {
			t.Fatalf("verified over a tampered image: %s", v)
		}
	})
}
