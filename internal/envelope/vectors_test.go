package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the FuzzDecrypt seed files")

const (
	vectorsFile = "testdata/vectors.json"
	// generatorMod251 names the only plaintext generator: byte i is i mod 251.
	generatorMod251 = "bytes i mod 251"
	// inlineLimit is the largest blob whose bytes are written out in full;
	// larger ones are given by digest only.
	inlineLimit = 4096
)

// vector is one entry of testdata/vectors.json. Intermediate values
// (commitment, payload key, header) are there to help debug other decoders.
type vector struct {
	Name             string  `json:"name"`
	Key              string  `json:"key"`
	Salt             string  `json:"salt"`
	ChunkLog2        uint8   `json:"chunkLog2"`
	Plaintext        *string `json:"plaintext,omitempty"` // hex; absent when Generator is set
	Generator        string  `json:"generator,omitempty"`
	PlaintextSize    int64   `json:"plaintextSize"`
	PlaintextSHA256  string  `json:"plaintextSHA256"`
	Commitment       string  `json:"commitment"`
	PayloadKey       string  `json:"payloadKey"`
	Header           string  `json:"header"`
	CiphertextSize   int64   `json:"ciphertextSize"`
	CiphertextSHA256 string  `json:"ciphertextSHA256"`
	Ciphertext       string  `json:"ciphertext,omitempty"`
}

type vectorDef struct {
	name      string
	chunkLog2 uint8
	plaintext []byte // literal, or nil to use the generator
	size      int
}

var vectorDefs = []vectorDef{
	{name: "empty", chunkLog2: 10, plaintext: []byte{}},
	{name: "hello", chunkLog2: 10, plaintext: []byte("hello, otaflow\n")},
	{name: "chunk-minus-one", chunkLog2: 10, size: 1023},
	{name: "one-full-chunk", chunkLog2: 10, size: 1024},
	{name: "chunk-plus-one", chunkLog2: 10, size: 1025},
	{name: "two-full-chunks", chunkLog2: 10, size: 2048},
	{name: "three-chunks", chunkLog2: 10, size: 3000},
	{name: "default-chunk-size", chunkLog2: 14, size: 40000},
}

func mod251(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// vectorKeys derives the vector's key and salt from its name, so that no two
// vectors share a key and salt.
func vectorKeys(name string) (key []byte, salt [16]byte) {
	k := sha256.Sum256([]byte("otaflow-enc/v1 test key " + name))
	s := sha256.Sum256([]byte("otaflow-enc/v1 test salt " + name))
	copy(salt[:], s[:])
	return k[:], salt
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func buildVector(t *testing.T, d vectorDef) vector {
	t.Helper()
	key, salt := vectorKeys(d.name)
	v := vector{
		Name:      d.name,
		Key:       hex.EncodeToString(key),
		Salt:      hex.EncodeToString(salt[:]),
		ChunkLog2: d.chunkLog2,
	}
	plain := d.plaintext
	if plain == nil {
		plain = mod251(d.size)
		v.Generator = generatorMod251
	} else {
		p := hex.EncodeToString(plain)
		v.Plaintext = &p
	}
	v.PlaintextSize = int64(len(plain))
	v.PlaintextSHA256 = hexSum(plain)
	h, err := headerWithSalt(key, d.chunkLog2, salt)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := payloadKey(key, salt[:])
	if err != nil {
		t.Fatal(err)
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	v.Commitment = hex.EncodeToString(h.Commitment[:])
	v.PayloadKey = hex.EncodeToString(pk)
	v.Header = hex.EncodeToString(hb)
	var buf bytes.Buffer
	if _, err := EncryptWithHeader(&buf, bytes.NewReader(plain), key, h); err != nil {
		t.Fatal(err)
	}
	v.CiphertextSize = int64(buf.Len())
	v.CiphertextSHA256 = hexSum(buf.Bytes())
	if buf.Len() <= inlineLimit {
		v.Ciphertext = hex.EncodeToString(buf.Bytes())
	}
	return v
}

func marshalVectors(t *testing.T) []byte {
	t.Helper()
	vs := make([]vector, 0, len(vectorDefs))
	for _, d := range vectorDefs {
		vs = append(vs, buildVector(t, d))
	}
	out, err := json.MarshalIndent(vs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func mustHex(t *testing.T, field, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return b
}

// TestVectors checks the committed vectors in two ways: every vector is
// recomputed from the inputs written in the file and its ciphertext
// decrypted, and the file as a whole must equal what the definitions above
// generate, so neither can drift from the other.
func TestVectors(t *testing.T) {
	generated := marshalVectors(t)
	if *update {
		if err := os.WriteFile(vectorsFile, generated, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 100<<10 {
		t.Errorf("%s is %d bytes; keep it under 100 KiB", vectorsFile, len(raw))
	}
	if !bytes.Equal(raw, generated) {
		t.Errorf("%s is stale; regenerate with go test ./internal/envelope -run TestVectors -update", vectorsFile)
	}
	var vs []vector
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	multiChunk := false
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			key := mustHex(t, "key", v.Key)
			var salt [16]byte
			if n := copy(salt[:], mustHex(t, "salt", v.Salt)); n != 16 || len(v.Salt) != 32 {
				t.Fatalf("salt %q is not 16 bytes", v.Salt)
			}
			var plain []byte
			switch {
			case v.Generator == generatorMod251 && v.Plaintext == nil:
				plain = mod251(int(v.PlaintextSize))
			case v.Generator == "" && v.Plaintext != nil:
				plain = mustHex(t, "plaintext", *v.Plaintext)
			default:
				t.Fatalf("want either plaintext or a known generator, got generator %q", v.Generator)
			}
			if int64(len(plain)) != v.PlaintextSize || hexSum(plain) != v.PlaintextSHA256 {
				t.Fatal("plaintext does not match its size and digest")
			}
			h, err := headerWithSalt(key, v.ChunkLog2, salt)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h.Commitment[:]); got != v.Commitment {
				t.Fatalf("commitment = %s, want %s", got, v.Commitment)
			}
			pk, err := payloadKey(key, salt[:])
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(pk); got != v.PayloadKey {
				t.Fatalf("payload key = %s, want %s", got, v.PayloadKey)
			}
			var buf bytes.Buffer
			if _, err := EncryptWithHeader(&buf, bytes.NewReader(plain), key, h); err != nil {
				t.Fatal(err)
			}
			blob := buf.Bytes()
			if got := hex.EncodeToString(blob[:HeaderSize]); got != v.Header {
				t.Fatalf("header = %s, want %s", got, v.Header)
			}
			if int64(len(blob)) != v.CiphertextSize || hexSum(blob) != v.CiphertextSHA256 {
				t.Fatalf("ciphertext is %d bytes with digest %s, want %d bytes with %s",
					len(blob), hexSum(blob), v.CiphertextSize, v.CiphertextSHA256)
			}
			if v.Ciphertext != "" && !bytes.Equal(blob, mustHex(t, "ciphertext", v.Ciphertext)) {
				t.Fatal("ciphertext differs byte for byte")
			}
			if v.Ciphertext == "" && len(blob) <= inlineLimit {
				t.Fatal("small vector lacks its ciphertext")
			}
			got, err := decryptAll(blob, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatal("decrypted vector differs from its plaintext")
			}
			if len(plain) > 2<<v.ChunkLog2 && v.ChunkLog2 == MinChunkLog2 {
				multiChunk = true
			}
		})
	}
	if !multiChunk {
		t.Error("no vector has more than two small chunks")
	}
}

const fuzzSeedDir = "testdata/fuzz/FuzzDecrypt"

// fuzzKey is the content key FuzzDecrypt and its committed seeds use.
func fuzzKey() []byte { return fixedKey(0x42) }

// fuzzSeeds returns blobs worth starting the fuzzer from. Names starting with
// "valid-" must decrypt; the rest must not.
func fuzzSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	key := fuzzKey()
	_, empty := seal(t, key, nil, 10, 1)
	_, short := seal(t, key, []byte("firmware"), 10, 2)
	_, three := seal(t, key, mod251(2500), 10, 3)
	_, full := seal(t, key, mod251(2048), 10, 4)
	return map[string][]byte{
		"valid-empty":            empty,
		"valid-short":            short,
		"valid-three-chunks":     three,
		"valid-two-full-chunks":  full,
		"invalid-truncated":      full[:len(full)-1040],
		"invalid-trailing-byte":  splice(full, []byte{0}),
		"invalid-flipped-tag":    flip(three, len(three)-1, 1),
		"invalid-bad-magic":      flip(short, 3, 0xff),
		"invalid-header-only":    short[:HeaderSize],
		"invalid-wrong-key-salt": flip(three, 12, 1),
	}
}

func encodeFuzzSeed(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
}

func decodeFuzzSeed(t *testing.T, raw []byte) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("not a one-argument fuzz seed: %q", raw)
	}
	lit, ok := strings.CutPrefix(lines[1], "[]byte(")
	lit, ok2 := strings.CutSuffix(lit, ")")
	if !ok || !ok2 {
		t.Fatalf("not a []byte seed: %q", lines[1])
	}
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// TestFuzzSeeds keeps the committed FuzzDecrypt seeds meaningful: the valid
// ones must decrypt and re-encrypt to themselves, the others must fail.
func TestFuzzSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	if *update {
		if err := os.MkdirAll(fuzzSeedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(fuzzSeedDir, name), encodeFuzzSeed(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(fuzzSeedDir)
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(fuzzSeedDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		blob := decodeFuzzSeed(t, raw)
		if want, ok := seeds[e.Name()]; ok && !bytes.Equal(blob, want) {
			t.Errorf("%s: stale; regenerate with -update", e.Name())
		}
		_, err = decryptAll(blob, fuzzKey())
		switch {
		case strings.HasPrefix(e.Name(), "valid-"):
			valid++
			if err != nil {
				t.Errorf("%s: %v", e.Name(), err)
			}
		case err == nil:
			t.Errorf("%s: decrypts, but is meant to be invalid", e.Name())
		}
	}
	if valid == 0 {
		t.Error("no valid seeds committed")
	}
}

func FuzzDecrypt(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	key := fuzzKey()
	f.Fuzz(func(t *testing.T, blob []byte) {
		d, err := NewDecryptor(bytes.NewReader(blob), key)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		plain, err := io.ReadAll(d)
		h, herr := ParseHeader(blob)
		if herr != nil {
			t.Fatalf("decryptor accepted a header ParseHeader refuses: %v", herr)
		}
		if err != nil {
			checkOneSentinel(t, err)
			// Only whole verified chunks may have been released.
			if len(plain)%h.ChunkSize() != 0 {
				t.Fatalf("%d bytes released before %v", len(plain), err)
			}
			return
		}
		// Accepted: the blob must be exactly the encoding of its plaintext.
		var buf bytes.Buffer
		if _, err := EncryptWithHeader(&buf, bytes.NewReader(plain), key, h); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), blob) {
			t.Fatal("accepted blob is not the canonical encryption of its plaintext")
		}
		if ps, err := PlainSize(int64(len(blob)), h.ChunkLog2); err != nil || ps != int64(len(plain)) {
			t.Fatalf("PlainSize = %d, %v; decrypted %d bytes", ps, err, len(plain))
		}
	})
}

// checkOneSentinel fails unless err matches exactly one sentinel: with an
// in-memory source every failure must be classified.
func checkOneSentinel(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v matches %d sentinels, want 1", err, n)
	}
}

func FuzzParseHeader(f *testing.F) {
	h, err := headerWithSalt(fixedKey(1), 14, [16]byte{1})
	if err != nil {
		f.Fatal(err)
	}
	good, err := h.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:HeaderSize-1])
	f.Add(flip(good, 8, 3))
	f.Add(flip(good, 9, 0x10))
	f.Add([]byte("OTAFLOW"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed header does not marshal: %v", err)
		}
		if !bytes.Equal(out, b[:HeaderSize]) {
			t.Fatalf("header round trip: %x != %x", out, b[:HeaderSize])
		}
	})
}
