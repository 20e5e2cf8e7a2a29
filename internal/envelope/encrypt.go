package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// newAEAD returns the chunk cipher for the blob described by h.
func newAEAD(h Header, key []byte) (cipher.AEAD, error) {
	pk, err := payloadKey(key, h.Salt[:])
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(pk)
	if err != nil {
		return nil, fmt.Errorf("envelope: payload cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("envelope: payload cipher: %w", err)
	}
	return aead, nil
}

// Encrypt writes src as an otaflow-enc/v1 blob with a fresh random salt and
// the default chunk size. It returns the number of plaintext bytes read.
func Encrypt(dst io.Writer, src io.Reader, key []byte) (plainSize int64, err error) {
	h, err := NewHeader(key, DefaultChunkLog2)
	if err != nil {
		return 0, err
	}
	return EncryptWithHeader(dst, src, key, h)
}

// EncryptWithHeader is Encrypt with a caller-supplied header. Reusing a
// header with the same key for different plaintexts reuses nonces; it
// exists for reproducible test vectors. The header must commit to key.
func EncryptWithHeader(dst io.Writer, src io.Reader, key []byte, h Header) (int64, error) {
	if err := h.validate(); err != nil {
		return 0, err
	}
	if err := h.CheckKey(key); err != nil {
		return 0, err
	}
	aead, err := newAEAD(h, key)
	if err != nil {
		return 0, err
	}
	var aad [HeaderSize]byte
	h.put(&aad)
	if _, err := dst.Write(aad[:]); err != nil {
		return 0, fmt.Errorf("envelope: write header: %w", err)
	}

	cs := h.ChunkSize()
	buf := make([]byte, cs+TagSize)
	var (
		nonce [12]byte
		ahead [1]byte
		have  int // bytes already in buf, carried over from the look-ahead
		total int64
	)
	for i := int64(0); ; i++ {
		if i >= MaxChunks {
			return total, fmt.Errorf("%w: plaintext needs more than %d chunks", ErrFormat, MaxChunks)
		}
		n, err := io.ReadFull(src, buf[have:cs])
		n += have
		last := false
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		case err != nil:
			return total, fmt.Errorf("envelope: read plaintext chunk %d: %w", i, err)
		default:
			// A full chunk is the last one only if nothing follows, and the
			// flag has to be known before sealing: peek one byte.
			if _, err := io.ReadFull(src, ahead[:]); errors.Is(err, io.EOF) {
				last = true
			} else if err != nil {
				return total, fmt.Errorf("envelope: read plaintext chunk %d: %w", i+1, err)
			}
		}
		chunkNonce(&nonce, i, last)
		sealed := aead.Seal(buf[:0], nonce[:], buf[:n], aad[:])
		if _, err := dst.Write(sealed); err != nil {
			return total, fmt.Errorf("envelope: write chunk %d: %w", i, err)
		}
		total += int64(n)
		if last {
			return total, nil
		}
		buf[0] = ahead[0]
		have = 1
	}
}
