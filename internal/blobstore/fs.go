package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

const (
	dirMode  fs.FileMode = 0o750
	fileMode fs.FileMode = 0o640

	blobsDirName = "sha256"
	tmpDirName   = "tmp"
	tmpPattern   = "blob-*.tmp"

	// staleTempAge is how old an uncommitted temp file must be before NewFS
	// removes it. Writers touch their temp file on every write, so only
	// files left behind by crashed or killed writers reach this age.
	staleTempAge = time.Hour
)

// FS is a Store on a local or shared filesystem:
//
//	<root>/sha256/<first 2 hex>/<64 hex>   committed blobs, mode 0o640
//	<root>/tmp/                            uncommitted writes
//
// Blobs are committed by renaming a fully written and synced temp file into
// place, so readers (in this or any other process) never see partial
// content. FS holds no in-memory state besides its paths and is safe for
// concurrent use by several goroutines and processes.
type FS struct {
	blobDir string
	tmpDir  string
}

var _ Store = (*FS)(nil)

// NewFS opens or creates a store under root and removes temp files older
// than staleTempAge.
func NewFS(root string) (*FS, error) {
	if root == "" {
		return nil, errors.New("new blob store: empty root path")
	}
	s := &FS{
		blobDir: filepath.Join(root, blobsDirName),
		tmpDir:  filepath.Join(root, tmpDirName),
	}
	if err := os.MkdirAll(root, dirMode); err != nil {
		return nil, fmt.Errorf("new blob store %s: %w", root, err)
	}
	for _, dir := range []string{s.blobDir, s.tmpDir} {
		if _, err := mkdir(dir); err != nil {
			return nil, fmt.Errorf("new blob store %s: %w", root, err)
		}
	}
	if err := s.removeStaleTemp(time.Now().Add(-staleTempAge)); err != nil {
		return nil, fmt.Errorf("new blob store %s: %w", root, err)
	}
	return s, nil
}

// removeStaleTemp deletes temp files last modified before cutoff. Removal is
// best effort: another process may be cleaning up at the same time, and a
// file that cannot be removed does not stop the store from working.
func (s *FS) removeStaleTemp(cutoff time.Time) error {
	entries, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("clean temp dir: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		_ = os.Remove(filepath.Join(s.tmpDir, e.Name()))
	}
	return nil
}

// path must only be called with a digest that passed ValidDigest.
func (s *FS) path(digest string) string {
	return filepath.Join(s.blobDir, digest[:2], digest)
}

// Create implements Store.
func (s *FS) Create(ctx context.Context) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	f, err := os.CreateTemp(s.tmpDir, tmpPattern)
	if err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	// CreateTemp uses 0o600; the OTA server sidecar reads through the group.
	if err := f.Chmod(fileMode); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return &fsWriter{store: s, f: f, h: sha256.New()}, nil
}

// Open implements Store. The returned Blob is backed by an *os.File, so it
// stays readable even if the blob is deleted while open.
func (s *FS) Open(ctx context.Context, digest string) (Blob, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("open blob %q: %w", digest, ErrInvalidDigest)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	f, err := os.Open(s.path(digest))
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("open blob %s: not a regular file", digest)
	}
	return &fsBlob{File: f, info: infoOf(digest, fi)}, nil
}

// Stat implements Store.
func (s *FS) Stat(ctx context.Context, digest string) (Info, error) {
	if !ValidDigest(digest) {
		return Info{}, fmt.Errorf("stat blob %q: %w", digest, ErrInvalidDigest)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", digest, err)
	}
	fi, err := os.Stat(s.path(digest))
	if err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", digest, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat blob %s: not a regular file", digest)
	}
	return infoOf(digest, fi), nil
}

// Delete implements Store. Shard directories are left in place: removing
// one could race with a concurrent commit renaming a file into it, and
// there are at most 256 of them.
func (s *FS) Delete(ctx context.Context, digest string) error {
	if !ValidDigest(digest) {
		return fmt.Errorf("delete blob %q: %w", digest, ErrInvalidDigest)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	if err := os.Remove(s.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}

// List implements Store. Files that do not look like blobs are ignored.
func (s *FS) List(ctx context.Context) ([]Info, error) {
	shards, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var infos []Info
	for _, shard := range shards {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list blobs: %w", err)
		}
		if !shard.IsDir() || !validShard(shard.Name()) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.blobDir, shard.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("list blobs: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || !ValidDigest(name) || name[:2] != shard.Name() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted since ReadDir
				}
				return nil, fmt.Errorf("list blobs: %w", err)
			}
			infos = append(infos, infoOf(name, fi))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	// os.ReadDir sorts by name at both levels, so infos is sorted by digest.
	return infos, nil
}

type fsWriter struct {
	store *FS
	f     *os.File
	h     hash.Hash
	size  int64
	err   error // first write error; makes Commit fail
	done  bool
}

func (w *fsWriter) Digest() string { return hex.EncodeToString(w.h.Sum(nil)) }

func (w *fsWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, ErrWriterClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write blob: %w", err)
		return n, w.err
	}
	return n, nil
}

func (w *fsWriter) Commit(ctx context.Context) (Info, error) {
	return w.commit(ctx, "")
}

func (w *fsWriter) CommitExpect(ctx context.Context, digest string) (Info, error) {
	if !ValidDigest(digest) {
		w.discard()
		return Info{}, fmt.Errorf("commit blob %q: %w", digest, ErrInvalidDigest)
	}
	return w.commit(ctx, digest)
}

func (w *fsWriter) commit(ctx context.Context, expect string) (Info, error) {
	if w.done {
		return Info{}, fmt.Errorf("commit blob: %w", ErrWriterClosed)
	}
	digest := w.Digest()
	info, err := w.publish(ctx, digest, expect)
	if err != nil {
		w.discard()
		return Info{}, fmt.Errorf("commit blob %s: %w", digest, err)
	}
	w.done = true
	return info, nil
}

// publish moves the temp file to its final path. On success the temp file
// no longer exists and is closed.
func (w *fsWriter) publish(ctx context.Context, digest, expect string) (Info, error) {
	if w.err != nil {
		return Info{}, w.err
	}
	if expect != "" && expect != digest {
		return Info{}, fmt.Errorf("%w: expected %s", ErrDigestMismatch, expect)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	// Data must be durable before the rename makes it visible, or a crash
	// could leave a published blob with missing content.
	if err := w.f.Sync(); err != nil {
		return Info{}, fmt.Errorf("sync temp file: %w", err)
	}
	// Stat before the rename: once published, a concurrent Delete may
	// remove the file, and this commit still succeeded.
	tmpInfo, err := w.f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("stat temp file: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return Info{}, fmt.Errorf("close temp file: %w", err)
	}
	shardDir := filepath.Join(w.store.blobDir, digest[:2])
	created, err := mkdir(shardDir)
	if err != nil {
		return Info{}, err
	}
	if created {
		if err := syncDir(w.store.blobDir); err != nil {
			return Info{}, err
		}
	}
	dst := filepath.Join(shardDir, digest)
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == w.size {
		// Same digest and size: the content is already stored. Keep the
		// existing file so open readers and its mtime are undisturbed.
		_ = os.Remove(w.f.Name())
		return infoOf(digest, fi), nil
	}
	// rename atomically replaces a file committed concurrently by another
	// writer (identical content) or a damaged one (wrong size).
	if err := os.Rename(w.f.Name(), dst); err != nil {
		return Info{}, fmt.Errorf("rename into place: %w", err)
	}
	if err := syncDir(shardDir); err != nil {
		return Info{}, err
	}
	return infoOf(digest, tmpInfo), nil // rename keeps size and mtime
}

func (w *fsWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	closeErr := w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort blob: %w", err)
	}
	if closeErr != nil && !errors.Is(closeErr, fs.ErrClosed) {
		return fmt.Errorf("abort blob: %w", closeErr)
	}
	return nil
}

// discard finishes the writer after a failed commit; the commit error is
// what the caller needs to see.
func (w *fsWriter) discard() {
	_ = w.Abort()
}

type fsBlob struct {
	*os.File
	info Info
}

func (b *fsBlob) Info() Info { return b.info }

func infoOf(digest string, fi fs.FileInfo) Info {
	return Info{Digest: digest, Size: fi.Size(), ModTime: fi.ModTime()}
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return err
}

func validShard(name string) bool {
	return len(name) == 2 && isLowerHex(name)
}

// mkdir creates dir with exactly dirMode, independent of the umask, and
// reports whether it did. An existing directory is fine.
func mkdir(dir string) (bool, error) {
	err := os.Mkdir(dir, dirMode)
	if err == nil {
		return true, os.Chmod(dir, dirMode)
	}
	if errors.Is(err, fs.ErrExist) {
		fi, statErr := os.Stat(dir)
		if statErr != nil {
			return false, statErr
		}
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	return false, err
}

// syncDir makes a rename or create in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	closeErr := d.Close()
	// Some filesystems cannot fsync directories; there is nothing more we
	// can do on those.
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	if closeErr != nil {
		return fmt.Errorf("sync dir %s: %w", dir, closeErr)
	}
	return nil
}
