// Package blobstoretest holds the behaviour every blobstore.Store
// implementation must share, as a reusable test suite.
package blobstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/otaflow/otaflow/internal/blobstore"
)

// RunConformance runs the Store conformance suite. newStore must return a
// new, empty store each time it is called; it is called once per subtest.
func RunConformance(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s blobstore.Store)
	}{
		{"CommitAndRead", testCommitAndRead},
		{"ReaderAtAndSeek", testReaderAtAndSeek},
		{"CommitIsIdempotent", testCommitIsIdempotent},
		{"CommitExpect", testCommitExpect},
		{"Abort", testAbort},
		{"AbortAfterCommit", testAbortAfterCommit},
		{"MissingBlob", testMissingBlob},
		{"InvalidDigest", testInvalidDigest},
		{"Delete", testDelete},
		{"List", testList},
		{"ConcurrentCommitsSameContent", testConcurrentSameContent},
		{"ConcurrentCommitsDistinctContent", testConcurrentDistinctContent},
		{"CanceledContext", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// Digest returns the lowercase hex SHA-256 of b, as a Store names it.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// RandomBytes returns n deterministic pseudo-random bytes for seed.
func RandomBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	key[2] = byte(seed >> 16)
	key[3] = byte(seed >> 24)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// Put stores content in s and checks the returned Info.
func Put(t testing.TB, s blobstore.Store, content []byte) blobstore.Info {
	t.Helper()
	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// Several small writes exercise incremental hashing.
	for chunk := range slices.Chunk(content, 4096) {
		if _, err := w.Write(chunk); err != nil {
			_ = w.Abort()
			t.Fatalf("Write: %v", err)
		}
	}
	if got, want := w.Digest(), Digest(content); got != want {
		_ = w.Abort()
		t.Fatalf("Digest before Commit = %s, want %s", got, want)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if want := Digest(content); info.Digest != want {
		t.Fatalf("Commit digest = %s, want %s", info.Digest, want)
	}
	if info.Size != int64(len(content)) {
		t.Fatalf("Commit size = %d, want %d", info.Size, len(content))
	}
	return info
}

// ReadBlob returns the full content of the blob with the given digest.
func ReadBlob(t testing.TB, s blobstore.Store, digest string) []byte {
	t.Helper()
	b, err := s.Open(t.Context(), digest)
	if err != nil {
		t.Fatalf("Open(%s): %v", digest, err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read %s: %v", digest, err)
	}
	return got
}

func assertNotFound(t *testing.T, s blobstore.Store, digest string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), digest); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat(%s) error = %v, want ErrNotFound", digest, err)
	}
	b, err := s.Open(t.Context(), digest)
	if err == nil {
		b.Close()
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Open(%s) error = %v, want ErrNotFound", digest, err)
	}
}

func assertListed(t *testing.T, s blobstore.Store, want ...blobstore.Info) {
	t.Helper()
	got, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b blobstore.Info) int {
		switch {
		case a.Digest < b.Digest:
			return -1
		case a.Digest > b.Digest:
			return 1
		}
		return 0
	})
	want = slices.CompactFunc(want, func(a, b blobstore.Info) bool { return a.Digest == b.Digest })
	if len(got) != len(want) {
		t.Fatalf("List returned %d blobs %v, want %d", len(got), got, len(want))
	}
	for i := range got {
		if got[i].Digest != want[i].Digest || got[i].Size != want[i].Size {
			t.Errorf("List[%d] = %s (%d bytes), want %s (%d bytes)",
				i, got[i].Digest, got[i].Size, want[i].Digest, want[i].Size)
		}
		if got[i].ModTime.IsZero() {
			t.Errorf("List[%d] has zero ModTime", i)
		}
	}
}

func testCommitAndRead(t *testing.T, s blobstore.Store) {
	tests := []struct {
		name    string
		content []byte
	}{
		{"empty", []byte{}},
		{"small", []byte("firmware")},
		{"multi-chunk", RandomBytes(1, 100_000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info := Put(t, s, tc.content)
			if info.ModTime.IsZero() {
				t.Error("Commit returned zero ModTime")
			}

			st, err := s.Stat(t.Context(), info.Digest)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if st.Digest != info.Digest || st.Size != info.Size {
				t.Errorf("Stat = %+v, want digest %s size %d", st, info.Digest, info.Size)
			}

			b, err := s.Open(t.Context(), info.Digest)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer b.Close()
			if bi := b.Info(); bi.Digest != info.Digest || bi.Size != info.Size {
				t.Errorf("Blob.Info = %+v, want digest %s size %d", bi, info.Digest, info.Size)
			}
			got, err := io.ReadAll(b)
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if !bytes.Equal(got, tc.content) {
				t.Errorf("read %d bytes that differ from the %d written", len(got), len(tc.content))
			}
		})
	}
}

func testReaderAtAndSeek(t *testing.T, s blobstore.Store) {
	content := RandomBytes(2, 64<<10)
	info := Put(t, s, content)
	b, err := s.Open(t.Context(), info.Digest)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()

	size := int64(len(content))
	readAts := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{"start", 0, 100, 100, false},
		{"middle", 30_000, 1000, 1000, false},
		{"exact tail", size - 10, 10, 10, false},
		{"past tail", size - 10, 20, 10, true},
		{"at end", size, 1, 0, true},
	}
	for _, tc := range readAts {
		t.Run("ReadAt/"+tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := b.ReadAt(p, tc.off)
			if n != tc.wantN {
				t.Fatalf("ReadAt(%d, off %d) n = %d, want %d", tc.n, tc.off, n, tc.wantN)
			}
			if tc.wantEOF && !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt error = %v, want io.EOF", err)
			}
			if !tc.wantEOF && err != nil && !(errors.Is(err, io.EOF) && tc.off+int64(n) == size) {
				t.Errorf("ReadAt error = %v", err)
			}
			if !bytes.Equal(p[:n], content[tc.off:tc.off+int64(n)]) {
				t.Error("ReadAt returned wrong bytes")
			}
		})
	}

	t.Run("ReadAt/concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				off := int64(i) * 8000
				p := make([]byte, 4000)
				if _, err := b.ReadAt(p, off); err != nil {
					t.Errorf("ReadAt(off %d): %v", off, err)
					return
				}
				if !bytes.Equal(p, content[off:off+4000]) {
					t.Errorf("ReadAt(off %d) returned wrong bytes", off)
				}
			})
		}
		wg.Wait()
	})

	t.Run("Seek", func(t *testing.T) {
		end, err := b.Seek(0, io.SeekEnd)
		if err != nil || end != size {
			t.Fatalf("Seek(0, End) = %d, %v; want %d", end, err, size)
		}
		pos, err := b.Seek(-500, io.SeekEnd)
		if err != nil || pos != size-500 {
			t.Fatalf("Seek(-500, End) = %d, %v; want %d", pos, err, size-500)
		}
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatalf("ReadAll after Seek: %v", err)
		}
		if !bytes.Equal(got, content[size-500:]) {
			t.Error("read after Seek returned wrong bytes")
		}
		if _, err := b.Seek(1234, io.SeekStart); err != nil {
			t.Fatalf("Seek(1234, Start): %v", err)
		}
		p := make([]byte, 16)
		if _, err := io.ReadFull(b, p); err != nil {
			t.Fatalf("ReadFull: %v", err)
		}
		if !bytes.Equal(p, content[1234:1250]) {
			t.Error("read after Seek(Start) returned wrong bytes")
		}
	})
}

func testCommitIsIdempotent(t *testing.T, s blobstore.Store) {
	content := RandomBytes(3, 10_000)
	first := Put(t, s, content)
	second := Put(t, s, content)
	if first.Digest != second.Digest || first.Size != second.Size {
		t.Errorf("second commit = %+v, want %+v", second, first)
	}
	if got := ReadBlob(t, s, first.Digest); !bytes.Equal(got, content) {
		t.Error("content changed after committing it twice")
	}
	assertListed(t, s, first)
}

func testCommitExpect(t *testing.T, s blobstore.Store) {
	tests := []struct {
		name    string
		expect  func(content []byte) string
		wantErr error
	}{
		{"match", Digest, nil},
		{"mismatch", func([]byte) string { return Digest([]byte("something else")) }, blobstore.ErrDigestMismatch},
		{"invalid", func([]byte) string { return "not-a-digest" }, blobstore.ErrInvalidDigest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content := []byte("signed and encrypted image, case " + tc.name)
			before := mustList(t, s)
			w, err := s.Create(t.Context())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatalf("Write: %v", err)
			}
			expect := tc.expect(content)
			info, err := w.CommitExpect(t.Context(), expect)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("CommitExpect: %v", err)
				}
				if info.Digest != expect {
					t.Errorf("digest = %s, want %s", info.Digest, expect)
				}
				assertListed(t, s, append(before, info)...)
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CommitExpect error = %v, want %v", err, tc.wantErr)
			}
			assertNotFound(t, s, Digest(content))
			assertListed(t, s, before...)
			if _, err := w.Commit(t.Context()); !errors.Is(err, blobstore.ErrWriterClosed) {
				t.Errorf("Commit after failed CommitExpect error = %v, want ErrWriterClosed", err)
			}
			if err := w.Abort(); err != nil {
				t.Errorf("Abort after failed CommitExpect: %v", err)
			}
		})
	}
}

func mustList(t *testing.T, s blobstore.Store) []blobstore.Info {
	t.Helper()
	infos, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return infos
}

func testAbort(t *testing.T, s blobstore.Store) {
	content := []byte("never committed")
	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := w.Write(content); !errors.Is(err, blobstore.ErrWriterClosed) {
		t.Errorf("Write after Abort error = %v, want ErrWriterClosed", err)
	}
	if _, err := w.Commit(t.Context()); !errors.Is(err, blobstore.ErrWriterClosed) {
		t.Errorf("Commit after Abort error = %v, want ErrWriterClosed", err)
	}
	assertNotFound(t, s, Digest(content))
	assertListed(t, s)
}

func testAbortAfterCommit(t *testing.T, s blobstore.Store) {
	content := []byte("committed")
	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatalf("Write: %v", err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
	if _, err := w.Commit(t.Context()); !errors.Is(err, blobstore.ErrWriterClosed) {
		t.Errorf("second Commit error = %v, want ErrWriterClosed", err)
	}
	if _, err := w.Write(content); !errors.Is(err, blobstore.ErrWriterClosed) {
		t.Errorf("Write after Commit error = %v, want ErrWriterClosed", err)
	}
	if got := ReadBlob(t, s, info.Digest); !bytes.Equal(got, content) {
		t.Error("blob changed by Abort after Commit")
	}
}

func testMissingBlob(t *testing.T, s blobstore.Store) {
	missing := Digest([]byte("absent"))
	assertNotFound(t, s, missing)
	if err := s.Delete(t.Context(), missing); err != nil {
		t.Errorf("Delete of missing blob: %v", err)
	}
}

// invalidDigests returns strings every Store must refuse with
// blobstore.ErrInvalidDigest.
func invalidDigests() []struct{ Name, Digest string } {
	return []struct{ Name, Digest string }{
		{"empty", ""},
		{"short", "abc123"},
		{"63 chars", Digest(nil)[:63]},
		{"65 chars", Digest(nil) + "0"},
		{"uppercase", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"},
		{"non-hex", "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"path traversal", "../../../../../../../../../../../../../../../../../../etc/passwd"},
		{"dot-dot prefix", "../" + Digest(nil)[3:]},
		{"slash", "e3/0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"sha256 prefix", "sha256:" + Digest(nil)[7:]},
		{"NUL byte", "\x00" + Digest(nil)[1:]},
		{"whitespace", " " + Digest(nil)[1:]},
	}
}

func testInvalidDigest(t *testing.T, s blobstore.Store) {
	// A blob that a traversal could otherwise reach through a shard name.
	Put(t, s, nil)
	for _, tc := range invalidDigests() {
		t.Run(tc.Name, func(t *testing.T) {
			if blobstore.ValidDigest(tc.Digest) {
				t.Fatalf("ValidDigest(%q) = true", tc.Digest)
			}
			ops := map[string]func() error{
				"Open": func() error {
					b, err := s.Open(t.Context(), tc.Digest)
					if err == nil {
						b.Close()
					}
					return err
				},
				"Stat": func() error {
					_, err := s.Stat(t.Context(), tc.Digest)
					return err
				},
				"Delete": func() error {
					return s.Delete(t.Context(), tc.Digest)
				},
				"CommitExpect": func() error {
					w, err := s.Create(t.Context())
					if err != nil {
						t.Fatalf("Create: %v", err)
					}
					_, err = w.CommitExpect(t.Context(), tc.Digest)
					return err
				},
			}
			for name, op := range ops {
				if err := op(); !errors.Is(err, blobstore.ErrInvalidDigest) {
					t.Errorf("%s error = %v, want ErrInvalidDigest", name, err)
				}
			}
		})
	}
	assertListed(t, s, blobstore.Info{Digest: Digest(nil), Size: 0})
}

func testDelete(t *testing.T, s blobstore.Store) {
	keep := Put(t, s, []byte("keep"))
	drop := Put(t, s, []byte("drop"))
	if err := s.Delete(t.Context(), drop.Digest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertNotFound(t, s, drop.Digest)
	if err := s.Delete(t.Context(), drop.Digest); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if got := ReadBlob(t, s, keep.Digest); string(got) != "keep" {
		t.Errorf("other blob content = %q after Delete", got)
	}
	assertListed(t, s, keep)

	// Content can be stored again after deletion.
	again := Put(t, s, []byte("drop"))
	assertListed(t, s, keep, again)
}

func testList(t *testing.T, s blobstore.Store) {
	assertListed(t, s)
	var want []blobstore.Info
	for i := range 6 {
		want = append(want, Put(t, s, RandomBytes(uint64(100+i), 1000*i)))
	}
	assertListed(t, s, want...)
}

func testConcurrentSameContent(t *testing.T, s blobstore.Store) {
	content := RandomBytes(4, 256<<10)
	const writers = 16
	infos := make([]blobstore.Info, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			w, err := s.Create(t.Context())
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			if _, err := w.Write(content); err != nil {
				t.Errorf("Write: %v", err)
				_ = w.Abort()
				return
			}
			infos[i], err = w.Commit(t.Context())
			if err != nil {
				t.Errorf("writer %d Commit: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, info := range infos {
		if info.Digest != Digest(content) || info.Size != int64(len(content)) {
			t.Errorf("writer %d got %+v", i, info)
		}
	}
	if got := ReadBlob(t, s, Digest(content)); !bytes.Equal(got, content) {
		t.Error("content differs after concurrent commits")
	}
	assertListed(t, s, infos[0])
}

func testConcurrentDistinctContent(t *testing.T, s blobstore.Store) {
	const writers = 16
	infos := make([]blobstore.Info, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			content := RandomBytes(uint64(200+i), 20_000)
			w, err := s.Create(t.Context())
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			if _, err := w.Write(content); err != nil {
				t.Errorf("Write: %v", err)
				_ = w.Abort()
				return
			}
			infos[i], err = w.Commit(t.Context())
			if err != nil {
				t.Errorf("writer %d Commit: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	assertListed(t, s, infos...)
}

func testCanceledContext(t *testing.T, s blobstore.Store) {
	stored := Put(t, s, []byte("stored"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	ops := []struct {
		name string
		op   func() error
	}{
		{"Create", func() error {
			w, err := s.Create(ctx)
			if err == nil {
				_ = w.Abort()
			}
			return err
		}},
		{"Open", func() error {
			b, err := s.Open(ctx, stored.Digest)
			if err == nil {
				b.Close()
			}
			return err
		}},
		{"Stat", func() error { _, err := s.Stat(ctx, stored.Digest); return err }},
		{"Delete", func() error { return s.Delete(ctx, stored.Digest) }},
		{"List", func() error { _, err := s.List(ctx); return err }},
		{"Commit", func() error {
			w, err := s.Create(t.Context())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := w.Write([]byte("canceled")); err != nil {
				t.Fatalf("Write: %v", err)
			}
			_, err = w.Commit(ctx)
			return err
		}},
	}
	for _, tc := range ops {
		if err := tc.op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled context: error = %v, want context.Canceled", tc.name, err)
		}
	}
	assertNotFound(t, s, Digest([]byte("canceled")))
	// Delete must not have run.
	assertListed(t, s, stored)
}
