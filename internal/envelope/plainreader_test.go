package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// countingReaderAt counts ReadAt calls (one GET each for an object store).
type countingReaderAt struct {
	r     io.ReaderAt
	calls atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls.Add(1)
	return c.r.ReadAt(p, off)
}

// fataler is what these helpers need of testing.TB and rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// sealAny is seal for a rapid.T as well.
func sealAny(t fataler, key, plain []byte, chunkLog2 uint8, seed byte) (Header, []byte) {
	t.Helper()
	h, err := headerWithSalt(key, chunkLog2, [16]byte{seed})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := EncryptWithHeader(&buf, bytes.NewReader(plain), key, h); err != nil {
		t.Fatal(err)
	}
	return h, buf.Bytes()
}

func newPlain(t fataler, blob, key []byte) *PlaintextReader {
	t.Helper()
	r, err := NewPlaintextReader(bytes.NewReader(blob), int64(len(blob)), key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readAt seeks to off and reads up to n bytes the way a Range handler does.
func readAt(r io.ReadSeeker, off int64, n int) ([]byte, error) {
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(r, buf)
	return buf[:got], err
}

// TestPlaintextReaderRoundTrip reads every chunk boundary ±1 and random
// offsets of blobs Encrypt wrote, at the sizes around a chunk.
func TestPlaintextReaderRoundTrip(t *testing.T) {
	key := fixedKey(9)
	for _, log2 := range []uint8{MinChunkLog2, DefaultChunkLog2} {
		cs := 1 << log2
		for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, 5*cs + 7} {
			t.Run(fmt.Sprintf("log2=%d/size=%d", log2, size), func(t *testing.T) {
				plain := randBytes(uint64(size)+7, size)
				_, blob := seal(t, key, plain, log2, 4)
				r := newPlain(t, blob, key)
				if r.Size() != int64(size) {
					t.Fatalf("Size = %d, want %d", r.Size(), size)
				}
				all, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(all, plain) {
					t.Fatalf("ReadAll: %d bytes, %v; want the %d-byte plaintext", len(all), err, size)
				}
				var offs []int
				for b := 0; b <= size+cs; b += cs {
					offs = append(offs, b-1, b, b+1)
				}
				rng := rand.New(rand.NewPCG(uint64(size), 1))
				for range 20 {
					offs = append(offs, rng.IntN(size+2))
				}
				for _, off := range offs {
					if off < 0 {
						continue
					}
					for _, n := range []int{1, 4, cs - 1, cs, cs + 1, 3*cs + 5} {
						got, err := readAt(r, int64(off), n)
						want := plain[min(off, size):min(off+n, size)]
						if !bytes.Equal(got, want) {
							t.Fatalf("read %d at %d: %d bytes differ from the plaintext's %d", n, off, len(got), len(want))
						}
						switch {
						case len(want) == n && err != nil:
							t.Fatalf("read %d at %d: %v", n, off, err)
						case len(want) == 0 && !errors.Is(err, io.EOF):
							t.Fatalf("read %d at %d (size %d): %v, want io.EOF", n, off, size, err)
						case len(want) > 0 && len(want) < n && !errors.Is(err, io.ErrUnexpectedEOF):
							t.Fatalf("read %d at %d (size %d): %v, want a short read", n, off, size, err)
						}
					}
				}
			})
		}
	}
}

// TestPlaintextReaderModel: any sequence of seeks and reads gives what a
// bytes.Reader over the plaintext gives.
func TestPlaintextReaderModel(t *testing.T) {
	key := fixedKey(3)
	rapid.Check(t, func(rt *rapid.T) {
		log2 := rapid.SampledFrom([]uint8{MinChunkLog2, MinChunkLog2 + 1}).Draw(rt, "log2")
		cs := 1 << log2
		size := rapid.IntRange(0, 6*cs+3).Draw(rt, "size")
		plain := randBytes(rapid.Uint64().Draw(rt, "seed"), size)
		_, blob := sealAny(rt, key, plain, log2, 5)
		r := newPlain(rt, blob, key)
		model := bytes.NewReader(plain)
		for i := range rapid.IntRange(1, 30).Draw(rt, "steps") {
			if rapid.Bool().Draw(rt, fmt.Sprintf("seek%d", i)) {
				whence := rapid.SampledFrom([]int{io.SeekStart, io.SeekCurrent, io.SeekEnd}).Draw(rt, fmt.Sprintf("whence%d", i))
				off := rapid.Int64Range(-int64(size)-2, int64(size)+2).Draw(rt, fmt.Sprintf("off%d", i))
				got, gerr := r.Seek(off, whence)
				want, werr := model.Seek(off, whence)
				if (gerr == nil) != (werr == nil) || (gerr == nil && got != want) {
					rt.Fatalf("Seek(%d, %d) = %d, %v; model %d, %v", off, whence, got, gerr, want, werr)
				}
				continue
			}
			n := rapid.IntRange(0, 3*cs).Draw(rt, fmt.Sprintf("len%d", i))
			got := make([]byte, n)
			gn, gerr := io.ReadFull(r, got)
			want := make([]byte, n)
			wn, werr := io.ReadFull(model, want)
			if gn != wn || !bytes.Equal(got[:gn], want[:wn]) || !errors.Is(gerr, werr) {
				rt.Fatalf("ReadFull(%d) = %d, %v; model %d, %v", n, gn, gerr, wn, werr)
			}
		}
	})
}

// TestPlaintextReaderTamper: a modified chunk k fails every read that
// reaches it and returns none of its bytes; the chunks before it read
// fine, and so do those after it, each being authenticated on its own.
func TestPlaintextReaderTamper(t *testing.T) {
	key := fixedKey(4)
	const log2 = MinChunkLog2
	cs := 1 << log2
	size := 4*cs + 100
	plain := randBytes(11, size)
	h, blob := seal(t, key, plain, log2, 6)
	for k := range int64(5) {
		t.Run(fmt.Sprintf("chunk%d", k), func(t *testing.T) {
			bad := flip(blob, int(ChunkOffset(h, k))+7, 0x20)
			r := newPlain(t, bad, key)
			start := int(k) * cs
			if got, err := readAt(r, 0, start); err != nil || !bytes.Equal(got, plain[:start]) {
				t.Fatalf("chunks before %d: %v", k, err)
			}
			for _, off := range []int{start, start + 1, start + cs - 1} {
				if off >= size {
					continue
				}
				got, err := readAt(r, int64(off), 10)
				if len(got) != 0 {
					t.Errorf("read at %d returned %d bytes of the tampered chunk", off, len(got))
				}
				checkSentinel(t, err, ErrAuth)
			}
			// A read spanning into chunk k returns the bytes before it.
			if k > 0 {
				got, err := readAt(r, int64(start-5), 20)
				if !bytes.Equal(got, plain[start-5:start]) {
					t.Errorf("spanning read returned %d bytes, want the 5 before chunk %d", len(got), k)
				}
				checkSentinel(t, err, ErrAuth)
			}
			if next := start + cs; next < size {
				if got, err := readAt(r, int64(next), size-next); err != nil || !bytes.Equal(got, plain[next:]) {
					t.Errorf("chunks after %d: %v", k, err)
				}
			}
			// The failure is not sticky across seeks, nor forgotten.
			if _, err := readAt(r, int64(start), 1); !errors.Is(err, ErrAuth) {
				t.Errorf("second read of chunk %d: %v, want ErrAuth", k, err)
			}
		})
	}
}

func TestPlaintextReaderRefuses(t *testing.T) {
	key := fixedKey(5)
	plain := randBytes(12, 3000)
	_, blob := seal(t, key, plain, MinChunkLog2, 7)

	_, err := NewPlaintextReader(bytes.NewReader(blob), int64(len(blob)), fixedKey(6))
	checkSentinel(t, err, ErrWrongKey)
	_, err = NewPlaintextReader(bytes.NewReader(blob[:HeaderSize-1]), HeaderSize-1, key)
	checkSentinel(t, err, ErrTruncated)
	_, err = NewPlaintextReader(bytes.NewReader(flip(blob, 0, 1)), int64(len(blob)), key)
	checkSentinel(t, err, ErrFormat)
	// A size no encoder produces (a last chunk shorter than its tag).
	_, err = NewPlaintextReader(bytes.NewReader(blob), HeaderSize+1024+TagSize+3, key)
	checkSentinel(t, err, ErrFormat)

	// A stated size longer than the blob: the last chunk is missing.
	r, err := NewPlaintextReader(bytes.NewReader(blob), int64(len(blob))+TagSize+10, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !bytes.Equal(got, plain[:2048]) {
		t.Errorf("read %d bytes, want the 2048 of the complete chunks before the missing one", len(got))
	}
	checkSentinel(t, err, ErrTruncated)
	// A stated size shorter than the blob: chunk 2 is not the last.
	r, err = NewPlaintextReader(bytes.NewReader(blob), int64(len(blob))-10, key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAt(r, 2048, 100)
	checkSentinel(t, err, ErrAuth)

	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("seek to -1 accepted")
	}
	if _, err := r.Seek(0, 7); err == nil {
		t.Error("seek with whence 7 accepted")
	}
}

// TestPlaintextReaderReadsAhead: a sequential download makes few ReadAt
// calls however small its reads (the decryptor is kept, windows grow), and
// a small range reads one window.
func TestPlaintextReaderReadsAhead(t *testing.T) {
	key := fixedKey(8)
	const chunks = 200
	plain := randBytes(13, chunks<<DefaultChunkLog2)
	_, blob := seal(t, key, plain, DefaultChunkLog2, 8)
	for _, readSize := range []int{100, 32 << 10} {
		src := &countingReaderAt{r: bytes.NewReader(blob)}
		r, err := NewPlaintextReader(src, int64(len(blob)), key)
		if err != nil {
			t.Fatal(err)
		}
		src.calls.Store(0)
		var out bytes.Buffer
		// Wrapped so that CopyBuffer uses the buffer, not ReadFrom.
		if _, err := io.CopyBuffer(struct{ io.Writer }{&out}, struct{ io.Reader }{r}, make([]byte, readSize)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), plain) {
			t.Fatal("plaintext differs")
		}
		// Windows of 1, 2, 4, 8 and then 16 chunks: 5 + (200-15)/16.
		if n := src.calls.Load(); n > 18 {
			t.Errorf("reads of %d bytes: %d ReadAt calls for %d chunks, want at most 18", readSize, n, chunks)
		}
	}
	src := &countingReaderAt{r: bytes.NewReader(blob)}
	r, err := NewPlaintextReader(src, int64(len(blob)), key)
	if err != nil {
		t.Fatal(err)
	}
	src.calls.Store(0)
	if got, err := readAt(r, 100<<DefaultChunkLog2+9, 4); err != nil || !bytes.Equal(got, plain[100<<DefaultChunkLog2+9:][:4]) {
		t.Fatalf("range read: %v", err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("a 4-byte range made %d ReadAt calls, want 1", n)
	}
}

// TestPlaintextReaderServeContent: http.ServeContent answers ranges from
// the reader as RAUC's streaming client and resuming downloads need.
func TestPlaintextReaderServeContent(t *testing.T) {
	key := fixedKey(10)
	plain := randBytes(14, 3<<DefaultChunkLog2+500)
	_, blob := seal(t, key, plain, DefaultChunkLog2, 9)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r, err := NewPlaintextReader(bytes.NewReader(blob), int64(len(blob)), key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, req, "", time.Unix(0, 0), r)
	}))
	defer srv.Close()
	size := len(plain)
	total := "/" + strconv.Itoa(size)
	for _, tc := range []struct {
		method, rng  string
		status       int
		contentRange string
		body         []byte
	}{
		{"GET", "", http.StatusOK, "", plain},
		{"HEAD", "", http.StatusOK, "", nil},
		{"GET", "bytes=0-3", http.StatusPartialContent, "bytes 0-3" + total, plain[:4]},
		{"GET", "bytes=16383-16384", http.StatusPartialContent, "bytes 16383-16384" + total, plain[16383:16385]},
		{"GET", "bytes=20000-", http.StatusPartialContent, "bytes 20000-" + strconv.Itoa(size-1) + total, plain[20000:]},
		{"GET", "bytes=-10", http.StatusPartialContent, "bytes " + strconv.Itoa(size-10) + "-" + strconv.Itoa(size-1) + total, plain[size-10:]},
		{"GET", "bytes=" + strconv.Itoa(size) + "-", http.StatusRequestedRangeNotSatisfiable, "bytes */" + strconv.Itoa(size), nil},
	} {
		req, err := http.NewRequest(tc.method, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
			t.Errorf("%s %q: %d, Content-Range %q; want %d, %q", tc.method, tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
			continue
		}
		if tc.status == http.StatusOK && resp.Header.Get("Content-Length") != strconv.Itoa(size) {
			t.Errorf("%s: Content-Length %q, want %d", tc.method, resp.Header.Get("Content-Length"), size)
		}
		if tc.status != http.StatusRequestedRangeNotSatisfiable && !bytes.Equal(body, tc.body) {
			t.Errorf("%s %q: %d bytes differ from the %d expected", tc.method, tc.rng, len(body), len(tc.body))
		}
	}
}

// FuzzPlaintextReader reads a range of arbitrary blobs: a blob that decrypts
// whole gives exactly its plaintext's slice; any other gives an error
// classified by one sentinel, and nothing but bytes NewDecryptorAt also
// releases.
func FuzzPlaintextReader(f *testing.F) {
	for name, b := range fuzzSeeds(f) {
		for _, off := range []uint32{0, 1, 1023, 1024, 2049} {
			f.Add(b, off, uint16(len(name)*40))
		}
	}
	key := fuzzKey()
	f.Fuzz(func(t *testing.T, blob []byte, off uint32, n uint16) {
		r, err := NewPlaintextReader(bytes.NewReader(blob), int64(len(blob)), key)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		got, rerr := readAt(r, int64(off), int(n))
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			checkOneSentinel(t, rerr)
		}
		plain, derr := decryptAll(blob, key)
		if derr == nil {
			if r.Size() != int64(len(plain)) {
				t.Fatalf("Size %d, plaintext %d bytes", r.Size(), len(plain))
			}
			want := plain[min(int(off), len(plain)):min(int(off)+int(n), len(plain))]
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d at %d: %d bytes, want %d", n, off, len(got), len(want))
			}
			if len(want) == int(n) && rerr != nil {
				t.Fatalf("read %d at %d of a valid blob: %v", n, off, rerr)
			}
			return
		}
		if len(got) == 0 {
			return
		}
		// Whatever was returned, the streaming decryptor releases too.
		h, _ := ParseHeader(blob)
		cs := int64(h.ChunkSize())
		i := int64(off) / cs
		d, err := NewDecryptorAt(h, key, i, bytes.NewReader(blob[min(ChunkOffset(h, i), int64(len(blob))):]))
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := io.ReadAll(d)
		skip := int64(off) - i*cs
		if int64(len(ref)) < skip+int64(len(got)) || !bytes.Equal(ref[skip:skip+int64(len(got))], got) {
			t.Fatalf("returned %d bytes at %d that the decryptor does not release", len(got), off)
		}
	})
}
