package menderartifact

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// writeChunks writes b to w in chunks of the given sizes, cycling.
func writeChunks(t *testing.T, w io.Writer, b []byte, sizes ...int) {
	t.Helper()
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		if k, err := w.Write(b[:n]); k != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
		}
		b = b[n:]
	}
}

func TestSnifferMatchesParse(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			b := fixture(t, name)
			want, err := Parse(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			s := NewSniffer(0)
			writeChunks(t, s, b, 1, 7, 511, 13, 4093, 2)
			got, err := s.Header()
			if err != nil {
				t.Fatalf("Header: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Header = %+v, Parse = %+v", got, want)
			}
			if s.Written() != int64(len(b)) {
				t.Errorf("Written = %d, want %d", s.Written(), len(b))
			}
		})
	}
}

// The limit may cut the stream anywhere after the first data/ tar header;
// before it, Header says the header did not fit. Writes never fail and the
// rest of a MultiWriter sees every byte.
func TestSnifferLimit(t *testing.T) {
	b := fixture(t, "signed.mender")
	end := headerEnd(t, b)
	for _, limit := range []int{1, 100, 512, 1500, end - 1, end, end + 1, len(b)} {
		s := NewSniffer(limit)
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(h, s), shortReads(b)); err != nil {
			t.Fatalf("limit %d: copy: %v", limit, err)
		}
		if [32]byte(h.Sum(nil)) != sha256.Sum256(b) {
			t.Fatalf("limit %d: the hash beside the sniffer missed bytes", limit)
		}
		if len(s.kept) != min(limit, len(b)) {
			t.Errorf("limit %d: kept %d bytes", limit, len(s.kept))
		}
		got, err := s.Header()
		if limit >= end {
			if err != nil || got.Name != "signed-3.0" {
				t.Errorf("limit %d (header ends at %d): %+v, %v", limit, end, got, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "does not end within the first") {
			t.Errorf("limit %d: %v, want the limit error", limit, err)
		}
	}
}

// shortReads serves b in short reads, as a network body does.
func shortReads(b []byte) io.Reader {
	return &shortReader{b: b}
}

type shortReader struct{ b []byte }

func (r *shortReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 333)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// A stream that ends early is reported as truncated, not as a limit
// problem, and a broken header within the limit keeps its own error.
func TestSnifferOtherErrors(t *testing.T) {
	b := fixture(t, "module-gzip.mender")
	s := NewSniffer(0)
	s.Write(b[:1500])
	_, err := s.Header()
	if !errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "does not end within") {
		t.Errorf("short stream: %v", err)
	}

	s = NewSniffer(0)
	s.Write([]byte("not an artifact at all, just some text that goes on for a while"))
	if _, err := s.Header(); !errors.Is(err, ErrNotArtifact) {
		t.Errorf("text: %v", err)
	}

	s = NewSniffer(0)
	if _, err := s.Header(); !errors.Is(err, ErrNotArtifact) {
		t.Errorf("nothing written: %v", err)
	}
}

// Header can be asked for more than once, and while the stream goes on.
func TestSnifferHeaderTwice(t *testing.T) {
	b := fixture(t, "rootfs.mender")
	s := NewSniffer(0)
	s.Write(b[:headerEnd(t, b)])
	first, err := s.Header()
	if err != nil {
		t.Fatal(err)
	}
	s.Write(b[headerEnd(t, b):])
	second, err := s.Header()
	if err != nil || !reflect.DeepEqual(first, second) {
		t.Fatalf("second Header = %+v, %v; first %+v", second, err, first)
	}
}
