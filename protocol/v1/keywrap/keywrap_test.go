package keywrap

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"testing"

	"github.com/otaflow/otaflow/internal/envelope"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

var kems = []KEM{X25519, P256}

func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func contentKey() []byte {
	k := make([]byte, contentKeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func mustKey(t testing.TB, kem KEM) *ecdh.PrivateKey {
	t.Helper()
	k, err := GenerateKey(kem)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContentKeySize(t *testing.T) {
	if contentKeySize != envelope.KeySize {
		t.Fatalf("contentKeySize = %d, envelope.KeySize = %d", contentKeySize, envelope.KeySize)
	}
}

func TestParseKEM(t *testing.T) {
	tests := []struct {
		in   string
		want KEM
		err  bool
	}{
		{"x25519", X25519, false},
		{"p256", P256, false},
		{"X25519", "", true},
		{"p384", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseKEM(tt.in)
		if tt.err {
			if !errors.Is(err, ErrUnsupportedKEM) {
				t.Errorf("ParseKEM(%q) = %q, %v; want ErrUnsupportedKEM", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKEM(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for kem, size := range map[KEM]int{X25519: 80, P256: 113, "p384": 0} {
		if got := kem.WrappedSize(); got != size {
			t.Errorf("%s.WrappedSize() = %d, want %d", kem, got, size)
		}
	}
}

func TestInfo(t *testing.T) {
	d := digest("blob")
	got := Info(d, "dev-1")
	want := append(append([]byte("otaflow-enc/v1 key"), d[:]...), "dev-1"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("Info = %x, want %x", got, want)
	}
	if len(got) != 18+32+5 {
		t.Fatalf("Info is %d bytes", len(got))
	}
}

func TestRoundTrip(t *testing.T) {
	for _, kem := range kems {
		t.Run(string(kem), func(t *testing.T) {
			priv := mustKey(t, kem)
			d := digest("blob")
			w, err := Wrap(kem, priv.PublicKey().Bytes(), contentKey(), d, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != kem.WrappedSize() {
				t.Fatalf("wrapped key is %d bytes, want %d", len(w), kem.WrappedSize())
			}
			w2, err := Wrap(kem, priv.PublicKey().Bytes(), contentKey(), d, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(w, w2) {
				t.Fatal("two wraps are identical: the ephemeral key is not fresh")
			}
			for _, wk := range [][]byte{w, w2} {
				got, err := Unwrap(kem, priv, wk, d, "dev-1")
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, contentKey()) {
					t.Fatal("unwrapped key differs")
				}
			}
		})
	}
}

// TestSuiteIDs opens a wrapped key with a recipient built from the numeric
// HPKE identifiers, pinning the suite a device has to implement.
func TestSuiteIDs(t *testing.T) {
	ids := map[KEM]uint16{X25519: 0x0020, P256: 0x0010}
	for _, kem := range kems {
		t.Run(string(kem), func(t *testing.T) {
			priv := mustKey(t, kem)
			d := digest("blob")
			w, err := Wrap(kem, priv.PublicKey().Bytes(), contentKey(), d, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			k, err := hpke.NewKEM(ids[kem])
			if err != nil {
				t.Fatal(err)
			}
			sk, err := k.NewPrivateKey(priv.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			kdf, err := hpke.NewKDF(0x0001)
			if err != nil {
				t.Fatal(err)
			}
			aead, err := hpke.NewAEAD(0x0002)
			if err != nil {
				t.Fatal(err)
			}
			encSize := len(priv.PublicKey().Bytes())
			r, err := hpke.NewRecipient(w[:encSize], sk, kdf, aead, Info(d, "dev-1"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Open(nil, w[encSize:])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, contentKey()) {
				t.Fatal("content key differs")
			}
		})
	}
}

func TestUnwrapFails(t *testing.T) {
	for _, kem := range kems {
		t.Run(string(kem), func(t *testing.T) {
			priv := mustKey(t, kem)
			other := mustKey(t, kem)
			otherCurve := mustKey(t, map[KEM]KEM{X25519: P256, P256: X25519}[kem])
			d := digest("blob")
			w, err := Wrap(kem, priv.PublicKey().Bytes(), contentKey(), d, "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name    string
				priv    *ecdh.PrivateKey
				wrapped []byte
				digest  [32]byte
				device  string
			}{
				{"other device", priv, w, d, "dev-2"},
				{"device ID prefix", priv, w, d, "dev-"},
				{"empty device ID", priv, w, d, ""},
				{"other digest", priv, w, digest("other blob"), "dev-1"},
				{"other private key", other, w, d, "dev-1"},
				{"private key on other curve", otherCurve, w, d, "dev-1"},
				{"nil private key", nil, w, d, "dev-1"},
				{"truncated by one", priv, w[:len(w)-1], d, "dev-1"},
				{"enc only", priv, w[:kem.encSize()], d, "dev-1"},
				{"empty", priv, nil, d, "dev-1"},
				{"extended by one", priv, append(bytes.Clone(w), 0), d, "dev-1"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := Unwrap(kem, tt.priv, tt.wrapped, tt.digest, tt.device)
					if !errors.Is(err, ErrUnwrap) || got != nil {
						t.Fatalf("Unwrap = %x, %v; want ErrUnwrap", got, err)
					}
				})
			}
			for i := range w {
				for _, mask := range []byte{0x01, 0x80} {
					bad := bytes.Clone(w)
					bad[i] ^= mask
					if got, err := Unwrap(kem, priv, bad, d, "dev-1"); !errors.Is(err, ErrUnwrap) || got != nil {
						t.Fatalf("byte %d ^ %#x: Unwrap = %x, %v; want ErrUnwrap", i, mask, got, err)
					}
				}
			}
		})
	}
	if _, err := Unwrap("p384", mustKey(t, P256), make([]byte, 113), digest("b"), "d"); !errors.Is(err, ErrUnsupportedKEM) {
		t.Fatalf("Unwrap with unknown KEM = %v, want ErrUnsupportedKEM", err)
	}
}

func TestWrapRefuses(t *testing.T) {
	xpub := mustKey(t, X25519).PublicKey().Bytes()
	ppub := mustKey(t, P256).PublicKey().Bytes()
	tests := []struct {
		name string
		kem  KEM
		pub  []byte
		key  []byte
		want error // nil: any error
	}{
		{"short content key", X25519, xpub, contentKey()[:31], nil},
		{"long content key", X25519, xpub, append(contentKey(), 0), nil},
		{"unknown KEM", "p521", ppub, contentKey(), ErrUnsupportedKEM},
		{"P-256 key as X25519", X25519, ppub, contentKey(), ErrBadPublicKey},
		{"X25519 key as P-256", P256, xpub, contentKey(), ErrBadPublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Wrap(tt.kem, tt.pub, tt.key, digest("b"), "d")
			if err == nil || w != nil {
				t.Fatalf("Wrap = %x, %v; want an error", w, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Wrap error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	xpriv := mustKey(t, X25519)
	ppriv := mustKey(t, P256)
	ppub := ppriv.PublicKey().Bytes()
	offCurve := bytes.Clone(ppub)
	offCurve[64] ^= 1
	compressedPrefix := bytes.Clone(ppub)
	compressedPrefix[0] = 0x02
	highBit := bytes.Clone(xpriv.PublicKey().Bytes())
	highBit[31] |= 0x80

	good := []struct {
		kem KEM
		pub *ecdh.PublicKey
	}{{X25519, xpriv.PublicKey()}, {P256, ppriv.PublicKey()}}
	for _, g := range good {
		got, err := ParsePublicKey(g.kem, g.pub.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", g.kem, err)
		}
		if !got.Equal(g.pub) {
			t.Fatalf("%s: parsed key differs", g.kem)
		}
	}

	bad := []struct {
		name string
		kem  KEM
		raw  string
	}{
		// Small-order X25519 points (canonical encodings).
		{"zero", X25519, "0000000000000000000000000000000000000000000000000000000000000000"},
		{"one", X25519, "0100000000000000000000000000000000000000000000000000000000000000"},
		{"order 8 (a)", X25519, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"},
		{"order 8 (b)", X25519, "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"},
		{"p-1", X25519, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		// Non-canonical encodings.
		{"p", X25519, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"p+1", X25519, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"high bit set", X25519, hex.EncodeToString(highBit)},
		{"31 bytes", X25519, hex.EncodeToString(xpriv.PublicKey().Bytes()[:31])},
		{"empty", X25519, ""},
		{"off curve", P256, hex.EncodeToString(offCurve)},
		{"compressed prefix", P256, hex.EncodeToString(compressedPrefix)},
		{"compressed", P256, "02" + hex.EncodeToString(ppub[1:33])},
		{"infinity", P256, "00"},
		{"zeros", P256, hex.EncodeToString(make([]byte, 65))},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			raw := mustHex(t, tt.raw)
			if pub, err := ParsePublicKey(tt.kem, raw); !errors.Is(err, ErrBadPublicKey) {
				t.Fatalf("ParsePublicKey = %v, %v; want ErrBadPublicKey", pub, err)
			}
			if _, err := Wrap(tt.kem, raw, contentKey(), digest("b"), "d"); !errors.Is(err, ErrBadPublicKey) {
				t.Fatalf("Wrap = %v; want ErrBadPublicKey", err)
			}
		})
	}
	if _, err := ParsePublicKey("ed25519", make([]byte, 32)); !errors.Is(err, ErrUnsupportedKEM) {
		t.Fatalf("unknown KEM: %v", err)
	}
}

func TestGenerateKey(t *testing.T) {
	for kem, curve := range map[KEM]ecdh.Curve{X25519: ecdh.X25519(), P256: ecdh.P256()} {
		k := mustKey(t, kem)
		if k.Curve() != curve {
			t.Errorf("%s: key on %v", kem, k.Curve())
		}
		if mustKey(t, kem).Equal(k) {
			t.Errorf("%s: two keys are equal", kem)
		}
	}
	if _, err := GenerateKey("rsa"); !errors.Is(err, ErrUnsupportedKEM) {
		t.Fatalf("GenerateKey(rsa) = %v", err)
	}
}

// vector is a committed wrapped key. HPKE sealing is randomized, so the
// file pins a generated output, which every later version must still open.
type vector struct {
	KEM        string `json:"kem"`
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	BlobDigest string `json:"blobDigest"`
	DeviceID   string `json:"deviceID"`
	Info       string `json:"info"`
	Wrapped    string `json:"wrapped"`
	ContentKey string `json:"contentKey"`
}

const vectorsFile = "testdata/vectors.json"

func newVector(t *testing.T, kem KEM) vector {
	priv := mustKey(t, kem)
	d := digest("otaflow keywrap vector blob")
	const device = "sensor-00042"
	ck := sha256.Sum256([]byte("otaflow keywrap vector content key"))
	w, err := Wrap(kem, priv.PublicKey().Bytes(), ck[:], d, device)
	if err != nil {
		t.Fatal(err)
	}
	return vector{
		KEM:        string(kem),
		PrivateKey: hex.EncodeToString(priv.Bytes()),
		PublicKey:  hex.EncodeToString(priv.PublicKey().Bytes()),
		BlobDigest: hex.EncodeToString(d[:]),
		DeviceID:   device,
		Info:       hex.EncodeToString(Info(d, device)),
		Wrapped:    hex.EncodeToString(w),
		ContentKey: hex.EncodeToString(ck[:]),
	}
}

func TestVectors(t *testing.T) {
	if *update {
		vs := []vector{newVector(t, X25519), newVector(t, P256)}
		out, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	seen := map[KEM]bool{}
	for _, v := range vs {
		t.Run(v.KEM, func(t *testing.T) {
			kem, err := ParseKEM(v.KEM)
			if err != nil {
				t.Fatal(err)
			}
			seen[kem] = true
			curve, _ := kem.curve()
			priv, err := curve.NewPrivateKey(mustHex(t, v.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(priv.PublicKey().Bytes()); got != v.PublicKey {
				t.Fatalf("public key = %s, want %s", got, v.PublicKey)
			}
			var d [32]byte
			if copy(d[:], mustHex(t, v.BlobDigest)) != 32 {
				t.Fatal("digest is not 32 bytes")
			}
			if got := hex.EncodeToString(Info(d, v.DeviceID)); got != v.Info {
				t.Fatalf("info = %s, want %s", got, v.Info)
			}
			wrapped := mustHex(t, v.Wrapped)
			got, err := Unwrap(kem, priv, wrapped, d, v.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != v.ContentKey {
				t.Fatalf("content key = %x, want %s", got, v.ContentKey)
			}
			if _, err := Unwrap(kem, priv, wrapped, d, v.DeviceID+"x"); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("vector opens for another device: %v", err)
			}
		})
	}
	for _, kem := range kems {
		if !seen[kem] {
			t.Errorf("no vector for %s", kem)
		}
	}
}

func BenchmarkWrapX25519(b *testing.B) {
	pub := mustKey(b, X25519).PublicKey().Bytes()
	d := digest("blob")
	ck := contentKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Wrap(X25519, pub, ck, d, "device-0001"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawHPKESeal is the baseline: a bare hpke.Seal of 32 bytes with
// the same suite and a pre-parsed key.
func BenchmarkRawHPKESeal(b *testing.B) {
	pk, err := hpke.NewDHKEMPublicKey(mustKey(b, X25519).PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	info := Info(digest("blob"), "device-0001")
	ck := contentKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, ck); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzUnwrap(f *testing.F) {
	seed := sha256.Sum256([]byte("otaflow FuzzUnwrap device key"))
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		f.Fatal(err)
	}
	d := digest("fuzz blob")
	w, err := Wrap(X25519, priv.PublicKey().Bytes(), contentKey(), d, "dev-1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(w, "dev-1")
	f.Add(w, "dev-2")
	f.Add(w[:79], "dev-1")
	f.Add(make([]byte, 80), "dev-1")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, wrapped []byte, device string) {
		key, err := Unwrap(X25519, priv, wrapped, d, device)
		if err != nil {
			if !errors.Is(err, ErrUnwrap) || key != nil {
				t.Fatalf("Unwrap = %x, %v; want nil, ErrUnwrap", key, err)
			}
			return
		}
		if len(key) != contentKeySize {
			t.Fatalf("unwrapped a %d-byte key", len(key))
		}
		// An accepted wrapped key is bound to its device ID.
		if _, err := Unwrap(X25519, priv, wrapped, d, device+"!"); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("wrapped key also opens for another device: %v", err)
		}
	})
}
