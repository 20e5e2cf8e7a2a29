package envelope

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// NewDecryptor reads and checks the header from src, then returns a reader
// of the verified plaintext. The key is checked against the header's
// commitment before anything else is read.
//
// The reader returns plaintext one chunk at a time, each only after its tag
// verified. A caller must still treat a stream that ends in an error as
// entirely untrusted: earlier chunks were authentic, but the blob as a whole
// is not.
func NewDecryptor(src io.Reader, key []byte) (io.Reader, error) {
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(src, hb[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: header is %d bytes, need %d", ErrTruncated, n, HeaderSize)
		}
		return nil, fmt.Errorf("envelope: read header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	return NewDecryptorAt(h, key, 0, src)
}

// NewDecryptorAt returns a reader of the verified plaintext from chunk
// onwards, that is from plaintext offset chunk·h.ChunkSize(). src must be
// positioned at ChunkOffset(h, chunk) of the blob whose header is h. This is
// how a resumed download or an HTTP range request is decrypted.
func NewDecryptorAt(h Header, key []byte, chunk int64, src io.Reader) (io.Reader, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	if chunk < 0 || chunk >= MaxChunks {
		return nil, fmt.Errorf("%w: chunk index %d out of range", ErrFormat, chunk)
	}
	if err := h.CheckKey(key); err != nil {
		return nil, err
	}
	aead, err := newAEAD(h, key)
	if err != nil {
		return nil, err
	}
	d := &decryptor{
		src:    src,
		aead:   aead,
		sealed: make([]byte, h.ChunkSize()+TagSize),
		opened: make([]byte, h.ChunkSize()),
		next:   chunk,
	}
	h.put(&d.aad)
	return d, nil
}

// decryptor holds one sealed chunk, its opened plaintext and one byte of
// look-ahead. The plaintext needs its own buffer because a failed GCM open
// wipes its output, and the ciphertext is still needed to tell truncation
// and trailing data apart from tampering.
type decryptor struct {
	src    io.Reader
	aead   cipher.AEAD
	aad    [HeaderSize]byte
	nonce  [12]byte
	sealed []byte
	opened []byte
	plain  []byte // verified plaintext not yet returned; aliases opened

	ahead    [1]byte
	hasAhead bool

	next int64 // index of the next chunk to read
	done bool  // the last chunk has been verified
	err  error // sticky
}

func (d *decryptor) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(d.plain) == 0 {
		switch {
		case d.err != nil:
			return 0, d.err
		case d.done:
			return 0, io.EOF
		}
		if err := d.readChunk(); err != nil {
			d.err = err
			return 0, err
		}
	}
	n := copy(p, d.plain)
	d.plain = d.plain[n:]
	return n, nil
}

// readChunk reads, classifies and opens the next chunk.
func (d *decryptor) readChunk() error {
	i := d.next
	if i >= MaxChunks {
		return fmt.Errorf("%w: more than %d chunks", ErrFormat, MaxChunks)
	}
	have := 0
	if d.hasAhead {
		d.sealed[0] = d.ahead[0]
		d.hasAhead = false
		have = 1
	}
	n, err := io.ReadFull(d.src, d.sealed[have:])
	n += have
	full := false
	switch {
	case err == nil:
		full = true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return fmt.Errorf("envelope: read chunk %d: %w", i, err)
	}
	// A short chunk can only be the last one. A full chunk is the last one
	// exactly when the stream ends right after it.
	last := !full
	if full {
		_, err := io.ReadFull(d.src, d.ahead[:])
		switch {
		case err == nil:
			d.hasAhead = true
		case errors.Is(err, io.EOF):
			last = true
		default:
			return fmt.Errorf("envelope: read chunk %d: %w", i+1, err)
		}
	}
	if n < TagSize {
		return fmt.Errorf("%w: chunk %d is %d bytes, shorter than its tag", ErrTruncated, i, n)
	}

	sealed := d.sealed[:n]
	plain, err := d.open(i, last, sealed)
	if err != nil {
		if full {
			// The bytes are authentic with the other flag: either the stream
			// was cut after a middle chunk or something follows the last one.
			if _, err := d.open(i, !last, sealed); err == nil {
				if last {
					return fmt.Errorf("%w: stream ends after chunk %d, which is not the last", ErrTruncated, i)
				}
				return fmt.Errorf("%w: bytes follow last chunk %d", ErrTrailingData, i)
			}
		}
		return fmt.Errorf("decrypt chunk %d: %w", i, ErrAuth)
	}
	if last && len(plain) == 0 && i > 0 {
		// Encoders end a full-size plaintext with a full last chunk; an
		// empty one would give a second encoding of the same plaintext.
		return fmt.Errorf("%w: empty last chunk %d after a full chunk", ErrFormat, i)
	}
	d.plain = plain
	d.next = i + 1
	d.done = last
	return nil
}

func (d *decryptor) open(i int64, last bool, sealed []byte) ([]byte, error) {
	chunkNonce(&d.nonce, i, last)
	return d.aead.Open(d.opened[:0], d.nonce[:], sealed, d.aad[:])
}
