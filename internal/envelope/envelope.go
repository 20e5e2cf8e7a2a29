// Package envelope implements otaflow-enc/v1, the chunked authenticated
// encryption format for firmware payloads.
//
// A blob is a 58-byte header followed by sealed chunks. Every chunk is
// authenticated on its own with AES-256-GCM, so a device can reject a
// tampered download at the first bad chunk, resume an interrupted download at
// any chunk boundary and decrypt with one chunk of RAM. The nonce carries the
// chunk index and a last-chunk flag (the STREAM construction used by age), so
// reordering, truncation and extension are all detected. docs/envelope.md
// specifies the bytes.
package envelope

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

const (
	// HeaderSize is the size of the encoded Header.
	HeaderSize = 58
	// KeySize is the size of a content key.
	KeySize = 32
	// TagSize is the size of the GCM tag that ends every sealed chunk.
	TagSize = 16
	// SuiteAES256GCM is the only suite byte this version understands.
	SuiteAES256GCM byte = 1
	// DefaultChunkLog2 gives 16 KiB chunks: small enough for a
	// microcontroller's RAM, large enough that the tags cost 0.1%.
	DefaultChunkLog2 uint8 = 14
	// MinChunkLog2 and MaxChunkLog2 bound the chunk sizes a decoder accepts.
	MinChunkLog2 uint8 = 10
	MaxChunkLog2 uint8 = 20
	// Suite is the format name as written in status fields and APIs.
	Suite = "otaflow-enc/v1"
	// MaxChunks bounds the chunk counter. The nonce has room for 2^88
	// chunks; the lower limit keeps the arithmetic far away from overflow.
	MaxChunks int64 = 1 << 40
)

// magic opens every blob: "OTAFLOW" and the format version.
const magic = "OTAFLOW\x01"

// HKDF info strings. They differ so that the commitment never reveals
// anything about the payload key.
const (
	infoCommit  = "otaflow-enc/v1 commit"
	infoPayload = "otaflow-enc/v1 payload"
)

var (
	// ErrFormat reports bytes that are not a well-formed otaflow-enc/v1 blob.
	ErrFormat = errors.New("envelope: malformed blob")
	// ErrUnsupported reports a well-formed header asking for a suite or a
	// chunk size this implementation does not support.
	ErrUnsupported = errors.New("envelope: unsupported parameters")
	// ErrWrongKey reports a key that does not match the header's commitment.
	ErrWrongKey = errors.New("envelope: wrong content key")
	// ErrKeySize reports a content key that is not KeySize bytes long.
	ErrKeySize = errors.New("envelope: content key must be 32 bytes")
	// ErrAuth reports a chunk whose tag does not verify: the blob was
	// modified, reordered or spliced.
	ErrAuth = errors.New("envelope: chunk authentication failed")
	// ErrTruncated reports a blob that ends before its last chunk.
	ErrTruncated = errors.New("envelope: blob truncated")
	// ErrTrailingData reports bytes after the last chunk.
	ErrTrailingData = errors.New("envelope: data after last chunk")
)

// Header is the fixed-size prefix of a blob.
type Header struct {
	Suite     byte
	ChunkLog2 uint8
	Salt      [16]byte
	// Commitment binds the blob to one content key, so that a wrong key is
	// detected before any chunk is processed and no second key can open
	// the same ciphertext.
	Commitment [32]byte
}

// ChunkSize returns the plaintext size of a full chunk. It is only
// meaningful for a header that passed validation.
func (h Header) ChunkSize() int { return 1 << h.ChunkLog2 }

func (h Header) validate() error {
	if h.Suite != SuiteAES256GCM {
		return fmt.Errorf("%w: suite %d", ErrUnsupported, h.Suite)
	}
	if err := checkChunkLog2(h.ChunkLog2); err != nil {
		return err
	}
	return nil
}

func checkChunkLog2(l uint8) error {
	if l < MinChunkLog2 || l > MaxChunkLog2 {
		return fmt.Errorf("%w: chunk size 2^%d outside 2^%d..2^%d", ErrUnsupported, l, MinChunkLog2, MaxChunkLog2)
	}
	return nil
}

func checkKeySize(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("%w: got %d bytes", ErrKeySize, len(key))
	}
	return nil
}

// put writes the encoded header into b without allocating.
func (h Header) put(b *[HeaderSize]byte) {
	copy(b[:8], magic)
	b[8] = h.Suite
	b[9] = h.ChunkLog2
	copy(b[10:26], h.Salt[:])
	copy(b[26:58], h.Commitment[:])
}

// MarshalBinary encodes the header. It refuses headers no decoder would
// accept.
func (h Header) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	var b [HeaderSize]byte
	h.put(&b)
	return b[:], nil
}

// ParseHeader decodes the first HeaderSize bytes of b. Bytes after the
// header are ignored.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header is %d bytes, need %d", ErrTruncated, len(b), HeaderSize)
	}
	if string(b[:8]) != magic {
		return Header{}, fmt.Errorf("%w: bad magic %q", ErrFormat, b[:8])
	}
	h := Header{Suite: b[8], ChunkLog2: b[9]}
	copy(h.Salt[:], b[10:26])
	copy(h.Commitment[:], b[26:58])
	if err := h.validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// NewKey returns a fresh random content key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("envelope: generate content key: %w", err)
	}
	return k, nil
}

// NewHeader returns a header with a random salt and the commitment to key.
func NewHeader(key []byte, chunkLog2 uint8) (Header, error) {
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return Header{}, fmt.Errorf("envelope: generate salt: %w", err)
	}
	return headerWithSalt(key, chunkLog2, salt)
}

// headerWithSalt is NewHeader with a caller-chosen salt, for test vectors.
func headerWithSalt(key []byte, chunkLog2 uint8, salt [16]byte) (Header, error) {
	if err := checkKeySize(key); err != nil {
		return Header{}, err
	}
	if err := checkChunkLog2(chunkLog2); err != nil {
		return Header{}, err
	}
	h := Header{Suite: SuiteAES256GCM, ChunkLog2: chunkLog2, Salt: salt}
	c, err := commitment(key, salt[:])
	if err != nil {
		return Header{}, err
	}
	h.Commitment = c
	return h, nil
}

func commitment(key, salt []byte) ([32]byte, error) {
	var c [32]byte
	b, err := hkdf.Key(sha256.New, key, salt, infoCommit, len(c))
	if err != nil {
		return c, fmt.Errorf("envelope: derive commitment: %w", err)
	}
	copy(c[:], b)
	return c, nil
}

func payloadKey(key, salt []byte) ([]byte, error) {
	b, err := hkdf.Key(sha256.New, key, salt, infoPayload, KeySize)
	if err != nil {
		return nil, fmt.Errorf("envelope: derive payload key: %w", err)
	}
	return b, nil
}

// CheckKey reports whether key is the content key the header commits to.
// It returns an error wrapping ErrWrongKey when it is not.
func (h Header) CheckKey(key []byte) error {
	if err := checkKeySize(key); err != nil {
		return err
	}
	c, err := commitment(key, h.Salt[:])
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(c[:], h.Commitment[:]) != 1 {
		return ErrWrongKey
	}
	return nil
}

// EncryptedSize returns the blob size for a plaintext of plainSize bytes, or
// -1 if plainSize is negative, chunkLog2 is unsupported or the plaintext
// needs more than MaxChunks chunks.
func EncryptedSize(plainSize int64, chunkLog2 uint8) int64 {
	if plainSize < 0 || checkChunkLog2(chunkLog2) != nil {
		return -1
	}
	cs := int64(1) << chunkLog2
	n := (plainSize + cs - 1) / cs
	if n == 0 {
		n = 1 // the empty plaintext is one empty last chunk
	}
	if n > MaxChunks {
		return -1
	}
	return HeaderSize + plainSize + n*TagSize
}

// PlainSize inverts EncryptedSize. It fails for sizes no canonical encoder
// produces.
func PlainSize(encryptedSize int64, chunkLog2 uint8) (int64, error) {
	if err := checkChunkLog2(chunkLog2); err != nil {
		return 0, err
	}
	if encryptedSize < HeaderSize+TagSize {
		return 0, fmt.Errorf("%w: %d bytes cannot hold a header and a chunk", ErrTruncated, encryptedSize)
	}
	cs := int64(1) << chunkLog2
	body := encryptedSize - HeaderSize
	full, rem := body/(cs+TagSize), body%(cs+TagSize)
	switch {
	case rem == 0:
		// Every chunk is full, the last one included.
	case rem < TagSize:
		return 0, fmt.Errorf("%w: final chunk of %d bytes is shorter than its tag", ErrFormat, rem)
	case rem == TagSize && full > 0:
		return 0, fmt.Errorf("%w: empty final chunk after a full chunk", ErrFormat)
	default:
		full++ // the short last chunk
	}
	if full > MaxChunks {
		return 0, fmt.Errorf("%w: %d chunks exceed the limit of %d", ErrFormat, full, MaxChunks)
	}
	return body - full*TagSize, nil
}

// ChunkOffset returns the offset of sealed chunk i from the start of the
// blob. Chunks have a fixed size, which is what makes ranged reads and
// resumed downloads possible.
func ChunkOffset(h Header, i int64) int64 {
	return HeaderSize + i*int64(h.ChunkSize()+TagSize)
}

// chunkNonce writes the STREAM nonce for chunk i: an 11-byte big-endian
// counter followed by the last-chunk flag.
func chunkNonce(n *[12]byte, i int64, last bool) {
	// i < 2^40, so the top three counter bytes are always zero.
	n[0], n[1], n[2] = 0, 0, 0
	u := uint64(i)
	for j := 10; j >= 3; j-- {
		n[j] = byte(u)
		u >>= 8
	}
	n[11] = 0
	if last {
		n[11] = 1
	}
}
