package menderartifact

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fuzzLimits are small, so the fuzzer reaches them quickly.
var fuzzLimits = limits{header: 256 << 10, file: 32 << 10}

// fuzzMaxAlloc bounds what one parse under fuzzLimits may allocate: the
// kept input, the header archive and its decoder, several times over.
const fuzzMaxAlloc = 32 << 20

func FuzzParse(f *testing.F) {
	for _, name := range fixtureNames(f) {
		f.Add(fixture(f, name))
	}
	f.Add(recompressed(f, fixture(f, "module-none.mender"), "zstd"))
	f.Add(artifactOf(f, `{"format":"mender","version":2}`, "gzip", []file{
		{"header-info", []byte(`{"artifact_name":"a","updates":[{"type":"rootfs-image"}],"device_types_compatible":["d"]}`)},
		{"headers/0000/type-info", []byte(`{"type":"rootfs-image"}`)},
	}))
	f.Add(artifactOf(f, version3, "xz", headerFiles(headerInfoV3JSON("a", "d"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h, err := parse(bytes.NewReader(data), fuzzLimits)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > fuzzMaxAlloc {
			t.Fatalf("parsing %d bytes allocated %d bytes", len(data), alloc)
		}
		if err != nil {
			// The input is in memory: every error is about its content.
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			return
		}
		checkHeader(t, h)

		// A Sniffer holding a prefix reads the same header or says why not.
		// (Where Parse fails, so does any prefix: it stops at the same place.)
		s := NewSniffer(max(len(data)/2, 1))
		s.lim = fuzzLimits
		for rest := data; len(rest) > 0; rest = rest[min(len(rest), 1000):] {
			s.Write(rest[:min(len(rest), 1000)])
		}
		sh, serr := s.Header()
		if serr == nil && !reflect.DeepEqual(sh, h) {
			t.Fatalf("sniffer read %+v, Parse %+v", sh, h)
		}
		if serr != nil && !errors.Is(serr, ErrInvalid) {
			t.Fatalf("sniffer error %q does not wrap ErrInvalid", serr)
		}
	})
}

// checkHeader asserts what Parse promises of a header it returns.
func checkHeader(t *testing.T, h *Header) {
	t.Helper()
	if h.FormatVersion != 2 && h.FormatVersion != 3 {
		t.Fatalf("format version %d", h.FormatVersion)
	}
	if h.Name == "" || checkName(h.Name) != nil {
		t.Fatalf("name %q", h.Name)
	}
	if h.Group != "" && checkName(h.Group) != nil {
		t.Fatalf("group %q", h.Group)
	}
	if len(h.DeviceTypes) == 0 {
		t.Fatal("no device types")
	}
	for _, d := range h.DeviceTypes {
		if d == "" || checkName(d) != nil {
			t.Fatalf("device type %q", d)
		}
	}
	if len(h.PayloadTypes) == 0 {
		t.Fatal("no payloads")
	}
	if h.Provides["artifact_name"] != h.Name {
		t.Fatalf("provides artifact_name %q, name %q", h.Provides["artifact_name"], h.Name)
	}
	if !slices.Contains([]string{"none", "gzip", "xz", "zstd"}, h.Compression) {
		t.Fatalf("compression %q", h.Compression)
	}
}

// FuzzHeaderArchive reads header archives directly: through Parse, almost
// every mutation of one fails the manifest checksum first.
func FuzzHeaderArchive(f *testing.F) {
	compressions := []string{"none", "gzip", "xz", "zstd"}
	for _, name := range fixtureNames(f) {
		for _, e := range untar(f, fixture(f, name)) {
			if strings.HasPrefix(e.name, "header") {
				version := byte(3)
				if name == "rootfs-v2.mender" {
					version = 2
				}
				compression, err := compressionOf(e.name[strings.Index(e.name, ".tar"):], ".tar")
				if err != nil {
					f.Fatal(err)
				}
				f.Add(byte(slices.Index(compressions, compression)), version, e.name == "header-augment.tar.gz", e.body)
			}
		}
	}
	zstdHeader := compress(f, "zstd", tarOf(f, headerFiles(headerInfoV3JSON("a", "d"))...))
	f.Add(byte(3), byte(3), false, zstdHeader)
	for _, name := range []string{"crc32-blocks.xz", "two-streams.xz"} {
		f.Add(byte(2), byte(3), false, fixture(f, "xz/"+name))
	}
	f.Fuzz(func(t *testing.T, compression, version byte, augment bool, archive []byte) {
		comp := compressions[int(compression)%len(compressions)]
		v := 2 + int(version%2)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := readHeaderArchive("header.tar", comp, archive, v, augment, fuzzLimits)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > fuzzMaxAlloc {
			t.Fatalf("reading a %d-byte %s archive allocated %d bytes", len(archive), comp, alloc)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			return
		}
		checkHeader(t, &Header{FormatVersion: v, Name: c.name, Group: c.group, DeviceTypes: c.deviceTypes,
			PayloadTypes: c.payloadTypes, Provides: c.provides, Compression: comp})
	})
}
