// Package blobstore stores immutable, content-addressed blobs keyed by the
// lowercase hex SHA-256 of their content.
//
// The controller writes encrypted firmware images once; the OTA server reads
// them back with random access to answer HTTP Range requests. Store is kept
// small so that an object-store backend can implement it alongside FS.
package blobstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/url"
	"time"
)

var (
	// ErrNotFound is returned when no blob with the requested digest exists.
	ErrNotFound = errors.New("blob not found")
	// ErrInvalidDigest is returned for anything that is not 64 lowercase hex
	// characters. Digests end up in paths and object keys, so nothing else
	// is ever accepted.
	ErrInvalidDigest = errors.New("invalid digest: want 64 lowercase hex characters")
	// ErrDigestMismatch is returned by Writer.CommitExpect when the content
	// written does not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrWriterClosed is returned when a Writer is used after Commit,
	// CommitExpect or Abort.
	ErrWriterClosed = errors.New("blob writer already committed or aborted")
)

// Info describes a committed blob.
type Info struct {
	// Digest is the lowercase hex SHA-256 of the content.
	Digest  string
	Size    int64
	ModTime time.Time
}

// Store is a content-addressed blob store. Implementations must be safe for
// concurrent use, including by several processes sharing the same backing
// storage.
type Store interface {
	// Create starts a new blob. Nothing becomes visible until the returned
	// Writer is committed.
	Create(ctx context.Context) (Writer, error)
	// Open returns the blob with the given digest, or ErrNotFound.
	Open(ctx context.Context, digest string) (Blob, error)
	// Stat describes the blob with the given digest, or returns ErrNotFound.
	Stat(ctx context.Context, digest string) (Info, error)
	// Delete removes the blob. Deleting a missing blob is not an error.
	Delete(ctx context.Context, digest string) error
	// List returns every committed blob, sorted by digest.
	List(ctx context.Context) ([]Info, error)
}

// Writer receives the content of a new blob; the digest is computed while
// writing. Commit, CommitExpect and Abort all finish the Writer: after any of
// them, whatever the outcome, further writes and commits fail with
// ErrWriterClosed. A Writer is not safe for concurrent use.
type Writer interface {
	io.Writer
	// Digest is the SHA-256 (lowercase hex) of what was written so far, so
	// a caller can record the blob's name before committing it.
	Digest() string
	// Commit makes the blob visible under the digest of its content.
	// Committing content that is already stored succeeds and leaves the
	// existing blob in place.
	Commit(ctx context.Context) (Info, error)
	// CommitExpect is Commit, but discards the content and fails with
	// ErrDigestMismatch unless it hashes to digest.
	CommitExpect(ctx context.Context, digest string) (Info, error)
	// Abort discards the content. It is a no-op after Commit and when
	// called more than once.
	Abort() error
}

// Blob is an open, immutable blob with random access, suitable for
// http.ServeContent.
type Blob interface {
	io.ReadSeekCloser
	io.ReaderAt
	Info() Info
}

// Presigner is implemented by stores whose blobs clients can download
// directly, without credentials, for a limited time: the OTA server can then
// redirect devices to the object store instead of proxying every byte.
type Presigner interface {
	// PresignGet returns a URL that answers GET (including Range requests)
	// with the blob's content until ttl has passed. It does not check that
	// the blob exists.
	PresignGet(ctx context.Context, digest string, ttl time.Duration) (*url.URL, error)
}

// ValidDigest reports whether s is a lowercase hex SHA-256 digest.
func ValidDigest(s string) bool {
	return len(s) == sha256.Size*2 && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
