package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/blobstoretest"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/s3test"
)

// TestPlaintextReaderOverStores: the plaintext of an encrypted blob is read
// at any offset through the blob's io.ReaderAt, from the filesystem store
// and from a real S3 server, with few GETs for a whole download and one for
// a small range.
func TestPlaintextReaderOverStores(t *testing.T) {
	srv := s3test.Start(t)
	tr := newCountingTransport(t)
	fs, err := blobstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 64
	plain := blobstoretest.RandomBytes(31, chunks<<envelope.DefaultChunkLog2+123)
	key, err := envelope.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if _, err := envelope.Encrypt(&enc, bytes.NewReader(plain), key); err != nil {
		t.Fatal(err)
	}
	for name, store := range map[string]blobstore.Store{
		"fs": fs,
		"s3": newTestStore(t, srv, func(o *Options) { o.Transport = tr }),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			info := blobstoretest.Put(t, store, enc.Bytes())
			src, err := store.Open(ctx, info.Digest)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = src.Close() }()
			size := src.Info().Size
			if size != info.Size {
				t.Fatalf("size %d, want %d", size, info.Size)
			}
			tr.reset()
			r, err := envelope.NewPlaintextReader(src, size, key)
			if err != nil {
				t.Fatal(err)
			}
			if r.Size() != int64(len(plain)) {
				t.Fatalf("Size %d, want %d", r.Size(), len(plain))
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("whole plaintext: %d bytes, %v", len(got), err)
			}
			if name == "s3" {
				// The header, then windows of 1, 2, 4, 8 and 16 chunks.
				if n := tr.count("GET"); n > 9 {
					t.Errorf("%d GETs for a %d-chunk download, want at most 9", n, chunks)
				}
			}
			rng := rand.New(rand.NewPCG(5, 6))
			for range 20 {
				off := rng.IntN(len(plain))
				n := 1 + rng.IntN(40000)
				if _, err := r.Seek(int64(off), io.SeekStart); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, n)
				got, err := io.ReadFull(r, buf)
				want := plain[off:min(off+n, len(plain))]
				if !bytes.Equal(buf[:got], want) || (len(want) == n && err != nil) {
					t.Fatalf("read %d at %d: %d bytes, %v", n, off, got, err)
				}
			}
			if name == "s3" {
				tr.reset()
				if _, err := r.Seek(4, io.SeekEnd); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Seek(-8, io.SeekCurrent); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, plain[len(plain)-4:]) {
					t.Fatalf("last 4 bytes: %v", err)
				}
				if n := tr.count("GET"); n != 1 {
					t.Errorf("%d GETs for a 4-byte range, want 1", n)
				}
			}
			if _, err := store.Open(ctx, blobstoretest.Digest([]byte("absent"))); !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("missing blob: %v, want ErrNotFound", err)
			}
		})
	}
}
