package signature

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"filippo.io/edwards25519"
	sigstore "github.com/sigstore/sigstore/pkg/signature"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

// streamVerify runs the streaming verifier over msg written in random pieces.
func streamVerify(rng *mrand.Rand, pub, sig, msg []byte) bool {
	s, err := vendorsig.NewEd25519Stream(pub, sig)
	if err != nil {
		return false
	}
	for rest := msg; len(rest) > 0; {
		n := 1 + rng.IntN(len(rest))
		s.Write(rest[:n])
		rest = rest[n:]
	}
	return s.Verify() == nil
}

func sigstoreVerify(t testing.TB, pub, sig, msg []byte) bool {
	t.Helper()
	v, err := sigstore.LoadED25519Verifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)) == nil
}

// The streaming verifier must accept exactly what crypto/ed25519.Verify and
// sigstore's ED25519Verifier accept, including on adversarial inputs.
func TestEd25519StreamMatchesStdlib(t *testing.T) {
	seed := mrand.Uint64()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0x07a))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	randScalar := func() *edwards25519.Scalar {
		s, err := edwards25519.NewScalar().SetUniformBytes(randBytes(64))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// forged returns R = [s]B, S = s, which verifies for public key A iff
	// [k]A is the identity: always for the identity, sometimes for other
	// small-order points, never in practice for honest keys.
	forged := func() []byte {
		s := randScalar()
		return append(new(edwards25519.Point).ScalarBaseMult(s).Bytes(), s.Bytes()...)
	}
	small := smallOrderPoints(t)
	for i, p := range small {
		a, err := new(edwards25519.Point).SetBytes(p)
		if err != nil || new(edwards25519.Point).MultByCofactor(a).Equal(edwards25519.NewIdentityPoint()) != 1 {
			t.Fatalf("small-order point %d is not of small order", i)
		}
	}
	// Non-canonical encodings y + p of the points with y < 19, either sign.
	var nonCanonical [][]byte
	for y := range byte(19) {
		for _, top := range []byte{0x7f, 0xff} {
			enc := bytes.Repeat([]byte{0xff}, 32)
			enc[0] = 0xed + y // p = 2^255 - 19 = ed ff … ff 7f, little-endian
			enc[31] = top
			if _, err := new(edwards25519.Point).SetBytes(enc); err == nil {
				nonCanonical = append(nonCanonical, enc)
			}
		}
	}
	if len(nonCanonical) == 0 {
		t.Fatal("no non-canonical encodings found")
	}

	type variant struct {
		name     string
		pub, sig []byte
		msg      []byte
		want     int // 1 must verify, 0 must not, -1 either
	}
	outcomes := map[string]map[bool]int{}
	const rounds = 300
	for i := range rounds {
		priv := ed25519.NewKeyFromSeed(randBytes(32))
		pub := []byte(priv.Public().(ed25519.PublicKey))
		msg := randBytes(rng.IntN(3000))
		sig := ed25519.Sign(priv, msg)
		flip := func(b []byte, bit int) []byte {
			c := slices.Clone(b)
			c[bit/8] ^= 1 << (bit % 8)
			return c
		}
		highS := slices.Clone(sig)
		highS[63] |= 0xe0
		msgFlipped := msg
		if len(msg) > 0 {
			msgFlipped = flip(msg, rng.IntN(len(msg)*8))
		} else {
			msgFlipped = []byte{0}
		}
		variants := []variant{
			{name: "valid", pub: pub, sig: sig, msg: msg, want: 1},
			{name: "message bit flipped", pub: pub, sig: sig, msg: msgFlipped, want: 0},
			{name: "R bit flipped", pub: pub, sig: flip(sig, rng.IntN(256)), msg: msg, want: 0},
			{name: "S bit flipped", pub: pub, sig: flip(sig, 256+rng.IntN(252)), msg: msg, want: 0},
			{name: "S + l (non-canonical)", pub: pub, sig: withS(sig, addL(sig[32:])), msg: msg, want: 0},
			{name: "S high bits", pub: pub, sig: highS, msg: msg, want: 0},
			{name: "random signature", pub: pub, sig: randBytes(64), msg: msg, want: 0},
			{name: "other key", pub: []byte(ed25519.NewKeyFromSeed(randBytes(32)).Public().(ed25519.PublicKey)), sig: sig, msg: msg, want: 0},
			{name: "short signature", pub: pub, sig: sig[:63], msg: msg, want: 0},
			{name: "long signature", pub: pub, sig: append(slices.Clone(sig), 0), msg: msg, want: 0},
			{name: "empty signature", pub: pub, sig: nil, msg: msg, want: 0},
			{name: "key not a point", pub: notAPoint(t), sig: sig, msg: msg, want: 0},
			{name: "small-order key, forged", pub: small[i%len(small)], sig: forged(), msg: msg, want: -1},
			{name: "small-order key, random", pub: small[i%len(small)], sig: randBytes(64), msg: msg, want: -1},
			{name: "identity key, forged", pub: small[0], sig: forged(), msg: msg, want: 1},
			{name: "non-canonical key, forged", pub: nonCanonical[i%len(nonCanonical)], sig: forged(), msg: msg, want: -1},
		}
		for _, v := range variants {
			std := ed25519.Verify(v.pub, v.msg, v.sig)
			sst := sigstoreVerify(t, v.pub, v.sig, v.msg)
			got := streamVerify(rng, v.pub, v.sig, v.msg)
			if got != std || got != sst {
				t.Fatalf("round %d %s: stream %v, crypto/ed25519 %v, sigstore %v\npub %x\nsig %x\nmsg %x", i, v.name, got, std, sst, v.pub, v.sig, v.msg)
			}
			if v.want >= 0 && got != (v.want == 1) {
				t.Fatalf("round %d %s: verified = %v", i, v.name, got)
			}
			if outcomes[v.name] == nil {
				outcomes[v.name] = map[bool]int{}
			}
			outcomes[v.name][got]++
		}
	}
	// Forgeries against small-order keys succeed only when [k]A is the
	// identity (one time in eight for order-8 points); both outcomes must
	// have been exercised for the comparison to mean anything.
	if o := outcomes["small-order key, forged"]; o[true] == 0 || o[false] == 0 {
		t.Errorf("small-order forgeries did not exercise both outcomes: %v", o)
	}
	t.Logf("outcomes over %d rounds: %v", rounds, outcomes)
}

// RFC 8032 section 7.1 test vectors 1 to 3.
func TestEd25519StreamRFC8032(t *testing.T) {
	tests := []struct{ pub, msg, sig string }{
		{
			pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			msg: "",
			sig: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
		},
		{
			pub: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			msg: "72",
			sig: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
		},
		{
			pub: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
			msg: "af82",
			sig: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
		},
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i, tt := range tests {
		pub, msg, sig := unhex(t, tt.pub), unhex(t, tt.msg), unhex(t, tt.sig)
		if !streamVerify(rng, pub, sig, msg) {
			t.Errorf("vector %d does not verify", i+1)
		}
		if streamVerify(rng, pub, sig, append(msg, 0)) {
			t.Errorf("vector %d verifies a longer message", i+1)
		}
	}
}

// signEd25519Stream signs like ed25519.Sign but reads the message twice from
// gen instead of holding it, so tests can sign images larger than memory
// should allow.
func signEd25519Stream(t testing.TB, priv ed25519.PrivateKey, gen func(io.Writer)) []byte {
	t.Helper()
	h := sha512.Sum512(priv.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	mh := sha512.New()
	mh.Write(h[32:])
	gen(mh)
	r, err := edwards25519.NewScalar().SetUniformBytes(mh.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	kh := sha512.New()
	kh.Write(R)
	kh.Write(priv.Public().(ed25519.PublicKey))
	gen(kh)
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return append(R, edwards25519.NewScalar().MultiplyAdd(k, a, r).Bytes()...)
}

// Ed25519 is deterministic, so the streaming signer must match exactly.
func TestSignEd25519Stream(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 129, 5000} {
		msg := randomImage(t, n)
		want := ed25519.Sign(edA(), msg)
		got := signEd25519Stream(t, edA(), func(w io.Writer) { w.Write(msg) })
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: streaming signature differs from ed25519.Sign", n)
		}
	}
}

// addL returns the little-endian scalar s + l, the same value mod l in a
// non-canonical encoding.
func addL(s []byte) []byte {
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	v := new(big.Int).SetBytes(reversed(s))
	v.Add(v, l)
	out := make([]byte, 32)
	v.FillBytes(out)
	return reversed(out)
}

func reversed(b []byte) []byte {
	c := slices.Clone(b)
	slices.Reverse(c)
	return c
}

func withS(sig, s []byte) []byte {
	return append(slices.Clone(sig[:32]), s...)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
