package menderartifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// xzReader decodes xz data: one or more concatenated streams whose blocks use
// the LZMA2 filter alone, which is what mender-artifact and the xz tool
// write. It stands in for xz.NewReader because that reader allocates the
// dictionary a block header declares, up to 4 GiB (mender-artifact declares
// 64 MiB); here the dictionary is capped at maxDict. A match only reaches
// back into output already produced, so no stream of at most maxDict bytes
// needs a larger one.
type xzReader struct {
	data    []byte
	in      *bytes.Reader // reads data
	maxDict int
	err     error // sticky; io.EOF at the end

	inStream bool
	flags    [2]byte    // stream flags of the current stream
	records  []xzRecord // blocks of the current stream, for its index

	block            *lzma.Reader2 // nil between blocks
	headerSize       int64
	dataStart        int64
	check            hash.Hash // nil for check type none
	uncompressed     int64
	wantCompressed   int64 // -1 when the block header does not say
	wantUncompressed int64
	idleReads        int
}

type xzRecord struct{ unpadded, uncompressed int64 }

var (
	xzMagic       = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
	crc64Table    = crc64.MakeTable(crc64.ECMA)
)

const lzma2FilterID = 0x21

func newXZReader(data []byte, maxDict int64) (*xzReader, error) {
	r := &xzReader{data: data, in: bytes.NewReader(data), maxDict: int(min(maxDict, lzma.MaxDictCap))}
	if err := r.startStream(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *xzReader) offset() int64 { return int64(len(r.data) - r.in.Len()) }

func (r *xzReader) Read(p []byte) (int, error) {
	for r.err == nil {
		if r.block == nil {
			r.err = r.advance()
			continue
		}
		n, err := r.block.Read(p)
		if n > 0 {
			r.idleReads = 0
			r.uncompressed += int64(n)
			if r.check != nil {
				r.check.Write(p[:n])
			}
		}
		switch {
		case err == io.EOF:
			r.block = nil
			r.err = r.endBlock()
		case err != nil:
			r.err = fmt.Errorf("xz: %w", err)
		case n == 0:
			if r.idleReads++; r.idleReads > 100 {
				r.err = io.ErrNoProgress
			}
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, r.err
}

// advance moves to the next block, through an index, stream footer, stream
// padding and the next stream header when they come first.
func (r *xzReader) advance() error {
	if !r.inStream {
		padding := 0
		for r.in.Len() > 0 && r.data[r.offset()] == 0 {
			r.in.ReadByte()
			padding++
		}
		if padding%4 != 0 {
			return errors.New("xz: stream padding is not a multiple of 4 bytes")
		}
		if r.in.Len() == 0 {
			return io.EOF
		}
		return r.startStream()
	}
	start := r.offset()
	b, err := r.in.ReadByte()
	if err != nil {
		return errors.New("xz: truncated stream")
	}
	if b == 0 {
		return r.readIndex(start)
	}
	return r.startBlock(b)
}

func (r *xzReader) startStream() error {
	var h [12]byte
	if _, err := io.ReadFull(r.in, h[:]); err != nil {
		return errors.New("xz: truncated stream header")
	}
	if !bytes.Equal(h[:6], xzMagic) {
		return errors.New("xz: not an xz stream")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return errors.New("xz: stream header checksum mismatch")
	}
	if h[6] != 0 || checkSize(h[7]) < 0 {
		return fmt.Errorf("xz: unsupported stream flags %#02x %#02x", h[6], h[7])
	}
	r.flags = [2]byte{h[6], h[7]}
	r.inStream = true
	r.records = r.records[:0]
	return nil
}

// checkSize is the size of a block's check for a check type, -1 for the
// types this reader does not support.
func checkSize(checkType byte) int {
	switch checkType {
	case 0x00:
		return 0
	case 0x01: // CRC32
		return 4
	case 0x04: // CRC64
		return 8
	case 0x0A: // SHA-256
		return 32
	}
	return -1
}

func (r *xzReader) newCheck() hash.Hash {
	switch r.flags[1] {
	case 0x01:
		return crc32.NewIEEE()
	case 0x04:
		return crc64.New(crc64Table)
	case 0x0A:
		return sha256.New()
	}
	return nil
}

// startBlock reads a block header whose first byte is size and opens the
// LZMA2 decoder of its data.
func (r *xzReader) startBlock(size byte) error {
	headerSize := (int64(size) + 1) * 4
	h := make([]byte, headerSize)
	h[0] = size
	if _, err := io.ReadFull(r.in, h[1:]); err != nil {
		return errors.New("xz: truncated block header")
	}
	if crc32.ChecksumIEEE(h[:headerSize-4]) != binary.LittleEndian.Uint32(h[headerSize-4:]) {
		return errors.New("xz: block header checksum mismatch")
	}
	flags := h[1]
	if flags&0x3C != 0 {
		return fmt.Errorf("xz: unsupported block flags %#02x", flags)
	}
	if flags&0x03 != 0 {
		return errors.New("xz: only the LZMA2 filter alone is supported")
	}
	fields := bytes.NewReader(h[2 : headerSize-4])
	r.wantCompressed, r.wantUncompressed = -1, -1
	var err error
	if flags&0x40 != 0 {
		if r.wantCompressed, err = readVLI(fields); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 {
		if r.wantUncompressed, err = readVLI(fields); err != nil {
			return err
		}
	}
	id, err := readVLI(fields)
	if err != nil {
		return err
	}
	propsSize, err := readVLI(fields)
	if err != nil {
		return err
	}
	if id != lzma2FilterID || propsSize != 1 {
		return errors.New("xz: only the LZMA2 filter alone is supported")
	}
	prop, err := fields.ReadByte()
	if err != nil || prop > 40 {
		return errors.New("xz: invalid LZMA2 dictionary size")
	}
	for fields.Len() > 0 {
		if b, _ := fields.ReadByte(); b != 0 {
			return errors.New("xz: block header padding is not zero")
		}
	}
	// Blocks are independent, so a block never needs more dictionary than
	// its output, which its header may state.
	dict := min(lzma2DictSize(prop), int64(r.maxDict))
	if r.wantUncompressed >= 0 {
		dict = min(dict, r.wantUncompressed)
	}
	dict = max(dict, lzma.MinDictCap)
	r.headerSize = headerSize
	r.dataStart = r.offset()
	r.check = r.newCheck()
	r.uncompressed = 0
	if r.block, err = (lzma.Reader2Config{DictCap: int(dict)}).NewReader2(r.in); err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	return nil
}

// lzma2DictSize decodes the dictionary size property of the LZMA2 filter.
func lzma2DictSize(prop byte) int64 {
	if prop == 40 {
		return 1<<32 - 1
	}
	return int64(2|prop&1) << (prop/2 + 11)
}

// endBlock checks what follows a block's data: padding and check.
func (r *xzReader) endBlock() error {
	compressed := r.offset() - r.dataStart
	if r.wantCompressed >= 0 && compressed != r.wantCompressed {
		return errors.New("xz: block compressed size does not match its header")
	}
	if r.wantUncompressed >= 0 && r.uncompressed != r.wantUncompressed {
		return errors.New("xz: block uncompressed size does not match its header")
	}
	unpadded := r.headerSize + compressed
	for ; unpadded%4 != 0; unpadded++ {
		if b, err := r.in.ReadByte(); err != nil || b != 0 {
			return errors.New("xz: bad block padding")
		}
	}
	unpadded = r.headerSize + compressed
	size := checkSize(r.flags[1])
	sum := make([]byte, size)
	if _, err := io.ReadFull(r.in, sum); err != nil {
		return errors.New("xz: truncated block check")
	}
	var ok bool
	switch h := r.check.(type) {
	case nil:
		ok = true
	case hash.Hash32:
		ok = binary.LittleEndian.Uint32(sum) == h.Sum32()
	case hash.Hash64:
		ok = binary.LittleEndian.Uint64(sum) == h.Sum64()
	default:
		ok = bytes.Equal(sum, h.Sum(nil))
	}
	if !ok {
		return errors.New("xz: block check mismatch")
	}
	r.records = append(r.records, xzRecord{unpadded: unpadded + int64(size), uncompressed: r.uncompressed})
	return nil
}

// readIndex reads a stream's index, whose indicator byte at start has been
// read, and the stream footer.
func (r *xzReader) readIndex(start int64) error {
	count, err := readVLI(r.in)
	if err != nil {
		return err
	}
	if count != int64(len(r.records)) {
		return fmt.Errorf("xz: index lists %d blocks, the stream has %d", count, len(r.records))
	}
	for _, rec := range r.records {
		unpadded, err := readVLI(r.in)
		if err != nil {
			return err
		}
		uncompressed, err := readVLI(r.in)
		if err != nil {
			return err
		}
		if unpadded != rec.unpadded || uncompressed != rec.uncompressed {
			return errors.New("xz: index does not match the blocks")
		}
	}
	for (r.offset()-start)%4 != 0 {
		if b, err := r.in.ReadByte(); err != nil || b != 0 {
			return errors.New("xz: bad index padding")
		}
	}
	var tail [4 + 12]byte // index CRC32, stream footer
	indexEnd := r.offset()
	if _, err := io.ReadFull(r.in, tail[:]); err != nil {
		return errors.New("xz: truncated index or stream footer")
	}
	if crc32.ChecksumIEEE(r.data[start:indexEnd]) != binary.LittleEndian.Uint32(tail[:4]) {
		return errors.New("xz: index checksum mismatch")
	}
	footer := tail[4:]
	if crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer[:4]) {
		return errors.New("xz: stream footer checksum mismatch")
	}
	indexSize := indexEnd + 4 - start
	if (int64(binary.LittleEndian.Uint32(footer[4:8]))+1)*4 != indexSize {
		return errors.New("xz: stream footer does not match the index size")
	}
	if !bytes.Equal(footer[8:10], r.flags[:]) || !bytes.Equal(footer[10:], xzFooterMagic) {
		return errors.New("xz: bad stream footer")
	}
	r.inStream = false
	return nil
}

// readVLI reads an xz variable-length integer (at most 9 bytes, minimal).
func readVLI(br io.ByteReader) (int64, error) {
	var v uint64
	for i := range 9 {
		b, err := br.ReadByte()
		if err != nil {
			return 0, errors.New("xz: truncated integer")
		}
		v |= uint64(b&0x7F) << (7 * i)
		if b&0x80 == 0 {
			if i > 0 && b == 0 {
				return 0, errors.New("xz: integer not minimally encoded")
			}
			return int64(v), nil
		}
	}
	return 0, errors.New("xz: integer too long")
}
