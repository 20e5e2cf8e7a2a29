package blobstore_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/blobstoretest"
)

func newFS(t *testing.T) (*blobstore.FS, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "blobs")
	s, err := blobstore.NewFS(root)
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	return s, root
}

func TestFSConformance(t *testing.T) {
	blobstoretest.RunConformance(t, func(t *testing.T) blobstore.Store {
		s, _ := newFS(t)
		return s
	})
}

func TestValidDigest(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", true},
		{"0000000000000000000000000000000000000000000000000000000000000000", true},
		{"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", false},
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", false},
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555", false},
		{"../b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false},
		{"zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := blobstore.ValidDigest(tc.in); got != tc.want {
			t.Errorf("ValidDigest(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNewFSLayoutAndModes(t *testing.T) {
	s, root := newFS(t)
	info := blobstoretest.Put(t, s, []byte("layout"))

	tests := []struct {
		path string
		mode fs.FileMode
	}{
		{filepath.Join(root, "sha256"), fs.ModeDir | 0o750},
		{filepath.Join(root, "tmp"), fs.ModeDir | 0o750},
		{filepath.Join(root, "sha256", info.Digest[:2]), fs.ModeDir | 0o750},
		{filepath.Join(root, "sha256", info.Digest[:2], info.Digest), 0o640},
	}
	for _, tc := range tests {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Errorf("stat %s: %v", tc.path, err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s mode = %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
}

func TestNewFSRootIsFile(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.NewFS(root); err == nil {
		t.Error("NewFS on a regular file succeeded")
	}
}

// tempFiles returns the names of uncommitted temp files.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatalf("read tmp dir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// blobFiles returns every file under the committed-blob tree.
func blobFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(root, "sha256"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk blobs: %v", err)
	}
	return files
}

func TestFSCommitIsAtomic(t *testing.T) {
	s, root := newFS(t)
	content := blobstoretest.RandomBytes(1, 1<<20)
	digest := blobstoretest.Digest(content)
	final := filepath.Join(root, "sha256", digest[:2], digest)

	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	assertInvisible := func(stage string) {
		t.Helper()
		if _, err := os.Lstat(final); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: final path exists (err %v)", stage, err)
		}
		if files := blobFiles(t, root); len(files) != 0 {
			t.Errorf("%s: blob tree contains %v", stage, files)
		}
		if _, err := s.Stat(t.Context(), digest); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("%s: Stat error = %v, want ErrNotFound", stage, err)
		}
	}

	assertInvisible("after Create")
	if _, err := w.Write(content[:len(content)/2]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertInvisible("after partial write")
	if _, err := w.Write(content[len(content)/2:]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertInvisible("after full write")
	if got := tempFiles(t, root); len(got) != 1 {
		t.Fatalf("temp files before Commit = %v, want exactly one", got)
	}

	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got, err := os.ReadFile(final)
	if err != nil {
		t.Fatalf("read final path: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Error("final file content differs")
	}
	if got := tempFiles(t, root); len(got) != 0 {
		t.Errorf("temp files after Commit = %v, want none", got)
	}
}

func TestFSDiscardRemovesTempFile(t *testing.T) {
	content := []byte("discard me")
	tests := []struct {
		name    string
		finish  func(blobstore.Writer) error
		wantErr error
	}{
		{"Abort", func(w blobstore.Writer) error { return w.Abort() }, nil},
		{"CommitExpect mismatch", func(w blobstore.Writer) error {
			_, err := w.CommitExpect(t.Context(), blobstoretest.Digest([]byte("other")))
			return err
		}, blobstore.ErrDigestMismatch},
		{"CommitExpect invalid digest", func(w blobstore.Writer) error {
			_, err := w.CommitExpect(t.Context(), "../../etc/passwd")
			return err
		}, blobstore.ErrInvalidDigest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newFS(t)
			w, err := s.Create(t.Context())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := tempFiles(t, root); len(got) != 1 {
				t.Fatalf("temp files while writing = %v, want one", got)
			}
			if err := tc.finish(w); !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if got := tempFiles(t, root); len(got) != 0 {
				t.Errorf("temp files left: %v", got)
			}
			if got := blobFiles(t, root); len(got) != 0 {
				t.Errorf("blob files left: %v", got)
			}
		})
	}
}

func TestFSStaleTempCleanup(t *testing.T) {
	s, root := newFS(t)
	committed := blobstoretest.Put(t, s, []byte("committed long ago"))
	tmp := filepath.Join(root, "tmp")
	now := time.Now()

	tests := []struct {
		name     string
		dir      bool
		age      time.Duration
		wantKept bool
	}{
		{"blob-old.tmp", false, 2 * time.Hour, false},
		{"blob-day.tmp", false, 24 * time.Hour, false},
		{"blob-recent.tmp", false, 59 * time.Minute, true},
		{"blob-fresh.tmp", false, 0, true},
		{"olddir", true, 2 * time.Hour, true},
	}
	for _, tc := range tests {
		p := filepath.Join(tmp, tc.name)
		var err error
		if tc.dir {
			err = os.Mkdir(p, 0o750)
		} else {
			err = os.WriteFile(p, []byte("partial"), 0o640)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-tc.age), now.Add(-tc.age)); err != nil {
			t.Fatal(err)
		}
	}
	// Committed blobs are never touched by temp cleanup, however old.
	old := now.Add(-48 * time.Hour)
	blobPath := filepath.Join(root, "sha256", committed.Digest[:2], committed.Digest)
	if err := os.Chtimes(blobPath, old, old); err != nil {
		t.Fatal(err)
	}

	if _, err := blobstore.NewFS(root); err != nil {
		t.Fatalf("reopen NewFS: %v", err)
	}
	for _, tc := range tests {
		_, err := os.Lstat(filepath.Join(tmp, tc.name))
		if kept := err == nil; kept != tc.wantKept {
			t.Errorf("%s (age %v): kept = %v, want %v", tc.name, tc.age, kept, tc.wantKept)
		}
	}
	if _, err := os.Stat(blobPath); err != nil {
		t.Errorf("committed blob removed by cleanup: %v", err)
	}
}

func TestFSLargeStreamingWrite(t *testing.T) {
	const size = 32 << 20
	s, _ := newFS(t)
	src := io.LimitReader(rand.NewChaCha8([32]byte{7}), size)
	want := sha256.New()
	buf := make([]byte, 64<<10)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	w, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	n, err := io.CopyBuffer(w, io.TeeReader(src, want), buf)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}

	runtime.ReadMemStats(&after)
	// Everything allocated while streaming, not just what is live: a
	// store that buffered the blob would allocate at least its size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("streaming %d MiB allocated %d KiB, want < 4 MiB", size>>20, alloc>>10)
	}
	wantDigest := hex.EncodeToString(want.Sum(nil))
	if n != size || info.Size != size || info.Digest != wantDigest {
		t.Fatalf("got %d bytes copied, info %+v; want %d bytes, digest %s", n, info, size, wantDigest)
	}

	b, err := s.Open(t.Context(), info.Digest)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	got := sha256.New()
	if _, err := io.CopyBuffer(got, b, buf); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if hex.EncodeToString(got.Sum(nil)) != wantDigest {
		t.Error("content read back does not match its digest")
	}
}

func TestFSOpenBlobSurvivesDelete(t *testing.T) {
	s, _ := newFS(t)
	content := blobstoretest.RandomBytes(2, 100_000)
	info := blobstoretest.Put(t, s, content)
	b, err := s.Open(t.Context(), info.Digest)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if err := s.Delete(t.Context(), info.Digest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// The OTA server may be mid-download when garbage collection runs.
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read after Delete: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Error("content differs after Delete")
	}
}

func TestFSCommitReplacesDamagedBlob(t *testing.T) {
	s, root := newFS(t)
	content := blobstoretest.RandomBytes(3, 50_000)
	info := blobstoretest.Put(t, s, content)
	path := filepath.Join(root, "sha256", info.Digest[:2], info.Digest)
	if err := os.Truncate(path, 1000); err != nil {
		t.Fatal(err)
	}
	blobstoretest.Put(t, s, content)
	if got := blobstoretest.ReadBlob(t, s, info.Digest); !bytes.Equal(got, content) {
		t.Errorf("damaged blob not replaced: read %d bytes", len(got))
	}
}

const helperRootEnv = "BLOBSTORE_TEST_HELPER_ROOT"

// TestFSMultiProcessCommit commits the same content from several processes
// sharing one root while this process keeps deleting it, so commits race
// both with each other and with deletion.
func TestFSMultiProcessCommit(t *testing.T) {
	content := blobstoretest.RandomBytes(4, 512<<10)
	const commitsPerProcess = 40

	if root := os.Getenv(helperRootEnv); root != "" {
		s, err := blobstore.NewFS(root)
		if err != nil {
			t.Fatalf("NewFS: %v", err)
		}
		for range commitsPerProcess {
			blobstoretest.Put(t, s, content)
		}
		return
	}
	s, root := newFS(t)
	digest := blobstoretest.Digest(content)
	const processes = 3
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range processes {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestFSMultiProcessCommit$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperRootEnv+"="+root)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("process %d: %v\n%s", i, err, out)
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	deletes := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			if err := s.Delete(t.Context(), digest); err != nil {
				t.Errorf("Delete: %v", err)
			}
			deletes++
			blobstoretest.Put(t, s, content)
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("%d deletes raced with %d commits", deletes, processes*commitsPerProcess)

	if got := blobstoretest.ReadBlob(t, s, digest); !bytes.Equal(got, content) {
		t.Error("content differs after concurrent commits")
	}
	if got := tempFiles(t, root); len(got) != 0 {
		t.Errorf("temp files left: %v", got)
	}
}
