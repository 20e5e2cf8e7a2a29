package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
)

var sentinels = []error{ErrFormat, ErrUnsupported, ErrWrongKey, ErrKeySize, ErrAuth, ErrTruncated, ErrTrailingData}

// checkSentinel fails unless err matches want and no other sentinel, so that
// every failure class stays distinguishable.
func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v also matches %v", err, s)
		}
	}
}

func fixedKey(b byte) []byte {
	return bytes.Repeat([]byte{b}, KeySize)
}

func randBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// seal encrypts plain with a fixed salt derived from seed.
func seal(t testing.TB, key, plain []byte, chunkLog2 uint8, seed byte) (Header, []byte) {
	t.Helper()
	var salt [16]byte
	salt[0] = seed
	h, err := headerWithSalt(key, chunkLog2, salt)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := EncryptWithHeader(&buf, bytes.NewReader(plain), key, h)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(plain)) {
		t.Fatalf("Encrypt returned plain size %d, want %d", n, len(plain))
	}
	return h, buf.Bytes()
}

func decryptAll(blob, key []byte) ([]byte, error) {
	d, err := NewDecryptor(bytes.NewReader(blob), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(d)
}

func TestRoundTrip(t *testing.T) {
	key := fixedKey(7)
	for _, log2 := range []uint8{MinChunkLog2, DefaultChunkLog2} {
		cs := 1 << log2
		for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, 2*cs + 1, 5<<20 + 3} {
			t.Run(fmt.Sprintf("log2=%d/size=%d", log2, size), func(t *testing.T) {
				plain := randBytes(uint64(size), size)
				_, blob := seal(t, key, plain, log2, 1)
				if got, want := int64(len(blob)), EncryptedSize(int64(size), log2); got != want {
					t.Fatalf("blob is %d bytes, EncryptedSize says %d", got, want)
				}
				ps, err := PlainSize(int64(len(blob)), log2)
				if err != nil || ps != int64(size) {
					t.Fatalf("PlainSize = %d, %v; want %d", ps, err, size)
				}
				got, err := decryptAll(blob, key)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatal("decrypted plaintext differs")
				}
			})
		}
	}
}

func TestEncryptDefaults(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	plain := randBytes(3, 40000)
	var a, b bytes.Buffer
	if _, err := Encrypt(&a, bytes.NewReader(plain), key); err != nil {
		t.Fatal(err)
	}
	if _, err := Encrypt(&b, bytes.NewReader(plain), key); err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if h.ChunkLog2 != DefaultChunkLog2 || h.Suite != SuiteAES256GCM {
		t.Fatalf("header = %+v, want default suite and chunk size", h)
	}
	if bytes.Equal(a.Bytes()[:HeaderSize], b.Bytes()[:HeaderSize]) {
		t.Fatal("two encryptions share a header: salt is not random")
	}
	if bytes.Equal(a.Bytes()[HeaderSize:], b.Bytes()[HeaderSize:]) {
		t.Fatal("two encryptions share a body")
	}
	got, err := decryptAll(a.Bytes(), key)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip failed: %v", err)
	}
}

// TestStingyReaders feeds the encryptor and the decryptor one byte at a time
// and runs the standard reader conformance checks.
func TestStingyReaders(t *testing.T) {
	key := fixedKey(1)
	plain := randBytes(9, 3*1024+17)
	h, want := seal(t, key, plain, 10, 1)
	var buf bytes.Buffer
	if _, err := EncryptWithHeader(&buf, iotest.OneByteReader(bytes.NewReader(plain)), key, h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("one-byte reads change the ciphertext")
	}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"OneByte": iotest.OneByteReader,
		"Half":    iotest.HalfReader,
		"DataErr": iotest.DataErrReader,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := NewDecryptor(wrap(bytes.NewReader(want)), key)
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(d, plain); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRandomAccess(t *testing.T) {
	key := fixedKey(2)
	for _, size := range []int{10*1024 + 300, 8 * 1024} {
		plain := randBytes(uint64(size), size)
		h, blob := seal(t, key, plain, 10, 3)
		cs := h.ChunkSize()
		chunks := int64((size + cs - 1) / cs)
		for k := int64(0); k < chunks; k++ {
			d, err := NewDecryptorAt(h, key, k, bytes.NewReader(blob[ChunkOffset(h, k):]))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(d)
			if err != nil {
				t.Fatalf("size %d chunk %d: %v", size, k, err)
			}
			if !bytes.Equal(got, plain[k*int64(cs):]) {
				t.Fatalf("size %d chunk %d: plaintext differs", size, k)
			}
		}
		// Starting at the end of the blob: the chunk that should be there
		// is missing.
		d, err := NewDecryptorAt(h, key, chunks, bytes.NewReader(blob[min(ChunkOffset(h, chunks), int64(len(blob))):]))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(d)
		checkSentinel(t, err, ErrTruncated)
		// Resuming at the wrong offset for the index fails authentication.
		d, err = NewDecryptorAt(h, key, 1, bytes.NewReader(blob[ChunkOffset(h, 2):]))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(d)
		checkSentinel(t, err, ErrAuth)
	}
}

func TestNewDecryptorAtRefuses(t *testing.T) {
	key := fixedKey(2)
	h, _ := seal(t, key, nil, 10, 3)
	tests := []struct {
		name  string
		h     Header
		key   []byte
		chunk int64
		want  error
	}{
		{"negative chunk", h, key, -1, ErrFormat},
		{"chunk beyond counter", h, key, MaxChunks, ErrFormat},
		{"wrong key", h, fixedKey(3), 0, ErrWrongKey},
		{"short key", h, key[:16], 0, ErrKeySize},
		{"bad suite", Header{Suite: 2, ChunkLog2: 10}, key, 0, ErrUnsupported},
		{"bad chunk size", Header{Suite: SuiteAES256GCM, ChunkLog2: 21}, key, 0, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecryptorAt(tt.h, tt.key, tt.chunk, bytes.NewReader(nil))
			checkSentinel(t, err, tt.want)
		})
	}
}

// failAfter fails the test when more than limit bytes are read from it.
type failAfter struct {
	t     *testing.T
	r     io.Reader
	limit int
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.limit -= n
	if f.limit < 0 {
		f.t.Fatal("read past the header")
	}
	return n, err
}

func TestWrongKeyFailsBeforeChunks(t *testing.T) {
	_, blob := seal(t, fixedKey(1), randBytes(1, 5000), 10, 1)
	_, err := NewDecryptor(&failAfter{t: t, r: iotest.OneByteReader(bytes.NewReader(blob)), limit: HeaderSize}, fixedKey(2))
	checkSentinel(t, err, ErrWrongKey)
}

func splice(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func flip(b []byte, i int, mask byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= mask
	return c
}

func TestTamper(t *testing.T) {
	key := fixedKey(5)
	const log2 = 10
	cs := 1 << log2
	sc := cs + TagSize
	// partial ends in a short last chunk, full in a full-size one.
	plainP := randBytes(1, 3*cs+100)
	plainF := randBytes(2, 3*cs)
	hP, partial := seal(t, key, plainP, log2, 1)
	hF, full := seal(t, key, plainF, log2, 2)
	_, other := seal(t, key, plainF, log2, 3) // same key, other salt
	off := func(h Header, i int64) int { return int(ChunkOffset(h, i)) }
	chunk := func(blob []byte, i int) []byte { return blob[HeaderSize+i*sc : min(HeaderSize+(i+1)*sc, len(blob))] }
	_, emptyOnly := seal(t, key, nil, log2, 4)

	tests := []struct {
		name string
		blob []byte
		key  []byte
		want error
	}{
		{"wrong key", partial, fixedKey(6), ErrWrongKey},
		{"magic first byte", flip(partial, 0, 0x20), nil, ErrFormat},
		{"magic version byte", flip(partial, 7, 0x03), nil, ErrFormat},
		{"suite 2", flip(partial, 8, 0x03), nil, ErrUnsupported},
		{"suite 0", flip(partial, 8, 0x01), nil, ErrUnsupported},
		{"chunk log2 below range", flip(partial, 9, 0x02), nil, ErrUnsupported},
		{"chunk log2 above range", flip(partial, 9, 0x10), nil, ErrUnsupported},
		{"chunk log2 in range", flip(partial, 9, 0x01), nil, ErrAuth},
		{"salt first byte", flip(partial, 10, 0x01), nil, ErrWrongKey},
		{"salt last byte", flip(partial, 25, 0x80), nil, ErrWrongKey},
		{"commitment first byte", flip(partial, 26, 0x01), nil, ErrWrongKey},
		{"commitment last byte", flip(partial, 57, 0x80), nil, ErrWrongKey},
		{"header cut", partial[:HeaderSize-1], nil, ErrTruncated},
		{"empty input", nil, nil, ErrTruncated},
		{"first chunk body", flip(partial, HeaderSize, 0x01), nil, ErrAuth},
		{"middle chunk body", flip(partial, off(hP, 1)+100, 0x40), nil, ErrAuth},
		{"last chunk body", flip(partial, off(hP, 3), 0x01), nil, ErrAuth},
		{"full last chunk body", flip(full, off(hF, 2)+7, 0x01), nil, ErrAuth},
		{"first chunk tag", flip(partial, off(hP, 1)-1, 0x01), nil, ErrAuth},
		{"last chunk tag", flip(partial, len(partial)-1, 0x01), nil, ErrAuth},
		{"empty plaintext tag", flip(emptyOnly, HeaderSize, 0x01), nil, ErrAuth},
		{"cut at chunk boundary", partial[:off(hP, 3)], nil, ErrTruncated},
		{"cut full blob at chunk boundary", full[:off(hF, 2)], nil, ErrTruncated},
		{"cut after first chunk", full[:off(hF, 1)], nil, ErrTruncated},
		{"header only", partial[:HeaderSize], nil, ErrTruncated},
		{"cut before a tag fits", partial[:off(hP, 1)+TagSize-1], nil, ErrTruncated},
		// A cut inside a chunk leaves a short chunk that looks like a last
		// chunk and cannot be told apart from a forged one.
		{"cut mid chunk", partial[:off(hP, 1)+500], nil, ErrAuth},
		{"cut mid last chunk", partial[:len(partial)-1], nil, ErrAuth},
		{"one trailing byte", splice(full, []byte{0}), nil, ErrTrailingData},
		{"extra chunk appended", splice(full, chunk(full, 0)), nil, ErrTrailingData},
		{"other blob's chunk appended", splice(full, chunk(other, 0)), nil, ErrTrailingData},
		{"trailing bytes after empty plaintext", splice(emptyOnly, []byte{1, 2}), nil, ErrAuth},
		// After a short last chunk the boundary is inside the read, so the
		// chunk fails to authenticate.
		{"bytes after short last chunk", splice(partial, []byte{0}), nil, ErrAuth},
		{"reordered chunks", splice(full[:HeaderSize], chunk(full, 1), chunk(full, 0), chunk(full, 2)), nil, ErrAuth},
		{"dropped middle chunk", splice(full[:HeaderSize], chunk(full, 0), chunk(full, 2)), nil, ErrAuth},
		{"dropped first chunk", splice(full[:HeaderSize], chunk(full, 1), chunk(full, 2)), nil, ErrAuth},
		{"chunk from other blob", splice(full[:HeaderSize], chunk(full, 0), chunk(other, 1), chunk(full, 2)), nil, ErrAuth},
		{"header from other blob", splice(other[:HeaderSize], full[HeaderSize:]), nil, ErrAuth},
		{"last chunk duplicated", splice(full[:HeaderSize], chunk(full, 0), chunk(full, 1), chunk(full, 2), chunk(full, 2)), nil, ErrTrailingData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.key
			if k == nil {
				k = key
			}
			_, err := decryptAll(tt.blob, k)
			checkSentinel(t, err, tt.want)
		})
	}
}

// TestReleaseOnlyVerified checks that the plaintext handed out before an
// error is exactly the chunks that verified, and that the error sticks.
func TestReleaseOnlyVerified(t *testing.T) {
	key := fixedKey(5)
	plain := randBytes(4, 4*1024+10)
	h, blob := seal(t, key, plain, 10, 1)
	bad := flip(blob, int(ChunkOffset(h, 2))+3, 0x01)
	d, err := NewDecryptor(bytes.NewReader(bad), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(d)
	checkSentinel(t, err, ErrAuth)
	if !bytes.Equal(got, plain[:2*1024]) {
		t.Fatalf("got %d bytes before the error, want the 2048 verified ones", len(got))
	}
	for range 2 {
		n, err2 := d.Read(make([]byte, 10))
		if n != 0 || err2 != err {
			t.Fatalf("Read after error = %d, %v; want 0, %v", n, err2, err)
		}
	}
}

// sealChunks builds a blob chunk by chunk with explicit last flags, to
// produce encodings a correct encoder never writes.
func sealChunks(t *testing.T, key []byte, h Header, chunks [][]byte, lastFlags []bool) []byte {
	t.Helper()
	aead, err := newAEAD(h, key)
	if err != nil {
		t.Fatal(err)
	}
	var hb [HeaderSize]byte
	h.put(&hb)
	out := bytes.Clone(hb[:])
	var nonce [12]byte
	for i, c := range chunks {
		chunkNonce(&nonce, int64(i), lastFlags[i])
		out = aead.Seal(out, nonce[:], c, hb[:])
	}
	return out
}

func TestNonCanonical(t *testing.T) {
	key := fixedKey(8)
	h, err := headerWithSalt(key, 10, [16]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	fullChunk := randBytes(5, 1024)
	tests := []struct {
		name   string
		chunks [][]byte
		last   []bool
		want   error
	}{
		{"empty last chunk after full chunk", [][]byte{fullChunk, nil}, []bool{false, true}, ErrFormat},
		{"short middle chunk", [][]byte{fullChunk[:10], fullChunk}, []bool{false, true}, ErrAuth},
		{"two last chunks", [][]byte{fullChunk, fullChunk}, []bool{true, true}, ErrTrailingData},
		{"no last chunk", [][]byte{fullChunk, fullChunk}, []bool{false, false}, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob := sealChunks(t, key, h, tt.chunks, tt.last)
			_, err := decryptAll(blob, key)
			checkSentinel(t, err, tt.want)
			if _, err := PlainSize(int64(len(blob)), 10); tt.want == ErrFormat && err == nil {
				t.Error("PlainSize accepts the non-canonical size")
			}
		})
	}
	// The same chunks with correct flags decrypt: the failures above come
	// from the flags and layout alone.
	blob := sealChunks(t, key, h, [][]byte{fullChunk, fullChunk[:1]}, []bool{false, true})
	if got, err := decryptAll(blob, key); err != nil || !bytes.Equal(got, splice(fullChunk, fullChunk[:1])) {
		t.Fatalf("well-formed hand-built blob: %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	key := fixedKey(1)
	h, err := headerWithSalt(key, 14, [16]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	good, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != HeaderSize || string(good[:8]) != "OTAFLOW\x01" || good[8] != 1 || good[9] != 14 {
		t.Fatalf("header layout wrong: %x", good)
	}
	with := func(i int, v byte) []byte { c := bytes.Clone(good); c[i] = v; return c }
	tests := []struct {
		name string
		in   []byte
		want error // nil: parses back to h
	}{
		{"valid", good, nil},
		{"valid with trailing bytes", splice(good, []byte("chunk data")), nil},
		{"short", good[:HeaderSize-1], ErrTruncated},
		{"empty", nil, ErrTruncated},
		{"lower-case magic", splice([]byte("otaflow\x01"), good[8:]), ErrFormat},
		{"version 2", with(7, 2), ErrFormat},
		{"suite 0", with(8, 0), ErrUnsupported},
		{"suite 255", with(8, 255), ErrUnsupported},
		{"chunk log2 9", with(9, 9), ErrUnsupported},
		{"chunk log2 21", with(9, 21), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHeader(tt.in)
			if tt.want != nil {
				checkSentinel(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != h {
				t.Fatalf("ParseHeader = %+v, want %+v", got, h)
			}
		})
	}
	for _, l := range []uint8{10, 20} {
		if _, err := ParseHeader(with(9, l)); err != nil {
			t.Errorf("chunk log2 %d refused: %v", l, err)
		}
	}
	for _, bad := range []Header{{Suite: 2, ChunkLog2: 14}, {Suite: 1, ChunkLog2: 9}, {}} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v) succeeded", bad)
		}
	}
}

func TestHeaderKeys(t *testing.T) {
	key := fixedKey(1)
	h, err := NewHeader(key, DefaultChunkLog2)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.CheckKey(key); err != nil {
		t.Fatalf("CheckKey(own key) = %v", err)
	}
	checkSentinel(t, h.CheckKey(fixedKey(2)), ErrWrongKey)
	checkSentinel(t, h.CheckKey(key[:31]), ErrKeySize)
	if _, err := NewHeader(key, 9); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("NewHeader(chunk 2^9) = %v, want ErrUnsupported", err)
	}
	if _, err := NewHeader(make([]byte, 33), 14); !errors.Is(err, ErrKeySize) {
		t.Fatalf("NewHeader(33-byte key) = %v, want ErrKeySize", err)
	}
	h2, err := NewHeader(key, DefaultChunkLog2)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Salt == h.Salt || h2.Commitment == h.Commitment {
		t.Fatal("NewHeader reuses salt or commitment")
	}
	// The header must commit to the key it is used with.
	_, err = EncryptWithHeader(io.Discard, bytes.NewReader(nil), fixedKey(2), h)
	checkSentinel(t, err, ErrWrongKey)
	_, err = Encrypt(io.Discard, bytes.NewReader(nil), key[:5])
	checkSentinel(t, err, ErrKeySize)
	k1, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKey()
	if len(k1) != KeySize || bytes.Equal(k1, k2) {
		t.Fatal("NewKey does not return fresh 32-byte keys")
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		plain int64
		log2  uint8
		enc   int64
	}{
		{0, 10, 58 + 16},
		{1, 10, 58 + 1 + 16},
		{1023, 10, 58 + 1023 + 16},
		{1024, 10, 58 + 1024 + 16},
		{1025, 10, 58 + 1025 + 32},
		{2048, 10, 58 + 2048 + 32},
		{1 << 20, 14, 58 + 1<<20 + 64*16},
		{1<<20 + 1, 20, 58 + 1<<20 + 1 + 32},
	}
	for _, tt := range tests {
		if got := EncryptedSize(tt.plain, tt.log2); got != tt.enc {
			t.Errorf("EncryptedSize(%d, %d) = %d, want %d", tt.plain, tt.log2, got, tt.enc)
		}
		if got, err := PlainSize(tt.enc, tt.log2); err != nil || got != tt.plain {
			t.Errorf("PlainSize(%d, %d) = %d, %v; want %d", tt.enc, tt.log2, got, err, tt.plain)
		}
	}
	for _, tt := range []struct {
		plain int64
		log2  uint8
	}{{-1, 14}, {0, 9}, {0, 21}, {MaxChunks<<10 + 1, 10}} {
		if got := EncryptedSize(tt.plain, tt.log2); got != -1 {
			t.Errorf("EncryptedSize(%d, %d) = %d, want -1", tt.plain, tt.log2, got)
		}
	}
	bad := []struct {
		enc  int64
		log2 uint8
		want error
	}{
		{0, 10, ErrTruncated},
		{58 + 15, 10, ErrTruncated},
		{58 + 1040 + 15, 10, ErrFormat}, // remainder cannot hold a tag
		{58 + 1040 + 16, 10, ErrFormat}, // empty last chunk after a full one
		{58 + 16, 9, ErrUnsupported},
		{58 + (MaxChunks+1)*1040, 10, ErrFormat},
	}
	for _, tt := range bad {
		if got, err := PlainSize(tt.enc, tt.log2); !errors.Is(err, tt.want) {
			t.Errorf("PlainSize(%d, %d) = %d, %v; want %v", tt.enc, tt.log2, got, err, tt.want)
		}
	}
	// Every size a canonical encoder can produce maps back to itself.
	for p := int64(0); p < 5000; p++ {
		e := EncryptedSize(p, 10)
		if got, err := PlainSize(e, 10); err != nil || got != p {
			t.Fatalf("PlainSize(EncryptedSize(%d)) = %d, %v", p, got, err)
		}
	}
}

func TestChunkNonce(t *testing.T) {
	tests := []struct {
		i    int64
		last bool
		want string
	}{
		{0, false, "000000000000000000000000"},
		{0, true, "000000000000000000000001"},
		{5, false, "000000000000000000000500"},
		{258, true, "000000000000000000010201"},
		{MaxChunks - 1, false, "000000000000ffffffffff00"},
	}
	for _, tt := range tests {
		var n [12]byte
		n[0], n[11] = 0xaa, 0xaa // must be overwritten
		chunkNonce(&n, tt.i, tt.last)
		if got := hex.EncodeToString(n[:]); got != tt.want {
			t.Errorf("nonce(%d, %v) = %s, want %s", tt.i, tt.last, got, tt.want)
		}
	}
}

func TestChunkOffset(t *testing.T) {
	h := Header{Suite: SuiteAES256GCM, ChunkLog2: 14}
	for _, tt := range []struct{ i, want int64 }{{0, 58}, {1, 58 + 16400}, {1000, 58 + 16400*1000}} {
		if got := ChunkOffset(h, tt.i); got != tt.want {
			t.Errorf("ChunkOffset(%d) = %d, want %d", tt.i, got, tt.want)
		}
	}
}

func TestIOErrors(t *testing.T) {
	key := fixedKey(1)
	boom := errors.New("boom")
	_, blob := seal(t, key, randBytes(1, 3000), 10, 1)
	_, err := Encrypt(io.Discard, io.MultiReader(bytes.NewReader(make([]byte, 5000)), iotest.ErrReader(boom)), key)
	if !errors.Is(err, boom) {
		t.Fatalf("Encrypt read error = %v, want boom", err)
	}
	_, err = Encrypt(errWriter{boom}, bytes.NewReader(nil), key)
	if !errors.Is(err, boom) {
		t.Fatalf("Encrypt write error = %v, want boom", err)
	}
	for _, cut := range []int{10, HeaderSize + 100, HeaderSize + 1040} {
		src := io.MultiReader(bytes.NewReader(blob[:cut]), iotest.ErrReader(boom))
		d, err := NewDecryptor(src, key)
		if err == nil {
			_, err = io.ReadAll(d)
		}
		if !errors.Is(err, boom) {
			t.Fatalf("cut %d: error = %v, want boom", cut, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Fatalf("cut %d: I/O error %v reported as %v", cut, err, s)
			}
		}
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

// patternReader yields n bytes of a fixed pattern in irregular short reads,
// never holding the stream in memory.
type patternReader struct {
	off, n int64
	step   int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	r.step = (r.step*7 + 3) % 9973
	m := min(len(p), r.step+1, int(r.n-r.off))
	for i := range m {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(m)
	return m, nil
}

// stingy passes on at most max bytes per Read.
type stingy struct {
	r   io.Reader
	max int
}

func (s stingy) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.max)]) }

func TestStreamingMemory(t *testing.T) {
	const size = 64 << 20
	key := fixedKey(4)
	wantSum := func() []byte {
		h := sha256.New()
		if _, err := io.Copy(h, &patternReader{n: size}); err != nil {
			t.Fatal(err)
		}
		return h.Sum(nil)
	}()

	pr, pw := io.Pipe()
	gotSum := sha256.New()
	copyBuf := make([]byte, 7001)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	encErr := make(chan error, 1)
	go func() {
		_, err := Encrypt(pw, &patternReader{n: size}, key)
		pw.CloseWithError(err)
		encErr <- err
	}()
	d, err := NewDecryptor(stingy{pr, 5000}, key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{gotSum}, struct{ io.Reader }{d}, copyBuf)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-encErr; err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)

	if n != size || !bytes.Equal(gotSum.Sum(nil), wantSum) {
		t.Fatalf("streamed %d bytes with a different digest", n)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("streamed %d MiB, allocated %d bytes", size>>20, alloc)
	if alloc > 1<<20 {
		t.Fatalf("streaming %d MiB allocated %d bytes, want < 1 MiB", size>>20, alloc)
	}
}

// TestNoPerChunkAllocs checks that allocations do not grow with the number
// of chunks.
func TestNoPerChunkAllocs(t *testing.T) {
	key := fixedKey(4)
	small := randBytes(1, 100)
	large := randBytes(2, 64*1024+100)
	_, smallBlob := seal(t, key, small, 10, 1)
	_, largeBlob := seal(t, key, large, 10, 1)
	h, err := headerWithSalt(key, 10, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	measure := func(f func()) float64 { return testing.AllocsPerRun(20, f) }
	var rd bytes.Reader
	dec := func(blob []byte) func() {
		return func() {
			rd.Reset(blob)
			d, err := NewDecryptor(&rd, key)
			if err != nil {
				panic(err)
			}
			for {
				if _, err := d.Read(buf); err == io.EOF {
					return
				} else if err != nil {
					panic(err)
				}
			}
		}
	}
	enc := func(plain []byte) func() {
		return func() {
			rd.Reset(plain)
			if _, err := EncryptWithHeader(io.Discard, &rd, key, h); err != nil {
				panic(err)
			}
		}
	}
	if a, b := measure(dec(smallBlob)), measure(dec(largeBlob)); a != b {
		t.Errorf("decrypt allocs: %v for 1 chunk, %v for 65 chunks", a, b)
	}
	if a, b := measure(enc(small)), measure(enc(large)); a != b {
		t.Errorf("encrypt allocs: %v for 1 chunk, %v for 65 chunks", a, b)
	}
}
