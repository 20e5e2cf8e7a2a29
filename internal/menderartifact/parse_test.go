package menderartifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseFixtures(t *testing.T) {
	rootfsSum := sha256.Sum256(fixtureRootfs())
	moduleProvides := func(name string) map[string]string {
		return map[string]string{"artifact_name": name, "rootfs-image.otaflow-test.version": name}
	}
	tests := []struct {
		fixture string
		input   func(t *testing.T) []byte // instead of the fixture file
		want    Header
	}{{
		fixture: "module-gzip.mender",
		want: Header{FormatVersion: 3, Name: "release-2.1.0", DeviceTypes: []string{"sensor-v1", "sensor-v2"},
			PayloadTypes: []string{"otaflow-test"}, Provides: moduleProvides("release-2.1.0"), Compression: "gzip"},
	}, {
		fixture: "module-none.mender",
		want: Header{FormatVersion: 3, Name: "release-2.1.0-none", DeviceTypes: []string{"sensor-v1"},
			PayloadTypes: []string{"otaflow-test"}, Provides: moduleProvides("release-2.1.0-none"), Compression: "none"},
	}, {
		fixture: "module-lzma.mender",
		want: Header{FormatVersion: 3, Name: "release-2.1.0-lzma", DeviceTypes: []string{"sensor-v1"},
			PayloadTypes: []string{"otaflow-test"}, Provides: moduleProvides("release-2.1.0-lzma"), Compression: "xz"},
	}, {
		fixture: "module-none.mender rewritten with zstd",
		input:   func(t *testing.T) []byte { return recompressed(t, fixture(t, "module-none.mender"), "zstd") },
		want: Header{FormatVersion: 3, Name: "release-2.1.0-none", DeviceTypes: []string{"sensor-v1"},
			PayloadTypes: []string{"otaflow-test"}, Provides: moduleProvides("release-2.1.0-none"), Compression: "zstd"},
	}, {
		fixture: "rootfs.mender",
		want: Header{FormatVersion: 3, Name: "rootfs-1.0", DeviceTypes: []string{"raspberrypi4"},
			PayloadTypes: []string{"rootfs-image"}, Compression: "gzip",
			Provides: map[string]string{
				"artifact_name":         "rootfs-1.0",
				"rootfs-image.version":  "rootfs-1.0",
				"rootfs-image.checksum": hex.EncodeToString(rootfsSum[:]),
			}},
	}, {
		fixture: "rootfs-v2.mender",
		want: Header{FormatVersion: 2, Name: "rootfs-v2", DeviceTypes: []string{"raspberrypi4", "raspberrypi3"},
			PayloadTypes: []string{"rootfs-image"}, Provides: map[string]string{"artifact_name": "rootfs-v2"}, Compression: "gzip"},
	}, {
		fixture: "bootstrap.mender",
		want: Header{FormatVersion: 3, Name: "bootstrap-1", DeviceTypes: []string{"sensor-v1"},
			PayloadTypes: []string{""}, Provides: map[string]string{"artifact_name": "bootstrap-1"}, Compression: "gzip"},
	}, {
		fixture: "signed.mender",
		want: Header{FormatVersion: 3, Name: "signed-3.0", Group: "beta", DeviceTypes: []string{"Sensor-V1", "sensor-v2"},
			PayloadTypes: []string{"otaflow-test"}, Signed: true, Compression: "gzip",
			Provides: map[string]string{
				"artifact_name":                     "signed-3.0",
				"artifact_group":                    "beta",
				"app.version":                       "3.0.0",
				"build.id":                          "42",
				"rootfs-image.otaflow-test.version": "signed-3.0",
			},
			Depends: map[string][]string{
				"artifact_name":  {"release-2.1.0"},
				"artifact_group": {"alpha", "beta"},
				"kernel.version": {"5.10"},
			}},
	}, {
		fixture: "augmented.mender",
		want: Header{FormatVersion: 3, Name: "augmented-1", DeviceTypes: []string{"sensor-v1"},
			PayloadTypes: []string{"otaflow-delta"}, Signed: true, Compression: "gzip",
			Provides: map[string]string{
				"artifact_name":                     "augmented-1",
				"rootfs-image.otaflow-test.version": "augmented-1",
				"delta.base":                        "2.1.0",
			}},
	}}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			var b []byte
			if tt.input != nil {
				b = tt.input(t)
			} else {
				b = fixture(t, tt.fixture)
			}
			// Anything past the first data/ tar header fails the read.
			h, err := Parse(failAfter(b[:headerEnd(t, b)], errors.New("read past the header")))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*h, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *h, tt.want)
			}
		})
	}
}

// Every fixture in testdata must be in the table above.
func TestParseFixturesCovered(t *testing.T) {
	for _, name := range fixtureNames(t) {
		if _, err := Parse(bytes.NewReader(fixture(t, name))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Cut anywhere before the end of the first data/ tar header, an artifact
// is reported as truncated; cut after it, it parses.
func TestParseTruncated(t *testing.T) {
	for _, name := range []string{"module-gzip.mender", "augmented.mender", "signed.mender"} {
		b := fixture(t, name)
		end := headerEnd(t, b)
		for cut := 1; cut < len(b); cut++ {
			_, err := Parse(bytes.NewReader(b[:cut]))
			if cut >= end {
				if err != nil {
					t.Fatalf("%s cut at %d (header ends at %d): %v", name, cut, end, err)
				}
				continue
			}
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d: %v, want a truncation wrapping ErrInvalid and io.ErrUnexpectedEOF", name, cut, err)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	valid := headerFiles(headerInfoV3JSON("release-1", "sensor-v1"))
	validOuter := outerOf(t, version3, "gzip", valid)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	corrupted := func() []byte {
		files := untar(t, fixture(t, "module-gzip.mender"))
		for i := range files {
			if files[i].name == "header.tar.gz" {
				files[i].body = bytes.Clone(files[i].body)
				files[i].body[len(files[i].body)/2] ^= 0x40
			}
		}
		return tarOf(t, files...)
	}
	withHeader := func(hi string, extra ...file) []byte {
		return artifactOf(t, version3, "gzip", append([]file{{"header-info", []byte(hi)}}, extra...))
	}
	typeInfo := file{"headers/0000/type-info", []byte(`{"type":"otaflow-test"}`)}
	// A header archive that decompresses to just over MaxHeaderSize.
	bomb := append(slices.Clone(valid), file{"scripts/ArtifactInstall_Enter_00", make([]byte, MaxHeaderSize)})

	tests := []struct {
		name    string
		input   []byte
		notArt  bool // wants ErrNotArtifact, else ErrInvalid only
		wantMsg string
	}{
		{"empty input", nil, true, "the input is empty"},
		{"random bytes", random, true, "not a tar archive"},
		{"short random bytes", random[:100], true, "first tar block"},
		{"plain tar", tarOf(t, file{"README", []byte("hello")}), true, `the first entry is "README", not version`},
		{"version not JSON", artifactOf(t, "mender 3", "gzip", valid), true, "version is not JSON"},
		{"other format", artifactOf(t, `{"format":"docker","version":3}`, "gzip", valid), true, `format is "docker", not mender`},
		{"version 1", artifactOf(t, `{"format":"mender","version":1}`, "gzip", valid), false, "format version 1 is not supported"},
		{"version 4", artifactOf(t, `{"format":"mender","version":4}`, "gzip", valid), false, "format version 4 is not supported"},
		{"corrupted header", corrupted(), false, "manifest: sha256 of header.tar.gz does not match"},
		{"corrupted version", tarOf(t, withEntry(t, validOuter, "version", []byte(`{"format":"mender","version":3} `))...), false, "manifest: sha256 of version does not match"},
		{"manifest without header", tarOf(t, withEntry(t, validOuter, "manifest", manifestOf("manifest", validOuter[0]).body)...), false, "manifest has no checksum for header.tar.gz"},
		{"manifest malformed", tarOf(t, withEntry(t, validOuter, "manifest", []byte("abc version\n"))...), false, "manifest line 1 is not"},
		{"manifest empty", tarOf(t, withEntry(t, validOuter, "manifest", nil)...), false, "manifest is empty"},
		{"manifest after header", tarOf(t, validOuter[0], validOuter[2], validOuter[1], validOuter[3]), false, `the entry after version is "header.tar.gz", not manifest`},
		{"oversize manifest", tarOf(t, withEntry(t, validOuter, "manifest", make([]byte, MaxFileSize+1))...), false, "manifest is 1048577 bytes, more than the 1048576 allowed"},
		{"empty manifest.sig", tarOf(t, validOuter[0], validOuter[1], file{"manifest.sig", nil}, validOuter[2], validOuter[3]), false, "manifest.sig is empty"},
		{"unknown entry before header", tarOf(t, validOuter[0], validOuter[1], file{"notes.txt", []byte("x")}, validOuter[2], validOuter[3]), false, `after the manifest, found "notes.txt"`},
		{"unknown entry after header", tarOf(t, validOuter[0], validOuter[1], validOuter[2], file{"notes.txt", []byte("x")}, validOuter[3]), false, `unexpected entry "notes.txt" after the header`},
		{"no data", tarOf(t, validOuter[:3]...), false, "truncated after header.tar.gz, before its data"},
		{"bzip2 header", tarOf(t, validOuter[0], manifestOf("manifest", validOuter[0], file{"header.tar.bz2", []byte("BZh")}), file{"header.tar.bz2", []byte("BZh")}, validOuter[3]), false, `"header.tar.bz2": unsupported compression (want header.tar, header.tar.gz, header.tar.xz or header.tar.zst)`},
		{"header not gzip", tarOf(t, validOuter[0], manifestOf("manifest", validOuter[0], file{"header.tar.gz", []byte("plain text, not gzip")}), file{"header.tar.gz", []byte("plain text, not gzip")}, validOuter[3]), false, "header.tar.gz: gzip: invalid header"},
		{"empty name", withHeader(headerInfoV3JSON("", "sensor-v1"), typeInfo), false, "header-info: artifact_provides.artifact_name is empty"},
		{"no artifact_provides", withHeader(`{"payloads":[{"type":"x"}],"artifact_depends":{"device_type":["d"]}}`, typeInfo), false, "artifact_provides.artifact_name is empty"},
		{"long name", withHeader(headerInfoV3JSON(strings.Repeat("n", MaxNameLength+1), "sensor-v1"), typeInfo), false, "artifact_name is longer than 256 bytes"},
		{"control character in name", withHeader(headerInfoV3JSON("release\n1", "sensor-v1"), typeInfo), false, "artifact_name contains a control character"},
		{"no device types", withHeader(headerInfoV3JSON("release-1"), typeInfo), false, "header-info lists no compatible device types"},
		{"empty device type", withHeader(headerInfoV3JSON("release-1", "sensor-v1", ""), typeInfo), false, "a compatible device type is empty"},
		{"control character in device type", withHeader(headerInfoV3JSON("release-1", "sensor\tv1"), typeInfo), false, `device type "sensor\tv1" contains a control character`},
		{"device types not a list", withHeader(`{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":"a"},"artifact_depends":{"device_type":"d"}}`, typeInfo), false, "header-info: json: cannot unmarshal"},
		{"no payloads", withHeader(`{"payloads":[],"artifact_provides":{"artifact_name":"a"},"artifact_depends":{"device_type":["d"]}}`), false, "header-info lists no payloads"},
		{"missing type-info", withHeader(headerInfoV3JSON("release-1", "sensor-v1")), false, "headers/0000/type-info is missing"},
		{"type-info of a payload not listed", withHeader(headerInfoV3JSON("release-1", "sensor-v1"), typeInfo, file{"headers/0001/type-info", []byte(`{}`)}), false, "headers/0001/type-info is for payload 1, but header-info lists 1 payload(s)"},
		{"type-info twice", withHeader(headerInfoV3JSON("release-1", "sensor-v1"), typeInfo, typeInfo), false, "headers/0000/type-info appears twice"},
		{"type-info depends not strings", withHeader(headerInfoV3JSON("release-1", "sensor-v1"), file{"headers/0000/type-info", []byte(`{"artifact_depends":{"k":1}}`)}), false, "neither a string nor a list of strings"},
		{"oversize type-info", withHeader(headerInfoV3JSON("release-1", "sensor-v1"), file{"headers/0000/type-info", make([]byte, MaxFileSize+1)}), false, "headers/0000/type-info is 1048577 bytes, more than the 1048576 allowed"},
		{"header-info not first", artifactOf(t, version3, "gzip", []file{typeInfo, {"header-info", []byte(headerInfoV3JSON("a", "d"))}}), false, `the first entry is "headers/0000/type-info", not header-info`},
		{"empty header archive", artifactOf(t, version3, "gzip", nil), false, "header.tar.gz: header-info is missing"},
		{"header-info not JSON", withHeader(`{"payloads":`, typeInfo), false, "header.tar.gz: header-info: unexpected end of JSON input"},
		{"v2 header-info without updates", artifactOf(t, `{"format":"mender","version":2}`, "gzip", []file{{"header-info", []byte(`{"artifact_name":"a","device_types_compatible":["d"]}`)}}), false, "header-info lists no updates"},
		{"gzip bomb", artifactOf(t, version3, "gzip", bomb), false, "header.tar.gz decompresses to more than 16777216 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(bytes.NewReader(tt.input))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", h)
			}
			t.Log(err)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if got := errors.Is(err, ErrNotArtifact); got != tt.notArt {
				t.Errorf("errors.Is(%q, ErrNotArtifact) = %v, want %v", err, got, tt.notArt)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

// A header archive larger than allowed is refused from its tar header,
// without reading it.
func TestParseRefusesLargeHeaderUnread(t *testing.T) {
	outer := outerOf(t, version3, "none", headerFiles(headerInfoV3JSON("a", "d")))
	big := file{"header.tar", make([]byte, MaxHeaderSize+1)}
	b := tarOf(t, outer[0], manifestOf("manifest", outer[0], big), big, outer[3])
	cr := &countingReader{r: bytes.NewReader(b)}
	_, err := Parse(cr)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "header.tar is 16777217 bytes, more than the 16777216 allowed") {
		t.Fatalf("Parse: %v", err)
	}
	if cr.n > 64<<10 {
		t.Errorf("read %d bytes before refusing", cr.n)
	}
}

// xz and zstd archives are bounded like gzip ones (with smaller limits here
// to keep the test fast).
func TestParseBombs(t *testing.T) {
	lim := limits{header: 1 << 20, file: 64 << 10}
	header := append(headerFiles(headerInfoV3JSON("a", "d")), file{"scripts/ArtifactInstall_Enter_00", make([]byte, 2<<20)})
	for _, compression := range []string{"none", "gzip", "xz", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			outer := outerOf(t, version3, compression, header)
			h := outer[2]
			if compression == "none" {
				// Stored, it is refused for its size before decompression.
				_, err := parse(bytes.NewReader(tarOf(t, outer...)), lim)
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than the 1048576 allowed") {
					t.Fatalf("parse: %v", err)
				}
				return
			}
			if int64(len(h.body)) > lim.header {
				t.Fatalf("compressed header is %d bytes, the test wants it under the limit", len(h.body))
			}
			_, err := parse(bytes.NewReader(tarOf(t, outer...)), lim)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), h.name+" decompresses to more than 1048576 bytes") {
				t.Fatalf("parse: %v", err)
			}
		})
	}
}

// A zstd frame declaring a window larger than the header may be is refused
// before the decoder sets the window aside.
func TestParseZstdWindow(t *testing.T) {
	lim := limits{header: 1 << 20, file: 64 << 10}
	header := headerFiles(headerInfoV3JSON("a", "d"))
	outer := outerOf(t, version3, "zstd", header)
	h := file{"header.tar.zst", zstdRawFrame(23, tarOf(t, header...))}
	b := tarOf(t, outer[0], manifestOf("manifest", outer[0], h), h, outer[3])
	if _, err := parse(bytes.NewReader(b), lim); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "window size exceeded") {
		t.Fatalf("8 MiB window, 1 MiB limit: %v", err)
	}
	if _, err := Parse(bytes.NewReader(b)); err != nil {
		t.Fatalf("8 MiB window, default limit: %v", err)
	}
}

// zstdRawFrame stores content in a zstd frame of raw blocks whose header
// declares a window of 1<<windowLog bytes and no content size.
func zstdRawFrame(windowLog int, content []byte) []byte {
	b := []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, byte(windowLog-10) << 3}
	for len(content) > 0 || len(b) == 6 {
		n := min(len(content), 128<<10)
		last := 0
		if n == len(content) {
			last = 1
		}
		h := uint32(n)<<3 | uint32(last) // block type 0: raw
		b = append(b, byte(h), byte(h>>8), byte(h>>16))
		b = append(b, content[:n]...)
		content = content[n:]
	}
	return b
}

// An archive that decompresses to exactly the limit is accepted.
func TestParseHeaderAtLimit(t *testing.T) {
	header := headerFiles(headerInfoV3JSON("a", "d"))
	size := int64(len(tarOf(t, header...)))
	lim := limits{header: size, file: 64 << 10}
	b := artifactOf(t, version3, "gzip", header)
	if _, err := parse(bytes.NewReader(b), lim); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	lim.header--
	if _, err := parse(bytes.NewReader(b), lim); !errors.Is(err, ErrInvalid) {
		t.Fatalf("one byte under: %v", err)
	}
}

// Errors reading the input are returned as such, not as invalid artifacts.
func TestParseReadError(t *testing.T) {
	b := fixture(t, "module-gzip.mender")
	ioErr := errors.New("connection reset")
	for _, cut := range []int{0, 100, 600, 1500, headerEnd(t, b) - 1} {
		_, err := Parse(failAfter(b[:cut], ioErr))
		if !errors.Is(err, ioErr) || errors.Is(err, ErrInvalid) {
			t.Errorf("cut at %d: %v, want the read error and not ErrInvalid", cut, err)
		}
	}
}

func TestParseAugmentErrors(t *testing.T) {
	outer := outerOf(t, version3, "gzip", headerFiles(headerInfoV3JSON("release-1", "sensor-v1")))
	augmentOf := func(headerInfo string) []byte {
		aug := file{"header-augment.tar.gz", compress(t, "gzip", tarOf(t, file{"header-info", []byte(headerInfo)}))}
		return tarOf(t, outer[0], outer[1], manifestOf("manifest-augment", aug), outer[2], aug, outer[3])
	}
	tests := []struct {
		name    string
		input   []byte
		wantMsg string
	}{
		{"other name", augmentOf(headerInfoV3JSON("release-2", "sensor-v1")), `artifact_name "release-2" differs from "release-1"`},
		{"other device types", augmentOf(headerInfoV3JSON("release-1", "sensor-v2")), "device types differ"},
		{"manifest-augment alone", tarOf(t, outer[0], outer[1], manifestOf("manifest-augment", outer[0]), outer[2], outer[3]), "manifest-augment without header-augment.tar"},
		{"header-augment alone", tarOf(t, outer[0], outer[1], outer[2], file{"header-augment.tar.gz", nil}, outer[3]), "header-augment.tar.gz without manifest-augment"},
		{"header-augment not in manifest-augment", tarOf(t, outer[0], outer[1], manifestOf("manifest-augment", outer[0]), outer[2], file{"header-augment.tar.gz", nil}, outer[3]), "manifest-augment has no checksum for header-augment.tar.gz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(bytes.NewReader(tt.input))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Parse: %v, want ErrInvalid saying %q", err, tt.wantMsg)
			}
		})
	}
	// The same assembly with a matching augmented header parses.
	if _, err := Parse(bytes.NewReader(augmentOf(headerInfoV3JSON("release-1", "sensor-v1")))); err != nil {
		t.Fatalf("matching augment: %v", err)
	}
}
