package vendorsig_test

// Differential tests: internal/signature (sigstore-based, what the cluster
// and, until now, the device used) and this package must give the same
// verdict, with the same message, on the same keys, images and signatures.

import (
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
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	sigstore "github.com/sigstore/sigstore/pkg/signature"

	"github.com/otaflow/otaflow/internal/signature"
	"github.com/otaflow/otaflow/internal/vendorsig"
)

// verdict is what a caller can observe of an outcome.
type verdict struct {
	Class string // the sentinels the error wraps, "ok" without error
	Key   string // the verifying or parsed key: name, algorithm, ID
	Msg   string
}

func (v verdict) String() string { return fmt.Sprintf("[%s] key %q: %s", v.Class, v.Key, v.Msg) }

func classOf(err error, sentinels []error) string {
	if err == nil {
		return "ok"
	}
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s) {
			names = append(names, s.Error())
		}
	}
	if len(names) == 0 {
		return "no sentinel"
	}
	return strings.Join(names, "+")
}

var (
	sigSentinels = []error{signature.ErrMalformedSignature, signature.ErrNotVerified, signature.ErrInvalidKey, signature.ErrNoKeys, signature.ErrDigestMismatch}
	vsSentinels  = []error{vendorsig.ErrMalformedSignature, vendorsig.ErrNotVerified, vendorsig.ErrInvalidKey, vendorsig.ErrNoKeys}
)

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sigVerdict(k signature.Key, err error) verdict {
	v := verdict{Class: classOf(err, sigSentinels), Msg: errMsg(err)}
	if k.PublicKey != nil || k.Name != "" {
		v.Key = k.Name + " " + k.Algorithm + " " + k.ID
	}
	return v
}

func vsVerdict(k vendorsig.Key, err error) verdict {
	v := verdict{Class: classOf(err, vsSentinels), Msg: errMsg(err)}
	if k.PublicKey != nil || k.Name != "" {
		v.Key = k.Name + " " + k.Algorithm + " " + k.ID
	}
	return v
}

// keyPair is one trusted key as each package parsed it from the same PEM.
type keyPair struct {
	sig signature.Key
	vs  vendorsig.Key
}

// parseBoth parses pemBytes with both packages and fails the test if they
// disagree in any way.
func parseBoth(t testing.TB, name string, pemBytes []byte) (keyPair, verdict) {
	t.Helper()
	sk, serr := signature.ParsePublicKey(name, pemBytes)
	vk, verr := vendorsig.ParsePublicKey(name, pemBytes)
	sv, vv := sigVerdict(sk, serr), vsVerdict(vk, verr)
	if sv != vv {
		t.Errorf("ParsePublicKey(%s) differs:\n signature %s\n vendorsig %s\nPEM:\n%s", name, sv, vv, pemBytes)
	}
	if serr == nil && verr == nil {
		if !sk.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(vk.PublicKey) {
			t.Errorf("ParsePublicKey(%s): the packages parsed different public keys", name)
		}
	}
	return keyPair{sk, vk}, vv
}

func splitKeys(keys []keyPair) ([]signature.Key, []vendorsig.Key) {
	var s []signature.Key
	var v []vendorsig.Key
	for _, k := range keys {
		s = append(s, k.sig)
		v = append(v, k.vs)
	}
	return s, v
}

// verifyBoth checks raw over image with both packages: internal/signature
// gets the image in one write, this package in random pieces.
func verifyBoth(t testing.TB, rng *mrand.Rand, raw []byte, keys []keyPair, image []byte) (sv, vv verdict) {
	t.Helper()
	sk, vk := splitKeys(keys)
	sc, serr := signature.NewCheck(signature.Signature{Raw: raw}, sk)
	vc, verr := vendorsig.NewCheck(raw, vk)
	if serr != nil || verr != nil {
		return sigVerdict(signature.Key{}, serr), vsVerdict(vendorsig.Key{}, verr)
	}
	sc.Write(image)
	writeChunked(t, vc, image, rng)
	if !bytes.Equal(sc.SHA256(), vc.SHA256()) {
		t.Errorf("SHA256 differs")
	}
	skey, serr := sc.Verify()
	vkey, verr := vc.Verify()
	return sigVerdict(skey, serr), vsVerdict(vkey, verr)
}

// dsaPEM builds a PKIX DSA public key, a type x509 parses and neither
// package supports.
func dsaPEM(t testing.TB) []byte {
	t.Helper()
	pd, err := asn1.Marshal(struct{ P, Q, G *big.Int }{oddModulus(t, 1024), oddModulus(t, 160), big.NewInt(2)})
	if err != nil {
		t.Fatal(err)
	}
	yd, err := asn1.Marshal(oddModulus(t, 1000))
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{
		Algo:      pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, Parameters: asn1.RawValue{FullBytes: pd}},
		PublicKey: asn1.BitString{Bytes: yd, BitLength: 8 * len(yd)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der)
}

func rsaPEM(t testing.TB, n *big.Int, e int) []byte {
	t.Helper()
	return pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsa.PublicKey{N: n, E: e}))
}

// keyInputs are PEM inputs for the key parsers: every case of
// internal/signature's key tests, openssl's fixtures, and more.
func keyInputs(t testing.TB) map[string][]byte {
	t.Helper()
	in := map[string][]byte{
		"ecdsa p256":       pubPEM(t, p256A().Public()),
		"ecdsa p384":       pubPEM(t, p384().Public()),
		"ecdsa p521":       pubPEM(t, p521().Public()),
		"ed25519":          pubPEM(t, edA().Public()),
		"rsa pkix":         pubPEM(t, rsaKey().Public()),
		"rsa pkcs1":        pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)),
		"surrounding text": append(append([]byte("# vendor key\n"), pubPEM(t, p256A().Public())...), "trailer\n"...),
		"pem headers":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Comment": "vendor"}, Bytes: mustDER(t, p256A().Public())}),
		"empty":            nil,
		"not PEM":          []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"),
		"no END line":      []byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGJNv0thhUZC5RDXmWg6Vv//WfknSNnPk3lR4qbr9kAE=\n"),
		"garbage DER":      pemBlock("PUBLIC KEY", []byte{0x30, 0x03, 1, 2, 3}),
		"empty DER":        pemBlock("PUBLIC KEY", nil),
		"DER trailing":     pemBlock("PUBLIC KEY", append(mustDER(t, p256A().Public()), 0)),
		"pkcs1 in pkix":    pemBlock("PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)),
		"pkix in pkcs1":    pemBlock("RSA PUBLIC KEY", mustDER(t, rsaKey().Public())),
		"ecdsa in pkcs1":   pemBlock("RSA PUBLIC KEY", mustDER(t, p256A().Public())),
		"lowercase type":   pemBlock("public key", mustDER(t, p256A().Public())),
		"unknown PEM type": pemBlock("SSH KEY", []byte{1}),
		"trusted cert":     pemBlock("TRUSTED CERTIFICATE", []byte{1}),
		"private key":      pemBlock("EC PRIVATE KEY", []byte{1}),
		"pkcs8 private":    pemBlock("PRIVATE KEY", []byte{1}),
		"cosign private":   pemBlock("ENCRYPTED SIGSTORE PRIVATE KEY", []byte{1}),
		"openssh private":  pemBlock("OPENSSH PRIVATE KEY", []byte{1}),
		"certificate":      pemBlock("CERTIFICATE", []byte{1}),
		"two keys":         append(pubPEM(t, p256A().Public()), pubPEM(t, p256B().Public())...),
		"key then cert":    append(pubPEM(t, p256A().Public()), pemBlock("CERTIFICATE", []byte{1})...),
		"rsa 1024":         pubPEM(t, rsaPublicKey(t, 1024)),
		"rsa 2047":         pubPEM(t, rsaPublicKey(t, 2047)),
		"rsa 16384":        rsaPEM(t, oddModulus(t, 16384), 65537),
		"rsa 16385":        rsaPEM(t, oddModulus(t, 16385), 65537),
		"rsa e=3":          rsaPEM(t, rsaKey().N, 3),
		"rsa e=1":          rsaPEM(t, rsaKey().N, 1),
		"rsa e=2":          rsaPEM(t, rsaKey().N, 2),
		"rsa e=65536":      rsaPEM(t, rsaKey().N, 65536),
		"rsa e=2^31-1":     rsaPEM(t, rsaKey().N, 1<<31-1),
		"rsa e=0":          rsaPEM(t, rsaKey().N, 0),
		"rsa e<0":          rsaPEM(t, rsaKey().N, -3),
		"rsa even modulus": rsaPEM(t, new(big.Int).Add(rsaKey().N, big.NewInt(1)), 65537),
		"p224":             pubPEM(t, mustECDSA(elliptic.P224()).Public()),
		"x25519":           pubPEM(t, mustX25519(t)),
		"ecdh p256":        pubPEM(t, mustECDHP256(t)),
		"dsa":              dsaPEM(t),
		"ecdsa off curve":  pemBlock("PUBLIC KEY", offCurve(t)),
		"ecdsa compressed": pemBlock("PUBLIC KEY", compressed(t)),
		"ed25519 short":    pemBlock("PUBLIC KEY", edDER(t, make([]byte, 31))),
		"ed25519 long":     pemBlock("PUBLIC KEY", edDER(t, make([]byte, 33))),
		"ed25519 no point": pubPEM(t, ed25519.PublicKey(notAPoint(t))),
	}
	for i, p := range smallOrderPoints(t) {
		in[fmt.Sprintf("small-order ed25519 %d", i)] = pubPEM(t, ed25519.PublicKey(p))
	}
	for i, p := range nonCanonicalPoints(t) {
		in[fmt.Sprintf("non-canonical ed25519 %d", i)] = pubPEM(t, ed25519.PublicKey(p))
	}
	files, err := filepath.Glob(filepath.Join(opensslDir, "*.pub"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no openssl fixtures in %s: %v", opensslDir, err)
	}
	for _, f := range files {
		in["openssl "+filepath.Base(f)] = readFile(t, f)
	}
	return in
}

func mustDER(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustX25519(t testing.TB) *ecdh.PublicKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func mustECDHP256(t testing.TB) *ecdh.PublicKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// spki re-wraps the point of a P-256 SPKI.
func spki(t testing.TB, point []byte) []byte {
	t.Helper()
	var s struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(mustDER(t, p256A().Public()), &s); err != nil {
		t.Fatal(err)
	}
	s.PublicKey = asn1.BitString{Bytes: point, BitLength: 8 * len(point)}
	der, err := asn1.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func offCurve(t testing.TB) []byte {
	t.Helper()
	pt, err := p256A().PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pt[len(pt)-1] ^= 1
	return spki(t, pt)
}

func compressed(t testing.TB) []byte {
	t.Helper()
	pub := &p256A().PublicKey
	return spki(t, elliptic.MarshalCompressed(elliptic.P256(), pub.X, pub.Y))
}

func edDER(t testing.TB, key []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}}, asn1.BitString{Bytes: key, BitLength: 8 * len(key)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDifferentialParsePublicKey(t *testing.T) {
	classes := map[string]int{}
	for name, in := range keyInputs(t) {
		_, v := parseBoth(t, "vendor-keys/"+name, in)
		classes[v.Class]++
	}
	t.Logf("verdicts: %v", classes)
	if classes["ok"] < 10 || classes["invalid public key"] < 30 {
		t.Errorf("too few of each verdict: %v", classes)
	}
}

func TestDifferentialNewCheck(t *testing.T) {
	p224 := mustECDSA(elliptic.P224())
	good := []keyPair{}
	for _, priv := range []crypto.Signer{p256A(), edA(), rsaKey()} {
		k, _ := parseBoth(t, fmt.Sprintf("%T", priv), pubPEM(t, priv.Public()))
		good = append(good, k)
	}
	hand := func(name string, pub crypto.PublicKey) keyPair {
		return keyPair{signature.Key{Name: name, PublicKey: pub}, vendorsig.Key{Name: name, PublicKey: pub}}
	}
	lists := map[string][]keyPair{
		"none":                {},
		"nil public key":      {hand("nil", nil)},
		"p224":                {hand("p224", &p224.PublicKey)},
		"rsa 1024":            {hand("rsa", rsaPublicKey(t, 1024))},
		"rsa nil modulus":     {hand("rsa", &rsa.PublicKey{E: 65537})},
		"nil rsa":             {hand("rsa", (*rsa.PublicKey)(nil))},
		"nil ecdsa":           {hand("ecdsa", (*ecdsa.PublicKey)(nil))},
		"ecdsa no curve":      {hand("ecdsa", &ecdsa.PublicKey{})},
		"small-order ed25519": {hand("ed", ed25519.PublicKey(smallOrderPoints(t)[1]))},
		"short ed25519":       {hand("ed", ed25519.PublicKey{1, 2, 3})},
		"pointer to ed25519":  {hand("ed", new(ed25519.PublicKey))},
		"private key":         {hand("priv", edA())},
		"x25519":              {hand("x", mustX25519(t))},
		"struct":              {hand("s", struct{}{})},
		"one bad among good":  {good[0], hand("bad", &p224.PublicKey)},
		"hand-built good":     {hand("manual ed", edA().Public()), hand("manual p256", p256A().Public()), hand("manual rsa", rsaKey().Public())},
		"parsed good":         good,
	}
	image := []byte("firmware")
	rng := mrand.New(mrand.NewPCG(1, 2))
	for name, keys := range lists {
		for _, raw := range [][]byte{{1}, sign(t, edA(), image), sign(t, p256A(), image), sign(t, rsaKey(), image)} {
			sv, vv := verifyBoth(t, rng, raw, keys, image)
			if sv != vv {
				t.Errorf("%s: differ\n signature %s\n vendorsig %s", name, sv, vv)
			}
		}
	}
}

// signatureInputs are base64 inputs for the signature parsers: the cases of
// internal/signature's tests, its fuzz corpus, and openssl's fixtures.
func signatureInputs(t testing.TB) map[string]string {
	t.Helper()
	raw := randomBytes(t, 71)
	std := base64.StdEncoding.EncodeToString(raw)
	wrapped := std[:64] + "\n" + std[64:] + "\n"
	in := map[string]string{
		"cosign newline":   std + "\n",
		"padded":           std,
		"unpadded":         strings.TrimRight(std, "="),
		"whitespace":       " \t\r\n" + std + " \r\n",
		"wrapped":          wrapped,
		"CRLF wrapped":     strings.ReplaceAll(wrapped, "\n", "\r\n"),
		"vertical tab":     "\v" + std + "\f",
		"NBSP":             "\u00a0" + std,
		"empty":            "",
		"only whitespace":  " \n\t",
		"garbage":          "not a signature!",
		"url alphabet":     base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}),
		"raw url":          base64.RawURLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0}),
		"inner space":      std[:10] + " " + std[10:],
		"inner tab":        std[:10] + "\t" + std[10:],
		"truncated":        std[:93],
		"one char":         "A",
		"padding only":     "====",
		"over-padded":      std + "==",
		"padding inside":   "AA==AA==",
		"non-zero padding": std[:len(std)-4] + "AAB=",
		"JSON bundle":      `{"mediaType":"x"}`,
		"NUL":              std + "\x00",
		"max size":         strings.Repeat("A", 16<<10),
		"too long":         strings.Repeat("A", 16<<10+4),
		"too long, spaced": " " + strings.Repeat("A", 16<<10) + " ",
	}
	for _, dir := range []string{
		filepath.Join("..", "signature", "testdata", "fuzz", "FuzzParseValue"),
		filepath.Join("testdata", "fuzz", "FuzzParseSignature"),
	} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			for i, v := range readCorpus(t, f) {
				if s, ok := v.(string); ok {
					in[fmt.Sprintf("corpus %s %d", filepath.Base(f), i)] = s
				}
			}
		}
	}
	sigs, _ := filepath.Glob(filepath.Join(opensslDir, "*.sig"))
	for _, f := range sigs {
		in["openssl "+filepath.Base(f)] = string(readFile(t, f))
	}
	return in
}

// readCorpus reads a "go test fuzz v1" file: one Go literal per line,
// string(...) or []byte(...).
func readCorpus(t testing.TB, path string) []any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(readFile(t, path))), "\n")
	if len(lines) == 0 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a fuzz corpus file", path)
	}
	var out []any
	for _, l := range lines[1:] {
		for _, p := range []struct {
			prefix string
			conv   func(string) any
		}{
			{"string(", func(s string) any { return s }},
			{"[]byte(", func(s string) any { return []byte(s) }},
		} {
			if lit, ok := strings.CutPrefix(l, p.prefix); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
				if err != nil {
					t.Fatalf("%s: %q: %v", path, l, err)
				}
				out = append(out, p.conv(s))
			}
		}
	}
	return out
}

func TestDifferentialParseSignature(t *testing.T) {
	classes := map[string]int{}
	for name, in := range signatureInputs(t) {
		s, serr := signature.ParseValue(in)
		v, verr := vendorsig.ParseSignature(in)
		sv, vv := sigVerdict(signature.Key{}, serr), vsVerdict(vendorsig.Key{}, verr)
		if sv != vv || !bytes.Equal(s.Raw, v) {
			t.Errorf("%s: differ\n signature %s %x\n vendorsig %s %x", name, sv, s.Raw, vv, v)
		}
		classes[vv.Class]++
	}
	t.Logf("verdicts: %v", classes)
	if classes["ok"] < 10 || classes["malformed signature"] < 10 {
		t.Errorf("too few of each verdict: %v", classes)
	}
}

// signedCase is a signature to check, with the key that made it.
type signedCase struct {
	name string
	raw  []byte
}

// tamperedSignatures derives, from a signer, valid and adversarial
// signatures over image.
func tamperedSignatures(t testing.TB, rng *mrand.Rand, priv crypto.Signer, image []byte) []signedCase {
	t.Helper()
	valid := sign(t, priv, image)
	other := append(slices.Clone(image), 'x')
	sv, err := sigstore.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sigstoreSig, err := sv.SignMessage(bytes.NewReader(image))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(image)
	cases := []signedCase{
		{"valid", valid},
		{"sigstore signer", sigstoreSig},
		{"other image", sign(t, priv, other)},
		{"digest signed as the message", sign(t, priv, digest[:])},
		{"first bit flipped", flipBit(valid, 0)},
		{"random bit flipped", flipBit(valid, rng.IntN(8*len(valid)))},
		{"last bit flipped", flipBit(valid, 8*len(valid)-1)},
		{"truncated", valid[:len(valid)-1]},
		{"extended", append(slices.Clone(valid), 0)},
		{"random, same length", randomBytes(t, len(valid))},
		{"zeros, same length", make([]byte, len(valid))},
		{"empty", nil},
	}
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		r, s := ecdsaRS(t, valid)
		n := k.Curve.Params().N
		cases = append(cases,
			signedCase{"r ‖ s (IEEE P1363)", p1363(t, valid, size)},
			signedCase{"high S", highS(t, valid, k.Curve)},
			signedCase{"negative r", ecdsaDER(t, new(big.Int).Neg(r), s)},
			signedCase{"zero s", ecdsaDER(t, r, new(big.Int))},
			signedCase{"r + n", ecdsaDER(t, new(big.Int).Add(r, n), s)},
			signedCase{"sha384", signWith(t, priv, crypto.SHA384, image)},
			signedCase{"sha512", signWith(t, priv, crypto.SHA512, image)},
			signedCase{"sha1", signWith(t, priv, crypto.SHA1, image)},
		)
		if valid[1] < 0x80 {
			cases = append(cases, signedCase{"BER long-form length", berLength(t, valid)})
		}
	case *rsa.PrivateKey:
		full := bytes.Repeat([]byte{0xff}, len(valid))
		cases = append(cases,
			signedCase{"pss", rsaPSS(t, k, image)},
			signedCase{"sha512", signWith(t, priv, crypto.SHA512, image)},
			signedCase{"sha1", signWith(t, priv, crypto.SHA1, image)},
			signedCase{"above the modulus", full},
			signedCase{"leading zero added", append([]byte{0}, valid...)},
		)
	case ed25519.PrivateKey:
		high := slices.Clone(valid)
		high[63] |= 0xe0
		cases = append(cases,
			signedCase{"ed25519ph", ed25519ph(t, k, image)},
			signedCase{"S + l", withS(valid, addL(valid[32:]))},
			signedCase{"S high bits", high},
			signedCase{"R flipped", flipBit(valid, rng.IntN(256))},
			signedCase{"S flipped", flipBit(valid, 256+rng.IntN(252))},
			signedCase{"identity R, zero S", append(unhex(t, "0100000000000000000000000000000000000000000000000000000000000000"), make([]byte, 32)...)},
		)
	}
	return cases
}

// The heart of it: for each key type, valid and tampered signatures over
// valid and tampered images, with the right key, a wrong key, all keys and
// keys of other types only.
func TestDifferentialVerify(t *testing.T) {
	seed := mrand.Uint64()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0xd1f))
	image := randomBytes(t, 4099)
	images := map[string][]byte{
		"image":       image,
		"bit flipped": flipBit(image, rng.IntN(8*len(image))),
		"truncated":   image[:len(image)-1],
		"extended":    append(slices.Clone(image), 0),
		"empty":       {},
	}
	type signer struct {
		name       string
		priv, peer crypto.Signer
		family     string
	}
	signers := []signer{
		{"p256", p256A(), p256B(), "ecdsa"},
		{"p384", p384(), mustECDSA(elliptic.P384()), "ecdsa"},
		{"p521", p521(), mustECDSA(elliptic.P521()), "ecdsa"},
		{"rsa", rsaKey(), rsaKeyB(), "rsa"},
		{"ed25519", edA(), edB(), "ed25519"},
	}
	key := func(name string, priv crypto.Signer) keyPair {
		k, v := parseBoth(t, "vendor-keys/"+name, pubPEM(t, priv.Public()))
		if v.Class != "ok" {
			t.Fatalf("key %s: %s", name, v)
		}
		return k
	}
	// One key of each type, two for P-256 and Ed25519 (P-384 and P-521
	// verifications are slow under the race detector).
	var all []keyPair
	for _, s := range signers {
		if s.name == "p256" || s.name == "ed25519" {
			all = append(all, key(s.name+"-peer", s.peer))
		}
		all = append(all, key(s.name, s.priv))
	}
	classes := map[string]int{}
	mismatches := 0
	for _, s := range signers {
		own, peer := key(s.name, s.priv), key(s.name+"-peer", s.peer)
		var others []keyPair
		for _, o := range signers {
			if o.family != s.family {
				others = append(others, key(o.name, o.priv))
			}
		}
		lists := map[string][]keyPair{
			"own key":           {own},
			"wrong key":         {peer},
			"all keys":          all,
			"other types only":  others,
			"own key, repeated": {peer, own, own},
		}
		// Signatures over the empty image too, so that "empty" has a valid case.
		sigs := append(tamperedSignatures(t, rng, s.priv, image), signedCase{"valid over empty image", sign(t, s.priv, nil)})
		for _, sc := range sigs {
			for iname, img := range images {
				for lname, keys := range lists {
					if len(keys) > 1 && iname != "image" && iname != "bit flipped" {
						continue // the other images add nothing with several keys
					}
					sv, vv := verifyBoth(t, rng, sc.raw, keys, img)
					classes[vv.Class]++
					if sv != vv {
						mismatches++
						if mismatches <= 20 {
							t.Errorf("%s / %s / %s / %s: differ\n signature %s\n vendorsig %s", s.name, sc.name, iname, lname, sv, vv)
						}
					}
				}
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d mismatches", mismatches)
	}
	t.Logf("verdicts: %v", classes)
	for _, c := range []string{"ok", "malformed signature", "signature not verified"} {
		if classes[c] < 30 {
			t.Errorf("only %d %q verdicts: %v", classes[c], c, classes)
		}
	}
}

// openssl's fixtures: every signature with every subset of the fixture
// keys, over the image and a tampered one.
func TestDifferentialOpenSSL(t *testing.T) {
	image := readFile(t, filepath.Join(opensslDir, "image.bin"))
	files, _ := filepath.Glob(filepath.Join(opensslDir, "*.pub"))
	var keys []keyPair
	for _, f := range files {
		if k, v := parseBoth(t, filepath.Base(f), readFile(t, f)); v.Class == "ok" {
			keys = append(keys, k)
		}
	}
	if len(keys) < 4 {
		t.Fatalf("only %d usable openssl keys", len(keys))
	}
	sigFiles, _ := filepath.Glob(filepath.Join(opensslDir, "*.sig"))
	rng := mrand.New(mrand.NewPCG(3, 4))
	ok := 0
	for _, f := range sigFiles {
		s, serr := signature.ParseValue(string(readFile(t, f)))
		v, verr := vendorsig.ParseSignature(string(readFile(t, f)))
		if serr != nil || verr != nil || !bytes.Equal(s.Raw, v) {
			t.Fatalf("%s: %v, %v", f, serr, verr)
		}
		for mask := 1; mask < 1<<len(keys); mask++ {
			var subset []keyPair
			for i, k := range keys {
				if mask&(1<<i) != 0 {
					subset = append(subset, k)
				}
			}
			for _, img := range [][]byte{image, flipBit(image, 8*len(image)/2)} {
				sv, vv := verifyBoth(t, rng, v, subset, img)
				if sv != vv {
					t.Errorf("%s, keys %b: differ\n signature %s\n vendorsig %s", filepath.Base(f), mask, sv, vv)
				}
				if vv.Class == "ok" {
					ok++
				}
			}
		}
	}
	if ok == 0 {
		t.Error("no fixture signature verified")
	}
}
