package menderartifact

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// xzContent is what every testdata/xz vector holds (two-streams.xz twice);
// see testdata/README.md for how they were written.
func xzContent() []byte {
	var b strings.Builder
	for i := range 800 {
		fmt.Fprintf(&b, "otaflow xz test line %05d\n", i)
	}
	return []byte(b.String())
}

func readXZ(data []byte, maxDict int64) ([]byte, error) {
	r, err := newXZReader(data, maxDict)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestXZVectors(t *testing.T) {
	content := xzContent()
	tests := []struct {
		file string
		want []byte
	}{
		{"crc32-blocks.xz", content}, // six blocks with sizes in their headers
		{"sha256.xz", content},
		{"no-check.xz", content},
		{"two-streams.xz", append(bytes.Clone(content), content...)}, // with stream padding between
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := readXZ(fixture(t, filepath.Join("xz", tt.file)), MaxHeaderSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("decoded %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
	// mender-artifact's own (CRC64, 64 MiB dictionary) is read in
	// TestParseFixtures/module-lzma.mender.
}

func TestXZUnsupportedFilter(t *testing.T) {
	_, err := readXZ(fixture(t, "xz/x86-filter.xz"), MaxHeaderSize)
	if err == nil || !strings.Contains(err.Error(), "only the LZMA2 filter alone is supported") {
		t.Fatalf("x86 filter: %v", err)
	}
}

// A corrupted byte of a stream with checks is either detected or harmless
// (an LZMA2 chunk's compressed size is a hint the decoder does not need), and
// a cut is detected unless it falls between two streams, which leaves a
// valid xz file.
func TestXZCorruptionAndTruncation(t *testing.T) {
	content := xzContent()
	tests := []struct {
		file      string
		want      []byte
		validCuts map[int]bool
	}{
		{"crc32-blocks.xz", content, nil},
		// The first stream is 620 bytes, followed by 8 bytes of padding.
		{"two-streams.xz", append(bytes.Clone(content), content...), map[int]bool{620: true, 624: true, 628: true}},
	}
	const maxDict = 64 << 10 // enough for this content, cheap to allocate
	for _, tt := range tests {
		data := fixture(t, filepath.Join("xz", tt.file))
		for i := range data {
			bad := bytes.Clone(data)
			bad[i] ^= 0x01
			if got, err := readXZ(bad, maxDict); err == nil && !bytes.Equal(got, tt.want) {
				t.Errorf("%s: flipping a bit of byte %d changed the output unnoticed", tt.file, i)
			}
			got, err := readXZ(data[:i], maxDict)
			switch {
			case tt.validCuts[i]:
				if err != nil || !bytes.Equal(got, content) {
					t.Errorf("%s: cut between streams at %d: %v", tt.file, i, err)
				}
			case err == nil:
				t.Errorf("%s: cut at %d went unnoticed", tt.file, i)
			}
		}
	}
}

// withDictProp sets the LZMA2 dictionary size property of the first block
// of a single-block stream written by mender-artifact or xz -C crc64, and
// fixes the block header checksum. The compressed data stays valid: it only
// refers to what it has already produced.
func withDictProp(t *testing.T, data []byte, prop byte) []byte {
	t.Helper()
	data = bytes.Clone(data)
	size := (int(data[12]) + 1) * 4
	h := data[12 : 12+size]
	if h[1] != 0 || h[2] != lzma2FilterID || h[3] != 1 {
		t.Fatalf("unexpected block header % x", h)
	}
	h[4] = prop
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return data
}

// A block declaring a 4 GiB dictionary is decoded with one no larger than
// the limit.
func TestXZDictionaryCapped(t *testing.T) {
	data := withDictProp(t, untarBody(t, fixture(t, "module-lzma.mender"), "header.tar.xz"), 40)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readXZ(data, 1<<20)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("header-info")) {
		t.Fatalf("decoded %q...", got[:min(len(got), 32)])
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("decoding allocated %d bytes with a 1 MiB limit", alloc)
	}
}

// A dictionary cap below what the data refers back to fails cleanly, as
// the xz tool fails with too small a dictionary; at the size of the output
// it always suffices.
func TestXZDictionaryTooSmallForData(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	half := make([]byte, 8<<10)
	for i := range half {
		half[i] = byte(rng.Uint32())
	}
	content := append(bytes.Clone(half), half...) // the second half is a match 8 KiB back
	data := compress(t, "xz", content)
	if _, err := readXZ(data, 4<<10); err == nil {
		t.Fatal("decoded a match 8 KiB back with a 4 KiB dictionary")
	}
	got, err := readXZ(data, int64(len(content)))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("with a dictionary the size of the output: %v", err)
	}
}

func TestReadVLI(t *testing.T) {
	tests := []struct {
		in   []byte
		want int64
		ok   bool
	}{
		{[]byte{0x00}, 0, true},
		{[]byte{0x7F}, 127, true},
		{[]byte{0x80, 0x01}, 128, true},
		{[]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, 1<<63 - 1, true},
		{[]byte{0x80, 0x00}, 0, false}, // not minimal
		{[]byte{0x80}, 0, false},       // truncated
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, false}, // too long
	}
	for _, tt := range tests {
		got, err := readVLI(bytes.NewReader(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("readVLI(% x) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
