package menderartifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// file is one tar entry.
type file struct {
	name string
	body []byte
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureNames(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.mender"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// tarOf writes files into an uncompressed tar, as mender-artifact does.
func tarOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untar reads every entry of a (small) tar.
func untar(t testing.TB, b []byte) []file {
	t.Helper()
	var files []file
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file{h.Name, body})
	}
}

// suffix is the archive name suffix of a compression.
var suffix = map[string]string{"none": "", "gzip": ".gz", "xz": ".xz", "zstd": ".zst"}

func compress(t testing.TB, compression string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch compression {
	case "none":
		return b
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	case "zstd":
		// A 1 MiB window, so the bombs of TestParseBombs get past the
		// window check to the size check.
		w, err = zstd.NewWriter(&buf, zstd.WithWindowSize(1<<20))
	default:
		t.Fatalf("compression %q", compression)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestOf returns a manifest listing files, sorted by path like
// mender-artifact's.
func manifestOf(name string, files ...file) file {
	var lines []string
	for _, f := range files {
		sum := sha256.Sum256(f.body)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+f.name+"\n")
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return file{name, []byte(strings.Join(lines, ""))}
}

func headerInfoV3JSON(name string, deviceTypes ...string) string {
	b, _ := json.Marshal(map[string]any{
		"payloads":          []map[string]string{{"type": "otaflow-test"}},
		"artifact_provides": map[string]string{"artifact_name": name},
		"artifact_depends":  map[string][]string{"device_type": deviceTypes},
	})
	return string(b)
}

// headerFiles is a valid version 3 header archive's content.
func headerFiles(headerInfo string) []file {
	return []file{
		{"header-info", []byte(headerInfo)},
		{"headers/0000/type-info", []byte(`{"type":"otaflow-test","artifact_provides":{"app.version":"1.0"}}`)},
	}
}

const version3 = `{"format":"mender","version":3}`

// artifactOf assembles an artifact from a version file and the header
// archive's content, with a manifest that matches them.
func artifactOf(t testing.TB, version, compression string, header []file) []byte {
	t.Helper()
	return tarOf(t, outerOf(t, version, compression, header)...)
}

func outerOf(t testing.TB, version, compression string, header []file) []file {
	t.Helper()
	v := file{"version", []byte(version)}
	h := file{"header.tar" + suffix[compression], compress(t, compression, tarOf(t, header...))}
	payload := file{"data/0000/payload.bin", []byte("payload")}
	data := file{"data/0000.tar" + suffix[compression], compress(t, compression, tarOf(t, file{"payload.bin", payload.body}))}
	return []file{v, manifestOf("manifest", v, h, payload), h, data}
}

// withEntry replaces the body of the outer entry called name.
func withEntry(t testing.TB, files []file, name string, body []byte) []file {
	t.Helper()
	files = slices.Clone(files)
	for i := range files {
		if files[i].name == name {
			files[i].body = body
			return files
		}
	}
	t.Fatalf("no entry %s", name)
	return nil
}

// recompressed rewrites an artifact written without compression with
// another compression, updating the manifest: mender-artifact 3.9 as
// packaged cannot write zstd itself.
func recompressed(t testing.TB, artifact []byte, compression string) []byte {
	t.Helper()
	files := untar(t, artifact)
	var manifest []byte
	for i := range files {
		switch f := &files[i]; f.name {
		case "manifest":
			manifest = f.body
		case "header.tar":
			f.name += suffix[compression]
			f.body = compress(t, compression, f.body)
			sum := sha256.Sum256(f.body)
			old := sha256.Sum256(untarBody(t, artifact, "header.tar"))
			oldLine := []byte(hex.EncodeToString(old[:]) + "  header.tar\n")
			if !bytes.Contains(manifest, oldLine) {
				t.Fatalf("manifest does not list header.tar: %s", manifest)
			}
			manifest = bytes.Replace(manifest, oldLine, []byte(hex.EncodeToString(sum[:])+"  "+f.name+"\n"), 1)
		case "data/0000.tar":
			f.name += suffix[compression]
			f.body = compress(t, compression, f.body)
		}
	}
	return tarOf(t, withEntry(t, files, "manifest", manifest)...)
}

func untarBody(t testing.TB, b []byte, name string) []byte {
	t.Helper()
	for _, f := range untar(t, b) {
		if f.name == name {
			return f.body
		}
	}
	t.Fatalf("no entry %s", name)
	return nil
}

// headerEnd is the offset just past the tar header of the first data/
// entry: the bytes Parse needs.
func headerEnd(t testing.TB, b []byte) int {
	t.Helper()
	cr := &countingReader{r: bytes.NewReader(b)}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no data/ entry: %v", err)
		}
		if strings.HasPrefix(h.Name, "data/") {
			return int(cr.n)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failAfter serves b, then fails: whatever reads past b gets err.
func failAfter(b []byte, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(b), errorReader{err})
}

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

// fixtureRootfs regenerates the rootfs.ext4 that testdata/README.md's
// commands write, so the checksum rootfs.mender provides can be checked.
func fixtureRootfs() []byte {
	var b strings.Builder
	for i := 1; i <= 16; i++ {
		fmt.Fprintf(&b, "otaflow rootfs image block %04d\n", i)
	}
	return []byte(b.String())
}
