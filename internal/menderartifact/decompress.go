package menderartifact

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// compressionOf names the compression of an archive entry from its suffix
// after base ("header.tar.gz" → "gzip").
func compressionOf(entry, base string) (string, error) {
	switch strings.TrimPrefix(entry, base) {
	case "":
		return "none", nil
	case ".gz":
		return "gzip", nil
	case ".xz":
		return "xz", nil
	case ".zst":
		return "zstd", nil
	}
	return "", invalid("%s: unsupported compression (want %s, %s.gz, %s.xz or %s.zst)", quoteShort(entry), base, base, base, base)
}

// decompressor returns a reader of the decompressed archive and a function
// releasing it. maxSize bounds the memory a decoder may set aside for its
// window: no valid archive of at most maxSize bytes needs more.
func decompressor(compression string, archive []byte, maxSize int64) (io.Reader, func(), error) {
	r := bytes.NewReader(archive)
	switch compression {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case "xz":
		xr, err := newXZReader(archive, maxSize)
		if err != nil {
			return nil, nil, err
		}
		return xr, func() {}, nil
	case "zstd":
		window := max(uint64(maxSize), zstd.MinWindowSize)
		zr, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1), // decode in this goroutine
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(window),
			zstd.WithDecoderMaxMemory(window))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	default:
		return r, func() {}, nil
	}
}

// boundedReader fails once r yields more than left bytes, so a small archive
// that decompresses to gigabytes is refused after left bytes.
type boundedReader struct {
	r     io.Reader
	left  int64
	limit int64
	entry string
}

func newBoundedReader(r io.Reader, limit int64, entry string) *boundedReader {
	return &boundedReader{r: r, left: limit, limit: limit, entry: entry}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells an archive that ends at the limit from one
		// that goes on.
		var one [1]byte
		n, err := io.ReadFull(b.r, one[:])
		if n > 0 {
			return 0, invalid("%s decompresses to more than %d bytes", b.entry, b.limit)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
