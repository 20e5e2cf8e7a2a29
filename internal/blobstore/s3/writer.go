package s3

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/otaflow/otaflow/internal/blobstore"
)

const (
	spoolPattern = "otaflow-s3-blob-*.tmp"
	// minioSinglePutMax is the size up to which minio-go uploads with one
	// PUT when PartSize is unset (its minPartSize).
	minioSinglePutMax = 16 << 20
)

// writer spools a blob to a local file while hashing it; see the package
// comment for why it does not stream to the bucket.
type writer struct {
	store *Store
	f     *os.File
	// unlinked is true once the spool file has no name; until then
	// finishing the writer must remove it.
	unlinked bool
	h        hash.Hash
	size     int64
	err      error // first write error; makes Commit fail
	done     bool
}

func newWriter(s *Store) (*writer, error) {
	f, err := os.CreateTemp(s.tempDir, spoolPattern)
	if err != nil {
		return nil, fmt.Errorf("create blob: spool file: %w", err)
	}
	w := &writer{store: s, f: f, h: sha256.New()}
	// The open descriptor is all the writer needs. Unlinking at once means a
	// crashed or killed process leaves no spool file behind (on systems that
	// allow removing open files).
	if os.Remove(f.Name()) == nil {
		w.unlinked = true
	}
	return w, nil
}

func (w *writer) Digest() string { return hex.EncodeToString(w.h.Sum(nil)) }

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, blobstore.ErrWriterClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write blob: spool file: %w", err)
		return n, w.err
	}
	return n, nil
}

func (w *writer) Commit(ctx context.Context) (blobstore.Info, error) {
	return w.commit(ctx, "")
}

func (w *writer) CommitExpect(ctx context.Context, digest string) (blobstore.Info, error) {
	if w.done {
		return blobstore.Info{}, fmt.Errorf("commit blob: %w", blobstore.ErrWriterClosed)
	}
	if !blobstore.ValidDigest(digest) {
		_ = w.Abort()
		return blobstore.Info{}, fmt.Errorf("commit blob %q: %w", digest, blobstore.ErrInvalidDigest)
	}
	return w.commit(ctx, digest)
}

func (w *writer) commit(ctx context.Context, expect string) (blobstore.Info, error) {
	if w.done {
		return blobstore.Info{}, fmt.Errorf("commit blob: %w", blobstore.ErrWriterClosed)
	}
	digest := w.Digest()
	info, err := w.publish(ctx, digest, expect)
	// The spool file is not needed after an upload, and a failed commit
	// finishes the writer as well.
	_ = w.Abort()
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("commit blob %s: %w", digest, err)
	}
	return info, nil
}

func (w *writer) publish(ctx context.Context, digest, expect string) (blobstore.Info, error) {
	if w.err != nil {
		return blobstore.Info{}, w.err
	}
	if expect != "" && expect != digest {
		return blobstore.Info{}, fmt.Errorf("%w: expected %s", blobstore.ErrDigestMismatch, expect)
	}
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, err
	}
	// Content already stored: keep the object (its ModTime and any
	// presigned URLs stay valid) and skip uploading what may be gigabytes.
	existing, err := w.store.stat(ctx, digest)
	switch {
	case err == nil && existing.Size == w.size:
		return existing, nil
	case err == nil:
		// Same digest, other size: the object was not written by this
		// package. Replace it.
		return w.store.upload(ctx, digest, w.f, w.size, false)
	case errors.Is(err, blobstore.ErrNotFound):
		return w.store.upload(ctx, digest, w.f, w.size, true)
	default:
		return blobstore.Info{}, fmt.Errorf("check for existing blob: %w", err)
	}
}

// Abort implements blobstore.Writer.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	closeErr := w.f.Close()
	if !w.unlinked {
		if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("abort blob: %w", err)
		}
	}
	if closeErr != nil && !errors.Is(closeErr, fs.ErrClosed) {
		return fmt.Errorf("abort blob: %w", closeErr)
	}
	return nil
}

// upload stores size bytes of f under digest's key. With ifAbsent the PUT is
// conditional (If-None-Match: *), so a concurrent writer's object is kept;
// minio-go sends that header with single-part uploads only, and a server
// that ignores it just stores the same bytes again.
func (s *Store) upload(ctx context.Context, digest string, f *os.File, size int64, ifAbsent bool) (blobstore.Info, error) {
	uctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := newWatchdog(s.stallTimeout, cancel)
	defer wd.stop()
	wd.kick()

	opts := minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		CacheControl: "private, max-age=31536000, immutable",
		PartSize:     s.partSize,
		NumThreads:   s.uploadThreads,
	}
	if ifAbsent {
		opts.SetMatchETagExcept("*")
	}
	if size <= int64(cmp.Or(s.partSize, minioSinglePutMax)) {
		// A single PUT can carry the full-object SHA-256, which is the
		// digest: the server refuses the upload unless the bytes it
		// received hash to the key's name. (Multipart uploads only have
		// per-part checksums.)
		sum, err := hex.DecodeString(digest)
		if err != nil {
			return blobstore.Info{}, err
		}
		opts.UserMetadata = map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sum)}
	}
	// minio-go reads the body as it sends it (in parallel from ReadAt for
	// multipart uploads), so reads of the spool file measure progress.
	body := &watchedReader{SectionReader: io.NewSectionReader(f, 0, size), wd: wd}
	ui, err := s.client.PutObject(uctx, s.bucket, s.key(digest), body, size, opts)
	if err != nil {
		if ifAbsent && isConditionFailure(err) {
			// Another writer stored the same content first.
			info, statErr := s.stat(ctx, digest)
			if statErr == nil {
				return info, nil
			}
			if !errors.Is(statErr, blobstore.ErrNotFound) {
				return blobstore.Info{}, fmt.Errorf("stat concurrently committed blob: %w", statErr)
			}
			// Deleted again since: this commit still happened.
			return blobstore.Info{Digest: digest, Size: size, ModTime: time.Now()}, nil
		}
		return blobstore.Info{}, fmt.Errorf("upload: %w", mapErr(uctx, err))
	}
	if ui.Size != size {
		return blobstore.Info{}, fmt.Errorf("upload: server stored %d bytes, want %d", ui.Size, size)
	}
	modTime := ui.LastModified
	if modTime.IsZero() {
		// PUT responses carry no Last-Modified; a HEAD to learn it would
		// race with concurrent deletes and cost a request. Stat reports the
		// server's value.
		modTime = time.Now()
	}
	return blobstore.Info{Digest: digest, Size: size, ModTime: modTime}, nil
}

func isConditionFailure(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusPreconditionFailed ||
		resp.Code == "PreconditionFailed" ||
		// AWS answers a conditional write racing another with 409.
		resp.Code == "ConditionalRequestConflict"
}

// watchedReader kicks a watchdog on every read, so an upload that stops
// consuming its body is cancelled.
type watchedReader struct {
	*io.SectionReader
	wd *watchdog
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.SectionReader.Read(p)
	r.wd.kick()
	return n, err
}

func (r *watchedReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.SectionReader.ReadAt(p, off)
	r.wd.kick()
	return n, err
}
