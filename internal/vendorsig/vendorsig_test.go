package vendorsig_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"filippo.io/edwards25519"

	"github.com/otaflow/otaflow/internal/vendorsig"
)

func TestParseSignature(t *testing.T) {
	raw := randomBytes(t, 71)
	std := base64.StdEncoding.EncodeToString(raw)
	wrapped := std[:64] + "\n" + std[64:] + "\n" // openssl base64 wraps at 64 columns
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr string
	}{
		{name: "cosign output with newline", in: std + "\n", want: raw},
		{name: "padded", in: std, want: raw},
		{name: "unpadded", in: strings.TrimRight(std, "="), want: raw},
		{name: "surrounding whitespace", in: " \t\r\n" + std + " \r\n", want: raw},
		{name: "wrapped at 64 columns", in: wrapped, want: raw},
		{name: "CRLF wrapped", in: strings.ReplaceAll(wrapped, "\n", "\r\n"), want: raw},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "only whitespace", in: " \n\t", wantErr: "empty"},
		{name: "garbage", in: "not a signature!", wantErr: "not standard base64"},
		{name: "url alphabet", in: base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}), wantErr: "not standard base64"},
		{name: "inner space", in: std[:10] + " " + std[10:], wantErr: "not standard base64"},
		{name: "truncated", in: std[:93], wantErr: "not standard base64"},
		{name: "non-zero padding bits", in: std[:len(std)-4] + "AAB=", wantErr: "not standard base64"},
		{name: "JSON bundle given as value", in: `{"mediaType":"x"}`, wantErr: "not standard base64"},
		{name: "too long", in: strings.Repeat("A", 16<<10+4), wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := vendorsig.ParseSignature(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, vendorsig.ErrMalformedSignature) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrMalformedSignature containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, tt.want) {
				t.Fatalf("got %x, want %x", sig, tt.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	rsaPKCS1 := pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey))
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pem     []byte
		pub     crypto.PublicKey
		alg     string
		wantErr string // substring; "" means success
	}{
		{name: "ecdsa p256", pem: pubPEM(t, p256A().Public()), pub: p256A().Public(), alg: "ecdsa-p256"},
		{name: "ecdsa p384", pem: pubPEM(t, p384().Public()), pub: p384().Public(), alg: "ecdsa-p384"},
		{name: "ecdsa p521", pem: pubPEM(t, p521().Public()), pub: p521().Public(), alg: "ecdsa-p521"},
		{name: "ed25519", pem: pubPEM(t, edA().Public()), pub: edA().Public(), alg: "ed25519"},
		{name: "rsa pkix", pem: pubPEM(t, rsaKey().Public()), pub: rsaKey().Public(), alg: "rsa-2048"},
		{name: "rsa pkcs1", pem: rsaPKCS1, pub: rsaKey().Public(), alg: "rsa-2048"},
		{name: "surrounding text is ignored", pem: append([]byte("# vendor key\n"), pubPEM(t, p256A().Public())...), pub: p256A().Public(), alg: "ecdsa-p256"},
		{name: "empty", pem: nil, wantErr: "no PEM block"},
		{name: "not PEM", pem: []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), wantErr: "no PEM block"},
		{name: "garbage DER", pem: pemBlock("PUBLIC KEY", []byte{0x30, 0x03, 1, 2, 3}), wantErr: "asn1"},
		{name: "unknown PEM type", pem: pemBlock("SSH KEY", []byte{1}), wantErr: "unknown Public key PEM file type"},
		{name: "private key", pem: pemBlock("EC PRIVATE KEY", []byte{1}), wantErr: "private key"},
		{name: "cosign private key", pem: pemBlock("ENCRYPTED SIGSTORE PRIVATE KEY", []byte{1}), wantErr: "private key"},
		{name: "certificate", pem: pemBlock("CERTIFICATE", []byte{1}), wantErr: "certificate"},
		{name: "two keys", pem: append(pubPEM(t, p256A().Public()), pubPEM(t, p256B().Public())...), wantErr: "more than one PEM block"},
		{name: "rsa 1024", pem: pubPEM(t, rsaPublicKey(t, 1024)), wantErr: "RSA key is 1024 bits, at least 2048 required"},
		{name: "rsa 2047", pem: pubPEM(t, rsaPublicKey(t, 2047)), wantErr: "RSA key is 2047 bits"},
		{name: "p224", pem: pubPEM(t, mustECDSA(elliptic.P224()).Public()), wantErr: "unsupported ECDSA curve P-224"},
		{name: "x25519", pem: pubPEM(t, x25519.PublicKey()), wantErr: "unsupported public key type *ecdh.PublicKey"},
		{name: "small-order ed25519", pem: pubPEM(t, ed25519.PublicKey(smallOrderPoints(t)[0])), wantErr: "small-order"},
		{name: "ed25519 not a point", pem: pubPEM(t, ed25519.PublicKey(notAPoint(t))), wantErr: "not a valid curve point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := vendorsig.ParsePublicKey("vendor-keys/"+tt.name, tt.pem)
			if tt.wantErr != "" {
				if !errors.Is(err, vendorsig.ErrInvalidKey) {
					t.Fatalf("err = %v, want ErrInvalidKey", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "vendor-keys/"+tt.name) {
					t.Fatalf("err = %q, want it to name the key and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if key.Name != "vendor-keys/"+tt.name || key.Algorithm != tt.alg {
				t.Errorf("got name %q algorithm %q, want %q", key.Name, key.Algorithm, tt.alg)
			}
			if !tt.pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.PublicKey) {
				t.Error("parsed public key differs")
			}
			if want := cosignHint(t, tt.pub); key.ID != want {
				t.Errorf("ID = %q, want cosign hint %q", key.ID, want)
			}
		})
	}
}

// The fixtures were made with openssl as docs/signatures.md shows.
func TestOpenSSLFixtures(t *testing.T) {
	image := readFile(t, filepath.Join(opensslDir, "image.bin"))
	fingerprints := map[string]string{}
	f, err := os.Open(filepath.Join(opensslDir, "fingerprints.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		name, fp, _ := strings.Cut(s.Text(), " ")
		fingerprints[name] = fp
	}
	tests := []struct{ key, sig, alg string }{
		{key: "ecdsa-p256.pub", sig: "image.bin.ecdsa-p256.sig", alg: "ecdsa-p256"},
		{key: "ecdsa-p384.pub", sig: "image.bin.ecdsa-p384.sig", alg: "ecdsa-p384"},
		{key: "ed25519.pub", sig: "image.bin.ed25519.sig", alg: "ed25519"},
		{key: "rsa-3072.pub", sig: "image.bin.rsa-3072.sig", alg: "rsa-3072"},       // base64 wrapped at 64 columns
		{key: "rsa-3072-pkcs1.pub", sig: "image.bin.rsa-3072.sig", alg: "rsa-3072"}, // RSA PUBLIC KEY
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			key, err := vendorsig.ParsePublicKey(tt.key, readFile(t, filepath.Join(opensslDir, tt.key)))
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm != tt.alg || key.ID != fingerprints[tt.alg] {
				t.Errorf("Algorithm %q ID %q, want %q %q", key.Algorithm, key.ID, tt.alg, fingerprints[tt.alg])
			}
			sig, err := vendorsig.ParseSignature(string(readFile(t, filepath.Join(opensslDir, tt.sig))))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := verifyImage(t, sig, []vendorsig.Key{key}, image); err != nil || got.Name != tt.key {
				t.Fatalf("Verify = %v, %v; want %s", got, err, tt.key)
			}
			tampered := flipBit(image, 8*len(image)/2)
			if _, err := verifyImage(t, sig, []vendorsig.Key{key}, tampered); !errors.Is(err, vendorsig.ErrNotVerified) {
				t.Fatalf("tampered image: err = %v, want ErrNotVerified", err)
			}
		})
	}
	for _, name := range []string{"ecdsa-p224.pub", "rsa-1024.pub"} {
		if _, err := vendorsig.ParsePublicKey(name, readFile(t, filepath.Join(opensslDir, name))); !errors.Is(err, vendorsig.ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", name, err)
		}
	}
}

// verifyImage streams image through a Check in random pieces.
func verifyImage(t testing.TB, sig []byte, keys []vendorsig.Key, image []byte) (vendorsig.Key, error) {
	t.Helper()
	c, err := vendorsig.NewCheck(sig, keys)
	if err != nil {
		t.Fatal(err)
	}
	writeChunked(t, c, image, mrand.New(mrand.NewPCG(uint64(len(image)), uint64(len(sig)))))
	return c.Verify()
}

func TestVerify(t *testing.T) {
	image := randomBytes(t, 100_000)
	other := flipBit(image, 8*len(image)-1)
	kP256 := trusted(t, "vendor-keys/cosign.pub", p256A())
	kP256B := trusted(t, "vendor-keys/other.pub", p256B())
	kP384 := trusted(t, "vendor-keys/p384.pub", p384())
	kP521 := trusted(t, "vendor-keys/p521.pub", p521())
	kRSA := trusted(t, "vendor-keys/rsa.pub", rsaKey())
	kEd := trusted(t, "vendor-keys/ed.pub", edA())
	kEdB := trusted(t, "vendor-keys/old.pub", edB())
	ecdsaSig := sign(t, p256A(), image)
	edSig := sign(t, edA(), image)
	rsaSig := sign(t, rsaKey(), image)

	tests := []struct {
		name    string
		sig     []byte
		keys    []vendorsig.Key
		image   []byte
		want    *vendorsig.Key
		wantErr error
		msg     string // exact message; "7x bytes" stands for the signature's length
		parts   []string
	}{
		{name: "ecdsa p256", sig: ecdsaSig, keys: []vendorsig.Key{kP256}, want: &kP256},
		{name: "ecdsa p384 over sha256", sig: sign(t, p384(), image), keys: []vendorsig.Key{kP384}, want: &kP384},
		{name: "ecdsa p521 over sha256", sig: sign(t, p521(), image), keys: []vendorsig.Key{kP521}, want: &kP521},
		{name: "rsa 2048", sig: rsaSig, keys: []vendorsig.Key{kRSA}, want: &kRSA},
		{name: "ed25519", sig: edSig, keys: []vendorsig.Key{kEd}, want: &kEd},
		{name: "empty image", sig: sign(t, edA(), nil), keys: []vendorsig.Key{kEd}, image: []byte{}, want: &kEd},
		{name: "one of several keys, last", sig: ecdsaSig, keys: []vendorsig.Key{kEdB, kRSA, kP256B, kP256}, want: &kP256},
		{name: "one of several keys, first", sig: edSig, keys: []vendorsig.Key{kEd, kEdB, kP256}, want: &kEd},
		{name: "same key twice", sig: ecdsaSig, keys: []vendorsig.Key{kP256B, kP256, kP256}, want: &kP256},

		{
			name: "other ecdsa key", sig: ecdsaSig, keys: []vendorsig.Key{kP256B}, wantErr: vendorsig.ErrNotVerified,
			msg: "signature not verified by the only trusted key: vendor-keys/other.pub (ecdsa-p256): invalid signature",
		},
		{
			name: "other keys of each type", sig: ecdsaSig, keys: []vendorsig.Key{kP256B, kEdB, kRSA}, wantErr: vendorsig.ErrNotVerified,
			msg: "signature not verified by any of 3 trusted keys: " +
				"vendor-keys/other.pub (ecdsa-p256): invalid signature; " +
				"vendor-keys/old.pub (ed25519): signature is 7x bytes, Ed25519 signatures are 64; " +
				"vendor-keys/rsa.pub (rsa-2048): signature is 7x bytes, rsa-2048 signatures are 256",
		},
		{name: "ecdsa image changed", sig: ecdsaSig, keys: []vendorsig.Key{kP256}, image: other, wantErr: vendorsig.ErrNotVerified},
		{name: "rsa image changed", sig: rsaSig, keys: []vendorsig.Key{kRSA}, image: other, wantErr: vendorsig.ErrNotVerified},
		{name: "ed25519 image changed", sig: edSig, keys: []vendorsig.Key{kEd}, image: other, wantErr: vendorsig.ErrNotVerified},
		{name: "ed25519 image extended", sig: edSig, keys: []vendorsig.Key{kEd}, image: append(append([]byte(nil), image...), 0), wantErr: vendorsig.ErrNotVerified},
		{
			name: "ed25519ph is not pure ed25519", sig: ed25519ph(t, edA(), image), keys: []vendorsig.Key{kEd}, wantErr: vendorsig.ErrNotVerified,
			parts: []string{"vendor-keys/ed.pub (ed25519): invalid signature"},
		},
		{name: "ecdsa p384 over sha384 (cosign by curve)", sig: signWith(t, p384(), crypto.SHA384, image), keys: []vendorsig.Key{kP384}, wantErr: vendorsig.ErrNotVerified},
		{name: "rsa pss", sig: rsaPSS(t, rsaKey(), image), keys: []vendorsig.Key{kRSA}, wantErr: vendorsig.ErrNotVerified},
		{
			name: "truncated DER", sig: ecdsaSig[:len(ecdsaSig)-1], keys: []vendorsig.Key{kP256}, wantErr: vendorsig.ErrMalformedSignature,
			msg: fmt.Sprintf("malformed signature: %d bytes cannot be a signature for the only trusted key: vendor-keys/cosign.pub (ecdsa-p256): not an ASN.1 DER ECDSA signature", len(ecdsaSig)-1),
		},
		{name: "ecdsa r ‖ s (IEEE P1363)", sig: p1363(t, ecdsaSig, 32), keys: []vendorsig.Key{kP256}, wantErr: vendorsig.ErrMalformedSignature},
		{name: "empty signature", sig: nil, keys: []vendorsig.Key{kP256, kEd}, wantErr: vendorsig.ErrMalformedSignature},
		{
			name: "64 random bytes fit ed25519 only", sig: randomBytes(t, 64), keys: []vendorsig.Key{kP256, kEd}, wantErr: vendorsig.ErrNotVerified,
			parts: []string{"not an ASN.1 DER ECDSA signature", "vendor-keys/ed.pub (ed25519): invalid signature"},
		},
		{
			name: "ed25519 S not reduced", sig: withS(edSig, addL(edSig[32:])), keys: []vendorsig.Key{kEd}, wantErr: vendorsig.ErrNotVerified,
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
			for _, s := range []error{vendorsig.ErrMalformedSignature, vendorsig.ErrNotVerified, vendorsig.ErrInvalidKey, vendorsig.ErrNoKeys} {
				if errors.Is(err, s) != (s == tt.wantErr) {
					t.Fatalf("errors.Is(%v, %v) = %v", err, s, !(s == tt.wantErr))
				}
			}
			msg := err.Error()
			if want := strings.ReplaceAll(tt.msg, "7x bytes", fmt.Sprintf("%d bytes", len(tt.sig))); tt.msg != "" && msg != want {
				t.Errorf("message\n got %q\nwant %q", msg, want)
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
			if got.PublicKey != nil || got.Name != "" {
				t.Errorf("failed Verify returned key %s", got)
			}
		})
	}
}

func TestNewCheckRefusesKeys(t *testing.T) {
	p224 := mustECDSA(elliptic.P224())
	tests := []struct {
		name string
		keys []vendorsig.Key
		want error
	}{
		{name: "none", keys: nil, want: vendorsig.ErrNoKeys},
		{name: "nil public key", keys: []vendorsig.Key{{Name: "nil"}}, want: vendorsig.ErrInvalidKey},
		{name: "p224", keys: []vendorsig.Key{{Name: "p224", PublicKey: &p224.PublicKey}}, want: vendorsig.ErrInvalidKey},
		{name: "rsa 1024", keys: []vendorsig.Key{{Name: "rsa", PublicKey: rsaPublicKey(t, 1024)}}, want: vendorsig.ErrInvalidKey},
		{name: "small-order ed25519", keys: []vendorsig.Key{{Name: "ed", PublicKey: ed25519.PublicKey(smallOrderPoints(t)[1])}}, want: vendorsig.ErrInvalidKey},
		{name: "pointer to ed25519", keys: []vendorsig.Key{{Name: "ed", PublicKey: new(ed25519.PublicKey)}}, want: vendorsig.ErrInvalidKey},
		{name: "one bad among good", keys: []vendorsig.Key{trusted(t, "good", p256A()), {Name: "bad", PublicKey: &p224.PublicKey}}, want: vendorsig.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := vendorsig.NewCheck([]byte{1}, tt.keys); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// Keys built by hand get their Algorithm and ID filled in.
	c, err := vendorsig.NewCheck(sign(t, edA(), []byte("fw")), []vendorsig.Key{{Name: "manual", PublicKey: edA().Public()}})
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("fw"))
	if key, err := c.Verify(); err != nil || key.Algorithm != "ed25519" || key.ID != cosignHint(t, edA().Public()) {
		t.Fatalf("Verify = %+v, %v", key, err)
	}
}

// Whatever the pieces the image arrives in, the outcome is the same, Verify
// may be asked twice, and SHA256 is the image's.
func TestWriteChunking(t *testing.T) {
	image := randomBytes(t, 3_000)
	keys := []vendorsig.Key{trusted(t, "p256", p256A()), trusted(t, "rsa", rsaKey()), trusted(t, "ed", edA()), trusted(t, "ed-b", edB())}
	sigs := map[string][]byte{
		"ecdsa":             sign(t, p256A(), image),
		"rsa":               sign(t, rsaKey(), image),
		"ed25519":           sign(t, edA(), image),
		"ed25519 other key": sign(t, mustEd25519(), image),
	}
	chunkings := map[string]func(int) int{
		"one write":    func(rest int) int { return rest },
		"1 byte":       func(int) int { return 1 },
		"7 bytes":      func(int) int { return 7 },
		"random":       func(rest int) int { return 1 + mrand.IntN(rest) },
		"with empties": func(int) int { return mrand.IntN(3) },
	}
	for _, img := range [][]byte{image, flipBit(image, 0)} {
		for sname, sig := range sigs {
			var first string
			for cname, next := range chunkings {
				c, err := vendorsig.NewCheck(sig, keys)
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
				if sum := sha256.Sum256(img); !bytes.Equal(c.SHA256(), sum[:]) {
					t.Fatalf("%s/%s: SHA256 differs from sha256.Sum256", sname, cname)
				}
				key, err := c.Verify()
				got := fmt.Sprintf("%s %v", key.Name, err)
				if again, err2 := c.Verify(); again.Name != key.Name || fmt.Sprint(err2) != fmt.Sprint(err) {
					t.Errorf("%s/%s: second Verify %s %v, first %s", sname, cname, again.Name, err2, got)
				}
				if first == "" {
					first = got
				} else if got != first {
					t.Errorf("%s: %s gives %q, another chunking %q", sname, cname, got, first)
				}
			}
		}
	}
}

// The streaming verifier must accept exactly what crypto/ed25519.Verify
// accepts, including on adversarial inputs and keys ParsePublicKey refuses.
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
	forged := func() []byte { // R = [s]B, S = s: verifies iff [k]A is the identity
		s, err := edwards25519.NewScalar().SetUniformBytes(randBytes(64))
		if err != nil {
			t.Fatal(err)
		}
		return append(new(edwards25519.Point).ScalarBaseMult(s).Bytes(), s.Bytes()...)
	}
	small, nonCanonical := smallOrderPoints(t), nonCanonicalPoints(t)
	outcomes := map[string]map[bool]int{}
	for i := range 300 {
		priv := ed25519.NewKeyFromSeed(randBytes(32))
		pub := []byte(priv.Public().(ed25519.PublicKey))
		msg := randBytes(rng.IntN(3000))
		sig := ed25519.Sign(priv, msg)
		highS := append([]byte(nil), sig...)
		highS[63] |= 0xe0
		variants := []struct {
			name          string
			pub, sig, msg []byte
			want          int // 1 must verify, 0 must not, -1 either
		}{
			{"valid", pub, sig, msg, 1},
			{"message extended", pub, sig, append(append([]byte(nil), msg...), 0), 0},
			{"R bit flipped", pub, flipBit(sig, rng.IntN(256)), msg, 0},
			{"S bit flipped", pub, flipBit(sig, 256+rng.IntN(252)), msg, 0},
			{"S + l", pub, withS(sig, addL(sig[32:])), msg, 0},
			{"S high bits", pub, highS, msg, 0},
			{"random signature", pub, randBytes(64), msg, 0},
			{"short signature", pub, sig[:63], msg, 0},
			{"key not a point", notAPoint(t), sig, msg, 0},
			{"small-order key, forged", small[i%len(small)], forged(), msg, -1},
			{"identity key, forged", small[0], forged(), msg, 1},
			{"non-canonical key, forged", nonCanonical[i%len(nonCanonical)], forged(), msg, -1},
		}
		for _, v := range variants {
			pieces := []int{rng.IntN(len(v.msg) + 1), rng.IntN(64), 1}
			got := vendorsig.Ed25519StreamVerify(v.pub, v.sig, v.msg, pieces)
			if std := ed25519.Verify(v.pub, v.msg, v.sig); got != std {
				t.Fatalf("round %d %s: stream %v, crypto/ed25519 %v\npub %x\nsig %x\nmsg %x", i, v.name, got, std, v.pub, v.sig, v.msg)
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
	if o := outcomes["small-order key, forged"]; o[true] == 0 || o[false] == 0 {
		t.Errorf("small-order forgeries did not exercise both outcomes: %v", o)
	}
}

// RFC 8032 section 7.1 test vectors 1 to 3, through the public API.
func TestEd25519RFC8032(t *testing.T) {
	for i, tt := range []struct{ pub, msg, sig string }{
		{
			pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", msg: "",
			sig: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
		},
		{
			pub: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", msg: "72",
			sig: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
		},
		{
			pub: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", msg: "af82",
			sig: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
		},
	} {
		key, err := vendorsig.ParsePublicKey("rfc8032", pubPEM(t, ed25519.PublicKey(unhex(t, tt.pub))))
		if err != nil {
			t.Fatal(err)
		}
		msg, sig := unhex(t, tt.msg), unhex(t, tt.sig)
		if _, err := verifyImage(t, sig, []vendorsig.Key{key}, msg); err != nil {
			t.Errorf("vector %d: %v", i+1, err)
		}
		if _, err := verifyImage(t, sig, []vendorsig.Key{key}, append(msg, 0)); !errors.Is(err, vendorsig.ErrNotVerified) {
			t.Errorf("vector %d, longer message: %v", i+1, err)
		}
	}
}

// Images can be hundreds of MiB: a Check hashes as it goes and keeps
// nothing it was given.
func TestStreamMemory(t *testing.T) {
	const size, chunk = 32 << 20, 32 << 10
	buf := randomBytes(t, chunk)
	gen := func(w io.Writer) {
		for i := range size / chunk {
			binary.LittleEndian.PutUint64(buf, uint64(i))
			w.Write(buf)
		}
	}
	h := sha256.New()
	gen(h)
	digest := h.Sum(nil)
	ecdsaSig, err := ecdsa.SignASN1(rand.Reader, p256A(), digest)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey(), crypto.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	edSig := signEd25519Stream(t, edA(), gen)
	for _, tt := range []struct {
		name string
		sig  []byte
		key  vendorsig.Key
	}{
		{"ecdsa", ecdsaSig, trusted(t, "p256", p256A())},
		{"rsa", rsaSig, trusted(t, "rsa", rsaKey())},
		{"ed25519", edSig, trusted(t, "ed", edA())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := vendorsig.NewCheck(tt.sig, []vendorsig.Key{tt.key})
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			gen(c)
			key, verr := c.Verify()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			if verr != nil || key.Name != tt.key.Name {
				t.Fatalf("Verify = %s, %v", key, verr)
			}
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			total := after.TotalAlloc - before.TotalAlloc
			t.Logf("streamed %d MiB: heap grew %d bytes, %d bytes allocated", size>>20, heap, total)
			if heap >= 1<<20 || total >= 1<<20 {
				t.Errorf("streaming %d MiB grew the heap by %d bytes and allocated %d bytes, want < 1 MiB each", size>>20, heap, total)
			}
		})
	}
}
