package menderartifact

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on what Parse reads.
const (
	// MaxHeaderSize bounds the header archive (header.tar.*), both as stored
	// in the artifact and once decompressed.
	MaxHeaderSize = 16 << 20
	// MaxFileSize bounds each small file: version, manifest, manifest.sig,
	// manifest-augment and the JSON files inside the header archive.
	MaxFileSize = 1 << 20
	// MaxNameLength bounds the artifact name, its group and each device type.
	MaxNameLength = 256
)

// ErrInvalid is wrapped by every error about the content of the input: the
// input is not a Mender artifact this package accepts. Errors that do not
// wrap it come from reading the input.
var ErrInvalid = errors.New("invalid Mender artifact")

// ErrNotArtifact is wrapped when the input is not a Mender artifact at all
// (not a tar, or no Mender version entry first). errors.Is(err, ErrInvalid)
// holds for it too.
var ErrNotArtifact error = notArtifactError{}

type notArtifactError struct{}

func (notArtifactError) Error() string        { return "not a Mender artifact" }
func (notArtifactError) Is(target error) bool { return target == ErrInvalid }

// Header is what the header of a Mender artifact declares.
type Header struct {
	// FormatVersion is the artifact format version, 2 or 3.
	FormatVersion int
	// Name is the artifact name (artifact_provides.artifact_name).
	Name string
	// Group is the artifact group it provides, "" when none.
	Group string
	// DeviceTypes are the compatible device types, as given in the artifact.
	DeviceTypes []string
	// PayloadTypes holds one type per payload, in order: the update module
	// ("rootfs-image", "single-file", ...), "" for an empty payload
	// (bootstrap artifacts). An augmented header's type replaces the original.
	PayloadTypes []string
	// Provides is what a device provides once the artifact is installed:
	// artifact_name, artifact_group (when set) and the payloads' provides.
	Provides map[string]string
	// Depends holds the artifact's other dependencies than the device type:
	// artifact_name and artifact_group lists from header-info and the
	// payloads' depends (a single string becomes a one-element list); nil when none.
	Depends map[string][]string
	// Signed tells whether the artifact carries a manifest.sig. The signature
	// itself is not verified here.
	Signed bool
	// Compression of the header archive: "none", "gzip", "xz" or "zstd".
	Compression string
}

// limits are the bounds of one parse; tests and fuzzing use smaller ones.
type limits struct {
	header int64 // header archive, stored and decompressed
	file   int64 // each small file
}

var defaultLimits = limits{header: MaxHeaderSize, file: MaxFileSize}

// Parse reads a Mender artifact from r up to the first data/ entry, checks
// the checksums of version and of the header archives against the manifest,
// and returns what the header declares. It never reads past the tar header of
// the first data/ entry.
func Parse(r io.Reader) (*Header, error) {
	return parse(r, defaultLimits)
}

func parse(r io.Reader, lim limits) (*Header, error) {
	src := &sourceReader{r: r}
	p := &parser{src: src, tr: tar.NewReader(src), lim: lim}
	return p.run()
}

// sourceReader remembers the last error of the input other than io.EOF, so
// an I/O error is not reported as a malformed artifact.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

type parser struct {
	src *sourceReader
	tr  *tar.Reader
	lim limits
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func notArtifact(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotArtifact}, args...)...)
}

// truncated reports input that ended early; it wraps io.ErrUnexpectedEOF so
// a Sniffer can tell a header cut by its limit from a malformed one.
func truncated(where string) error {
	return fmt.Errorf("%w: the artifact is truncated %s: %w", ErrInvalid, where, io.ErrUnexpectedEOF)
}

// tarError turns an error of the outer tar reader into one of this package's.
func (p *parser) tarError(err error, where string) error {
	if p.src.err != nil {
		return fmt.Errorf("reading artifact: %w", p.src.err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated(where)
	}
	return invalid("%s: %v", where, err)
}

// next returns the next entry of the outer tar; the artifact must go on
// until its data, so the end of the archive is an error.
func (p *parser) next(after string) (*tar.Header, error) {
	h, err := p.tr.Next()
	if err == io.EOF {
		if p.src.err != nil {
			return nil, fmt.Errorf("reading artifact: %w", p.src.err)
		}
		return nil, truncated("after " + after + ", before its data")
	}
	if err != nil {
		return nil, p.tarError(err, "after "+after)
	}
	return h, nil
}

// read returns the content of the current entry, refusing more than max bytes.
func (p *parser) read(h *tar.Header, max int64) ([]byte, error) {
	if h.Typeflag != tar.TypeReg {
		return nil, invalid("%s is not a regular file", h.Name)
	}
	if h.Size > max {
		return nil, invalid("%s is %d bytes, more than the %d allowed", h.Name, h.Size, max)
	}
	b := make([]byte, h.Size)
	if _, err := io.ReadFull(p.tr, b); err != nil {
		return nil, p.tarError(err, "in "+h.Name)
	}
	return b, nil
}

func (p *parser) run() (*Header, error) {
	h, err := p.tr.Next()
	switch {
	case err == io.EOF && p.src.err == nil:
		return nil, notArtifact("the input is empty")
	case err != nil && p.src.err != nil:
		return nil, fmt.Errorf("reading artifact: %w", p.src.err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: the input ends within its first tar block: %w", ErrNotArtifact, io.ErrUnexpectedEOF)
	case err != nil:
		return nil, notArtifact("not a tar archive (%v)", err)
	case h.Name != "version":
		return nil, notArtifact("the first entry is %s, not version", quoteShort(h.Name))
	}
	versionFile, err := p.read(h, p.lim.file)
	if err != nil {
		return nil, err
	}
	version, err := parseVersion(versionFile)
	if err != nil {
		return nil, err
	}
	hdr := &Header{FormatVersion: version}

	if h, err = p.next("version"); err != nil {
		return nil, err
	}
	if h.Name != "manifest" {
		return nil, invalid("the entry after version is %s, not manifest", quoteShort(h.Name))
	}
	manifestFile, err := p.read(h, p.lim.file)
	if err != nil {
		return nil, err
	}
	sums, err := parseManifest("manifest", manifestFile)
	if err != nil {
		return nil, err
	}
	if err := sums.verify("version", versionFile); err != nil {
		return nil, err
	}

	if h, err = p.next("manifest"); err != nil {
		return nil, err
	}
	if h.Name == "manifest.sig" {
		sig, err := p.read(h, p.lim.file)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(sig)) == 0 {
			return nil, invalid("manifest.sig is empty")
		}
		hdr.Signed = true
		if h, err = p.next("manifest.sig"); err != nil {
			return nil, err
		}
	}
	var augmentManifest *manifest
	if h.Name == "manifest-augment" && version == 3 {
		b, err := p.read(h, p.lim.file)
		if err != nil {
			return nil, err
		}
		if augmentManifest, err = parseManifest("manifest-augment", b); err != nil {
			return nil, err
		}
		if h, err = p.next("manifest-augment"); err != nil {
			return nil, err
		}
	}

	if !strings.HasPrefix(h.Name, "header.tar") {
		return nil, invalid("expected the header archive (header.tar, header.tar.gz, .xz or .zst) after the manifest, found %s", quoteShort(h.Name))
	}
	if hdr.Compression, err = compressionOf(h.Name, "header.tar"); err != nil {
		return nil, err
	}
	headerName := h.Name
	archive, err := p.read(h, p.lim.header)
	if err != nil {
		return nil, err
	}
	if err := sums.verify(headerName, archive); err != nil {
		return nil, err
	}
	content, err := readHeaderArchive(headerName, hdr.Compression, archive, version, false, p.lim)
	if err != nil {
		return nil, err
	}

	if h, err = p.next(headerName); err != nil {
		return nil, err
	}
	if strings.HasPrefix(h.Name, "header-augment.tar") && version == 3 {
		augmentName := h.Name
		compression, err := compressionOf(augmentName, "header-augment.tar")
		if err != nil {
			return nil, err
		}
		if augmentManifest == nil {
			return nil, invalid("%s without manifest-augment", augmentName)
		}
		archive, err := p.read(h, p.lim.header)
		if err != nil {
			return nil, err
		}
		if err := augmentManifest.verify(augmentName, archive); err != nil {
			return nil, err
		}
		augment, err := readHeaderArchive(augmentName, compression, archive, version, true, p.lim)
		if err != nil {
			return nil, err
		}
		if err := content.augment(augmentName, augment); err != nil {
			return nil, err
		}
		if h, err = p.next(augmentName); err != nil {
			return nil, err
		}
	} else if augmentManifest != nil {
		return nil, invalid("manifest-augment without header-augment.tar")
	}
	if !strings.HasPrefix(h.Name, "data/") {
		return nil, invalid("unexpected entry %s after the header (expected data/0000.tar...)", quoteShort(h.Name))
	}

	hdr.Name = content.name
	hdr.Group = content.group
	hdr.DeviceTypes = content.deviceTypes
	hdr.PayloadTypes = content.payloadTypes
	hdr.Provides = content.provides
	hdr.Depends = content.depends
	return hdr, nil
}

func parseVersion(b []byte) (int, error) {
	var v struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, notArtifact("version is not JSON: %v", err)
	}
	if v.Format != "mender" {
		return 0, notArtifact("version: format is %s, not mender", quoteShort(v.Format))
	}
	if v.Version != 2 && v.Version != 3 {
		return 0, invalid("format version %d is not supported (only 2 and 3 are)", v.Version)
	}
	return v.Version, nil
}

// manifest maps paths in the artifact to their SHA-256.
type manifest struct {
	name string // manifest or manifest-augment
	sums map[string][sha256.Size]byte
}

// parseManifest reads "<sha256 hex>  <path>" lines; blank lines are skipped.
func parseManifest(name string, b []byte) (*manifest, error) {
	sums := map[string][sha256.Size]byte{}
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		sum, path, ok := strings.Cut(line, "  ")
		raw, err := hex.DecodeString(sum)
		if !ok || path == "" || err != nil || len(raw) != sha256.Size {
			return nil, invalid("%s line %d is not \"<sha256 hex>  <path>\"", name, i+1)
		}
		if _, dup := sums[path]; dup {
			return nil, invalid("%s lists %s twice", name, path)
		}
		sums[path] = [sha256.Size]byte(raw)
	}
	if len(sums) == 0 {
		return nil, invalid("%s is empty", name)
	}
	return &manifest{name: name, sums: sums}, nil
}

func (m *manifest) verify(path string, content []byte) error {
	want, ok := m.sums[path]
	if !ok {
		return invalid("%s has no checksum for %s", m.name, path)
	}
	if sha256.Sum256(content) != want {
		return invalid("%s: sha256 of %s does not match", m.name, path)
	}
	return nil
}
