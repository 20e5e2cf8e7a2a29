package conformance

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/otaflow/otaflow/internal/envelope"
)

const (
	chunksFile = "1-chunks.json"
	// envelopeVectors are internal/envelope's own vectors; every one of
	// them is copied into chunksFile and TestChunksKeepEnvelopeVectors
	// keeps the copies identical.
	envelopeVectors = "../envelope/testdata/vectors.json"
	envelopeSource  = "internal/envelope/testdata/vectors.json"
	generatorMod251 = "bytes i mod 251"
)

// Refusal classes of chunk decryption: the pseudocode names of
// docs/envelope.md section 1.6 and the Go errors they stand for.
var chunkClasses = []struct {
	err error
	class
}{
	{envelope.ErrFormat, class{"format", "not an otaflow-enc/v1 blob: bad magic or format version, or a non-canonical encoding (an empty last chunk after a full chunk) (FORMAT, ErrFormat)"}},
	{envelope.ErrUnsupported, class{"unsupported", "well-formed header with a suite byte other than 0x01 or chunk_log2 outside 10..20 (UNSUPPORTED, ErrUnsupported)"}},
	{envelope.ErrWrongKey, class{"wrong-key", "the header's commitment does not match the content key: refused before any chunk is opened (WRONG_KEY, ErrWrongKey)"}},
	{envelope.ErrAuth, class{"auth", "a chunk does not authenticate (tampered, reordered, duplicated, cut inside a chunk, or spliced) (AUTH, ErrAuth)"}},
	{envelope.ErrTruncated, class{"truncated", "the blob ends before its last chunk: short header, no chunk, or a chunk that only opens as a middle chunk at the end of the stream (TRUNCATED, ErrTruncated); a decoder that does not retry with the other last flag reports auth here"}},
	{envelope.ErrTrailingData, class{"trailing-data", "bytes follow a full-size chunk that opens as the last chunk (ErrTrailingData); a decoder that does not retry with the other last flag reports auth here"}},
}

// envelopeVector is internal/envelope's vector format.
type envelopeVector struct {
	Name             string  `json:"name"`
	Key              string  `json:"key"`
	Salt             string  `json:"salt"`
	ChunkLog2        uint8   `json:"chunkLog2"`
	Plaintext        *string `json:"plaintext,omitempty"`
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

type chunkDoc struct {
	fileHeader
	Generator string        `json:"generator"`
	Vectors   []chunkVector `json:"vectors"`
}

type chunkVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expect      string `json:"expect"`
	// VerifiedChunks is, for a refusal, how many chunks a streaming
	// (look-ahead) decoder verifies and may release before it refuses.
	VerifiedChunks *int64 `json:"verifiedChunks,omitempty"`
	Source         string `json:"source,omitempty"`
	Key            string `json:"key"`
	// EncryptedSize is the size the assignment declares: the size of the
	// untampered blob.
	EncryptedSize   int64               `json:"encryptedSize"`
	Resume          *chunkResume        `json:"resume,omitempty"`
	Intermediates   *chunkIntermediates `json:"intermediates,omitempty"`
	PlaintextSize   *int64              `json:"plaintextSize,omitempty"`
	PlaintextSHA256 string              `json:"plaintextSHA256,omitempty"`
	Generator       string              `json:"generator,omitempty"`
	Plaintext       *string             `json:"plaintext,omitempty"`
	Blob            string              `json:"blob"`
}

// chunkResume: the decoder holds the header from an earlier response and
// receives the blob from Offset = ChunkOffset(StartChunk) on.
type chunkResume struct {
	Header     string `json:"header"`
	StartChunk int64  `json:"startChunk"`
	Offset     int64  `json:"offset"`
}

type chunkIntermediates struct {
	Salt       string `json:"salt"`
	ChunkLog2  uint8  `json:"chunkLog2"`
	Commitment string `json:"commitment"`
	PayloadKey string `json:"payloadKey"`
	Header     string `json:"header"`
}

func mod251(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((from + i) % 251)
	}
	return b
}

// base is one of internal/envelope's vectors with its blob rebuilt.
type base struct {
	v     envelopeVector
	key   []byte
	hdr   []byte
	plain []byte
	blob  []byte
	c     int // chunk size
}

// chunks splits the sealed chunks of the blob.
func (b base) chunks() [][]byte {
	var out [][]byte
	body := b.blob[envelope.HeaderSize:]
	for len(body) > b.c+envelope.TagSize {
		out = append(out, body[:b.c+envelope.TagSize])
		body = body[b.c+envelope.TagSize:]
	}
	return append(out, body)
}

func readEnvelopeVectors(t *testing.T) []envelopeVector {
	t.Helper()
	raw, err := os.ReadFile(envelopeVectors)
	if err != nil {
		t.Fatal(err)
	}
	var vs []envelopeVector
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vs); err != nil {
		t.Fatalf("%s: %v", envelopeVectors, err)
	}
	return vs
}

// rebuild encrypts an envelope vector again with the real encoder and
// checks the result against the vector's digest and bytes.
func rebuild(t *testing.T, v envelopeVector) base {
	t.Helper()
	b := base{v: v, key: mustHex(t, "key", v.Key), hdr: mustHex(t, "header", v.Header), c: 1 << v.ChunkLog2}
	switch {
	case v.Plaintext != nil:
		b.plain = mustHex(t, "plaintext", *v.Plaintext)
	case v.Generator == generatorMod251:
		b.plain = mod251(0, int(v.PlaintextSize))
	default:
		t.Fatalf("%s: unknown plaintext generator %q", v.Name, v.Generator)
	}
	h, err := envelope.ParseHeader(b.hdr)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := envelope.EncryptWithHeader(&buf, bytes.NewReader(b.plain), b.key, h); err != nil {
		t.Fatal(err)
	}
	b.blob = buf.Bytes()
	if hexSum(b.blob) != v.CiphertextSHA256 || int64(len(b.blob)) != v.CiphertextSize {
		t.Fatalf("%s: rebuilt blob differs from %s", v.Name, envelopeVectors)
	}
	if v.Ciphertext != "" && v.Ciphertext != hex.EncodeToString(b.blob) {
		t.Fatalf("%s: rebuilt blob differs from %s", v.Name, envelopeVectors)
	}
	return b
}

// sealer seals chunks with any index and last flag, following
// docs/envelope.md 1.3 and 1.4, to build blobs the encoder never writes.
type sealer struct {
	aead cipher.AEAD
	hdr  []byte
}

func newSealer(t *testing.T, key, hdr []byte) sealer {
	t.Helper()
	pk, err := hkdf.Key(sha256.New, key, hdr[10:26], "otaflow-enc/v1 payload", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(pk)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return sealer{aead: aead, hdr: hdr}
}

func (s sealer) seal(i int64, last bool, plain []byte) []byte {
	var nonce [12]byte
	for j := 10; j >= 3; j-- {
		nonce[j] = byte(i)
		i >>= 8
	}
	if last {
		nonce[11] = 1
	}
	return s.aead.Seal(nil, nonce[:], plain, s.hdr)
}

// blob seals plain in chunks of c bytes with the given last flags (one per
// chunk; an empty plain or a multiple of c ends where the flags end).
func (s sealer) blob(plain []byte, c int, last ...bool) []byte {
	out := bytes.Clone(s.hdr)
	for i, l := range last {
		lo, hi := min(i*c, len(plain)), min((i+1)*c, len(plain))
		out = append(out, s.seal(int64(i), l, plain[lo:hi])...)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func genChunks(t *testing.T) any {
	f := chunkDoc{
		fileHeader: header("otaflow-conformance/v1 chunks", "docs/envelope.md section 1",
			"Decrypt blob with key as docs/envelope.md 1.6 describes (from the start, or with resume from resume.startChunk) and compare the verdict with expect; for accept, the released plaintext must match plaintextSHA256 (and plaintext or generator).",
			append([]class{{Accept, "the blob decrypts; the plaintext released (from resume.startChunk on, when resuming) is the vector's plaintext"}}, func() []class {
				var cs []class
				for _, c := range chunkClasses {
					cs = append(cs, c.class)
				}
				return cs
			}()...)...),
		Generator: "\"bytes i mod 251\": plaintext byte i is i mod 251, for plaintextSize bytes",
	}
	bases := map[string]base{}
	for _, v := range readEnvelopeVectors(t) {
		b := rebuild(t, v)
		bases[v.Name] = b
		pt := v.PlaintextSize
		cv := chunkVector{
			Name:            v.Name,
			Description:     fmt.Sprintf("valid blob: %d plaintext bytes in %d-byte chunks (copied from %s)", v.PlaintextSize, b.c, envelopeSource),
			Expect:          Accept,
			Source:          envelopeSource,
			Key:             v.Key,
			EncryptedSize:   v.CiphertextSize,
			Intermediates:   &chunkIntermediates{Salt: v.Salt, ChunkLog2: v.ChunkLog2, Commitment: v.Commitment, PayloadKey: v.PayloadKey, Header: v.Header},
			PlaintextSize:   &pt,
			PlaintextSHA256: v.PlaintextSHA256,
			Generator:       v.Generator,
			Plaintext:       v.Plaintext,
			Blob:            hex.EncodeToString(b.blob),
		}
		f.Vectors = append(f.Vectors, cv)
	}
	need := func(name string) base {
		b, ok := bases[name]
		if !ok {
			t.Fatalf("%s has no vector %q", envelopeVectors, name)
		}
		// The sealer must reproduce the encoder on its own vectors.
		n := len(b.chunks())
		last := make([]bool, n)
		last[n-1] = true
		if got := newSealer(t, b.key, b.hdr).blob(b.plain, b.c, last...); !bytes.Equal(got, b.blob) {
			t.Fatalf("sealer does not reproduce %s", name)
		}
		return b
	}
	hello, empty := need("hello"), need("empty")
	plusOne, twoFull, three := need("chunk-plus-one"), need("two-full-chunks"), need("three-chunks")
	big := need("default-chunk-size")

	refuse := func(name, desc, expect string, verified int64, b base, key, blob []byte) {
		f.Vectors = append(f.Vectors, chunkVector{
			Name: name, Description: desc, Expect: expect, VerifiedChunks: ptr(verified),
			Key: hex.EncodeToString(key), EncryptedSize: int64(len(b.blob)), Blob: hex.EncodeToString(blob),
		})
	}
	// withHeader replaces header bytes.
	withHeader := func(b base, i int, v byte) []byte {
		c := bytes.Clone(b.blob)
		c[i] = v
		return c
	}
	off := func(b base, i int) int { return envelope.HeaderSize + i*(b.c+envelope.TagSize) }

	// Truncation.
	refuse("truncated-header", "hello cut to 57 bytes: the header is incomplete", "truncated", 0, hello, hello.key, hello.blob[:57])
	refuse("header-only", "hello cut to its 58-byte header: no chunk follows", "truncated", 0, hello, hello.key, hello.blob[:58])
	refuse("truncated-inside-tag", "hello without its last byte: the only chunk is cut inside its tag", "auth", 0, hello, hello.key, hello.blob[:len(hello.blob)-1])
	refuse("truncated-at-chunk-boundary", "two-full-chunks without its last chunk: the stream ends after chunk 0, a middle chunk", "truncated", 0, twoFull, twoFull.key, twoFull.blob[:off(twoFull, 1)])
	refuse("truncated-last-chunk-dropped", "three-chunks without its short last chunk: the stream ends after chunk 1, a middle chunk", "truncated", 1, three, three.key, three.blob[:off(three, 2)])
	refuse("truncated-inside-chunk", "three-chunks cut 500 bytes into chunk 1", "auth", 1, three, three.key, three.blob[:off(three, 1)+500])

	// Reordering, duplication, dropping.
	tc := three.chunks()
	refuse("chunks-swapped", "three-chunks with chunks 0 and 1 swapped", "auth", 0, three, three.key, cat(three.hdr, tc[1], tc[0], tc[2]))
	refuse("chunk-duplicated", "three-chunks with chunk 0 repeated before chunk 1", "auth", 1, three, three.key, cat(three.hdr, tc[0], tc[0], tc[1], tc[2]))
	refuse("chunk-dropped", "three-chunks without chunk 1: chunk 2 arrives as chunk 1", "auth", 1, three, three.key, cat(three.hdr, tc[0], tc[2]))

	// Flipped bits in chunks.
	refuse("flipped-tag", "hello with the last bit of its tag flipped", "auth", 0, hello, hello.key, flip(hello.blob, len(hello.blob)-1, 0x01))
	refuse("flipped-tag-first-chunk", "three-chunks with the top bit of chunk 0's tag flipped", "auth", 0, three, three.key, flip(three.blob, off(three, 1)-1, 0x80))
	refuse("flipped-ciphertext", "three-chunks with one ciphertext bit of chunk 1 flipped", "auth", 1, three, three.key, flip(three.blob, off(three, 1)+100, 0x01))
	refuse("flipped-tag-empty", "empty with a bit of its only (empty) chunk's tag flipped", "auth", 0, empty, empty.key, flip(empty.blob, len(empty.blob)-1, 0x01))

	// Key commitment.
	refuse("wrong-key", "hello opened with three-chunks' content key", "wrong-key", 0, hello, three.key, hello.blob)
	refuse("flipped-commitment", "hello with the first commitment byte changed", "wrong-key", 0, hello, hello.key, flip(hello.blob, 26, 0x01))
	refuse("flipped-commitment-last-byte", "hello with the last commitment byte changed", "wrong-key", 0, hello, hello.key, flip(hello.blob, 57, 0x80))
	refuse("flipped-salt", "hello with a salt bit flipped: the commitment no longer matches", "wrong-key", 0, hello, hello.key, flip(hello.blob, 10, 0x01))

	// Last flag.
	s := newSealer(t, plusOne.key, plusOne.hdr)
	refuse("last-flag-missing", "chunk-plus-one with its short last chunk sealed as a middle chunk (last = 0)", "auth", 1, plusOne, plusOne.key, s.blob(plusOne.plain, plusOne.c, false, false))
	s2 := newSealer(t, twoFull.key, twoFull.hdr)
	refuse("last-flag-missing-full-chunk", "two-full-chunks with its full last chunk sealed as a middle chunk (last = 0)", "truncated", 1, twoFull, twoFull.key, s2.blob(twoFull.plain, twoFull.c, false, false))
	refuse("last-flag-on-middle-chunk", "two-full-chunks with chunk 0 sealed as a last chunk (last = 1) and chunk 1 after it", "trailing-data", 0, twoFull, twoFull.key, s2.blob(twoFull.plain, twoFull.c, true, true))
	se := newSealer(t, empty.key, empty.hdr)
	refuse("last-flag-missing-empty", "empty with its only chunk sealed without the last flag", "auth", 0, empty, empty.key, se.blob(nil, empty.c, false))

	// Extra chunks and bytes.
	refuse("extra-chunk-after-full-last", "two-full-chunks followed by a 10-byte chunk sealed as chunk 2 (last = 1)", "trailing-data", 1, twoFull, twoFull.key, cat(twoFull.blob, s2.seal(2, true, mod251(0, 10))))
	refuse("extra-empty-chunk-non-canonical", "two-full-chunks re-encoded non-canonically: chunk 1 as a middle chunk, then an empty last chunk 2", "format", 2, twoFull, twoFull.key, cat(s2.blob(twoFull.plain, twoFull.c, false, false), s2.seal(2, true, nil)))
	refuse("extra-byte-after-full-last", "two-full-chunks followed by one zero byte", "trailing-data", 1, twoFull, twoFull.key, cat(twoFull.blob, []byte{0}))
	refuse("extra-byte-after-short-last", "chunk-plus-one followed by one zero byte: the short last chunk grows by a byte", "auth", 1, plusOne, plusOne.key, cat(plusOne.blob, []byte{0}))
	refuse("extra-chunk-after-short-last", "chunk-plus-one followed by a copy of its last chunk", "auth", 1, plusOne, plusOne.key, cat(plusOne.blob, plusOne.chunks()[1]))

	// Header mutations.
	refuse("bad-magic", "hello with magic \"oTAFLOW\\x01\"", "format", 0, hello, hello.key, withHeader(hello, 0, 'o'))
	refuse("format-version-2", "hello with format version byte (offset 7) 0x02", "format", 0, hello, hello.key, withHeader(hello, 7, 2))
	refuse("suite-0", "hello with suite byte 0x00", "unsupported", 0, hello, hello.key, withHeader(hello, 8, 0))
	refuse("suite-2", "hello with suite byte 0x02", "unsupported", 0, hello, hello.key, withHeader(hello, 8, 2))
	refuse("chunk-log2-9", "hello with chunk_log2 9 (512-byte chunks, below the minimum)", "unsupported", 0, hello, hello.key, withHeader(hello, 9, 9))
	refuse("chunk-log2-21", "hello with chunk_log2 21 (2 MiB chunks, above the maximum)", "unsupported", 0, hello, hello.key, withHeader(hello, 9, 21))
	refuse("chunk-log2-changed", "three-chunks with chunk_log2 11 instead of 10: in range, but the header is the AAD and the chunk boundaries move", "auth", 0, three, three.key, withHeader(three, 9, 11))

	// Resuming at chunk k.
	resume := func(name, desc, expect string, verified *int64, b base, key, hdr []byte, k int64, from int, plain []byte) {
		v := chunkVector{
			Name: name, Description: desc, Expect: expect, VerifiedChunks: verified,
			Key: hex.EncodeToString(key), EncryptedSize: int64(len(b.blob)),
			Resume: &chunkResume{Header: hex.EncodeToString(hdr), StartChunk: k, Offset: int64(from)},
			Blob:   hex.EncodeToString(b.blob[from:]),
		}
		if expect == Accept {
			p := hex.EncodeToString(plain)
			v.PlaintextSize, v.PlaintextSHA256, v.Plaintext = ptr(int64(len(plain))), hexSum(plain), &p
		}
		f.Vectors = append(f.Vectors, v)
	}
	for _, r := range []struct {
		b base
		k int
	}{{three, 1}, {three, 2}, {twoFull, 1}, {big, 2}} {
		from := off(r.b, r.k)
		resume(fmt.Sprintf("resume-%s-at-%d", r.b.v.Name, r.k),
			fmt.Sprintf("%s resumed at chunk %d: the blob from offset 58 + %d·(%d + 16) = %d, the header kept from the first response", r.b.v.Name, r.k, r.k, r.b.c, from),
			Accept, nil, r.b, r.b.key, r.b.hdr, int64(r.k), from, r.b.plain[r.k*r.b.c:])
	}
	resume("resume-wrong-index", "three-chunks from chunk 1's offset, decrypted as if it started at chunk 2", "auth", ptr[int64](0), three, three.key, three.hdr, 2, off(three, 1), nil)
	resume("resume-misaligned", "three-chunks from one byte past chunk 1's offset, decrypted as chunk 1", "auth", ptr[int64](0), three, three.key, three.hdr, 1, off(three, 1)+1, nil)
	resume("resume-other-header", "three-chunks' chunks from chunk 1 with hello's header: the salt and commitment are another blob's", "wrong-key", ptr[int64](0), three, three.key, hello.hdr, 1, off(three, 1), nil)
	resume("resume-after-last-chunk", "three-chunks resumed at chunk 3, past its last chunk: nothing follows", "truncated", ptr[int64](0), three, three.key, three.hdr, 3, len(three.blob), nil)
	return f
}

// chunkClass maps an error to its class; it fails unless exactly one
// sentinel matches.
func chunkClass(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return Accept
	}
	var got []string
	for _, c := range chunkClasses {
		if errors.Is(err, c.err) {
			got = append(got, c.Expect)
		}
	}
	if len(got) != 1 {
		t.Fatalf("error %v matches classes %v", err, got)
	}
	return got[0]
}

// decryptVector runs the real decoder on a vector; it returns the
// plaintext released before the verdict.
func decryptVector(t *testing.T, v chunkVector) ([]byte, int, error) {
	t.Helper()
	key := mustHex(t, "key", v.Key)
	blob := mustHex(t, "blob", v.Blob)
	var (
		d   io.Reader
		err error
		h   envelope.Header
	)
	if v.Resume == nil {
		d, err = envelope.NewDecryptor(bytes.NewReader(blob), key)
		if err == nil {
			h, _ = envelope.ParseHeader(blob)
		}
	} else {
		h, err = envelope.ParseHeader(mustHex(t, "resume.header", v.Resume.Header))
		if err == nil {
			if off := envelope.ChunkOffset(h, v.Resume.StartChunk); off != v.Resume.Offset && v.Expect == Accept {
				t.Fatalf("resume.offset = %d, ChunkOffset = %d", v.Resume.Offset, off)
			}
			d, err = envelope.NewDecryptorAt(h, key, v.Resume.StartChunk, bytes.NewReader(blob))
		}
	}
	if err != nil {
		return nil, 0, err
	}
	out, err := io.ReadAll(d)
	return out, h.ChunkSize(), err
}

// TestChunks decrypts every vector of 1-chunks.json with internal/envelope.
func TestChunks(t *testing.T) {
	var f chunkDoc
	load(t, chunksFile, &f)
	var names, descs, expects []string
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			out, c, err := decryptVector(t, v)
			if got := chunkClass(t, err); got != v.Expect {
				t.Fatalf("verdict %s (%v), want %s", got, err, v.Expect)
			}
			if v.Expect == Accept {
				if v.VerifiedChunks != nil || v.PlaintextSize == nil {
					t.Fatal("accept vector with verifiedChunks or without plaintextSize")
				}
				var want []byte
				switch {
				case v.Plaintext != nil && v.Generator == "":
					want = mustHex(t, "plaintext", *v.Plaintext)
				case v.Plaintext == nil && v.Generator == generatorMod251:
					want = mod251(0, int(*v.PlaintextSize))
				default:
					t.Fatal("want plaintext or a known generator")
				}
				if !bytes.Equal(out, want) || int64(len(want)) != *v.PlaintextSize || hexSum(want) != v.PlaintextSHA256 {
					t.Fatal("plaintext differs from the vector's")
				}
				if v.Resume == nil && int64(len(mustHex(t, "blob", v.Blob))) != v.EncryptedSize {
					t.Fatal("encryptedSize is not the blob's size")
				}
				return
			}
			if v.VerifiedChunks == nil || v.Plaintext != nil || v.PlaintextSize != nil {
				t.Fatal("refusal vector without verifiedChunks or with a plaintext")
			}
			if len(out) > 0 && len(out)%c != 0 {
				t.Fatalf("released %d bytes, not whole chunks", len(out))
			}
			if got := int64(len(out) / max(c, 1)); got != *v.VerifiedChunks {
				t.Fatalf("verified %d chunks before refusing, vector says %d", got, *v.VerifiedChunks)
			}
		})
	}
	checkNames(t, chunksFile, names, descs)
	t.Logf("%s: %d vectors %v", chunksFile, len(f.Vectors), count(expects))
}

// TestChunksKeepEnvelopeVectors: every vector of internal/envelope is in
// 1-chunks.json with the same values, so the two sets cannot drift apart.
func TestChunksKeepEnvelopeVectors(t *testing.T) {
	var f chunkDoc
	load(t, chunksFile, &f)
	byName := map[string]chunkVector{}
	for _, v := range f.Vectors {
		byName[v.Name] = v
	}
	for _, ev := range readEnvelopeVectors(t) {
		v, ok := byName[ev.Name]
		if !ok {
			t.Errorf("%s: missing from %s", ev.Name, chunksFile)
			continue
		}
		blob := mustHex(t, "blob", v.Blob)
		im := v.Intermediates
		switch {
		case v.Source != envelopeSource || v.Expect != Accept || im == nil:
			t.Errorf("%s: not marked as an accepted copy of %s", ev.Name, envelopeSource)
		case v.Key != ev.Key || im.Salt != ev.Salt || im.ChunkLog2 != ev.ChunkLog2 || im.Commitment != ev.Commitment ||
			im.PayloadKey != ev.PayloadKey || im.Header != ev.Header:
			t.Errorf("%s: key material differs from %s", ev.Name, envelopeSource)
		case (v.Plaintext == nil) != (ev.Plaintext == nil) || (v.Plaintext != nil && *v.Plaintext != *ev.Plaintext) ||
			v.Generator != ev.Generator || *v.PlaintextSize != ev.PlaintextSize || v.PlaintextSHA256 != ev.PlaintextSHA256:
			t.Errorf("%s: plaintext differs from %s", ev.Name, envelopeSource)
		case hexSum(blob) != ev.CiphertextSHA256 || int64(len(blob)) != ev.CiphertextSize || v.EncryptedSize != ev.CiphertextSize ||
			(ev.Ciphertext != "" && ev.Ciphertext != v.Blob):
			t.Errorf("%s: blob differs from %s", ev.Name, envelopeSource)
		}
	}
}
