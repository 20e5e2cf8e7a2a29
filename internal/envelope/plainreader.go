package envelope

import (
	"errors"
	"fmt"
	"io"
)

// PlaintextReader reads the plaintext of a blob at any offset, for clients
// that download the plaintext over HTTP with Range requests
// (http.ServeContent). Seek only records the position; a Read at offset off
// opens chunk off/ChunkSize with NewDecryptorAt, drops the bytes before off
// and keeps the decryptor for the reads that follow, so a sequential
// download opens the blob once. Every byte returned comes from a chunk
// whose tag verified; a chunk that fails to verify is an error, never data.
//
// A PlaintextReader is not safe for concurrent use; the blob's ReaderAt
// is only ever called by one goroutine at a time.
type PlaintextReader struct {
	blob     io.ReaderAt
	blobSize int64
	key      []byte
	h        Header
	size     int64

	pos int64 // where the next Read starts

	dec    io.Reader // nil until a Read needs one, and after a failed Read
	decPos int64     // plaintext offset dec continues at
}

var _ io.ReadSeeker = (*PlaintextReader)(nil)

// Read-ahead window bounds. Each window is one ReadAt of the blob: one GET
// for an object store, so windows grow while reads stay sequential. They
// start at one sealed chunk plus the decryptor's one-byte look-ahead (what a
// small range needs) and stop at 16 sealed chunks (256 KiB for the default
// chunk size), the memory one reader holds.
const maxWindowChunks = 16

// NewPlaintextReader reads the header of the blob (blobSize bytes) and
// checks key against its commitment. The plaintext size follows from the
// blob size (PlainSize); a blob whose size no encoder produces is refused.
func NewPlaintextReader(blob io.ReaderAt, blobSize int64, key []byte) (*PlaintextReader, error) {
	var hb [HeaderSize]byte
	if n, err := blob.ReadAt(hb[:], 0); n < HeaderSize {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: header is %d bytes, need %d", ErrTruncated, n, HeaderSize)
		}
		return nil, fmt.Errorf("envelope: read header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if err := h.CheckKey(key); err != nil {
		return nil, err
	}
	size, err := PlainSize(blobSize, h.ChunkLog2)
	if err != nil {
		return nil, err
	}
	return &PlaintextReader{blob: blob, blobSize: blobSize, key: key, h: h, size: size}, nil
}

// Size is the plaintext size.
func (r *PlaintextReader) Size() int64 { return r.size }

// Seek sets the offset of the next Read. Offsets past the end are allowed
// (Read then returns io.EOF); negative ones are not.
func (r *PlaintextReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, fmt.Errorf("envelope: seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("envelope: seek to negative offset %d", abs)
	}
	r.pos = abs
	return abs, nil
}

// Read reads verified plaintext from the current offset.
func (r *PlaintextReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.position(); err != nil {
		r.dec = nil
		return 0, err
	}
	n, err := r.dec.Read(p)
	r.pos += int64(n)
	r.decPos = r.pos
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if r.pos < r.size {
			r.dec = nil
			return n, fmt.Errorf("%w: plaintext ends at %d of %d bytes", ErrTruncated, r.pos, r.size)
		}
		err = nil // the next Read reports io.EOF
	default:
		// Opened afresh next time: an I/O error may pass, an
		// authentication failure comes back.
		r.dec = nil
	}
	return n, err
}

// position makes dec continue at pos: the current decryptor when pos lies
// ahead of it in the chunk it holds (skipping those bytes costs nothing),
// else a new one at pos's chunk.
func (r *PlaintextReader) position() error {
	cs := int64(r.h.ChunkSize())
	if r.dec != nil && r.pos == r.decPos {
		return nil
	}
	if r.dec == nil || r.pos < r.decPos || r.pos/cs != r.decPos/cs {
		i := r.pos / cs
		off := ChunkOffset(r.h, i)
		dec, err := NewDecryptorAt(r.h, r.key, i, newReadAhead(r.blob, off, r.blobSize, r.h))
		if err != nil {
			return err
		}
		r.dec, r.decPos = dec, i*cs
	}
	if skip := r.pos - r.decPos; skip > 0 {
		n, err := io.CopyN(io.Discard, r.dec, skip)
		r.decPos += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: plaintext ends at %d of %d bytes", ErrTruncated, r.decPos, r.size)
			}
			return err
		}
	}
	return nil
}

// readAhead reads [off, end) of a ReaderAt in windows that double from
// next up to max, each with one ReadAt.
type readAhead struct {
	src       io.ReaderAt
	off, end  int64
	next, max int64
	buf, data []byte // data: the unread part of buf
	err       error  // after data: why the last window was short
}

func newReadAhead(src io.ReaderAt, off, end int64, h Header) *readAhead {
	sealed := int64(h.ChunkSize() + TagSize)
	return &readAhead{src: src, off: off, end: end, next: sealed + 1, max: maxWindowChunks * sealed}
}

func (a *readAhead) Read(p []byte) (int, error) {
	if len(a.data) == 0 {
		switch {
		case a.err != nil:
			return 0, a.err
		case a.off >= a.end:
			return 0, io.EOF
		}
		n := min(a.next, a.end-a.off)
		if int64(cap(a.buf)) < n {
			a.buf = make([]byte, n)
		}
		got, err := a.src.ReadAt(a.buf[:n], a.off)
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: blob ends at %d, before its size %d", ErrTruncated, a.off+int64(got), a.end)
			}
			a.err = err
		}
		a.off += int64(got)
		a.data = a.buf[:got]
		a.next = min(2*a.next, a.max)
		if got == 0 {
			return 0, a.err
		}
	}
	n := copy(p, a.data)
	a.data = a.data[n:]
	return n, nil
}
