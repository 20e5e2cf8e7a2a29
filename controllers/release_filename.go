package controllers

import (
	"net/url"
	"path"
	"strings"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// maxArtifactFilename is the longest file name spec.artifactFilename allows.
const maxArtifactFilename = 128

// artifactFilename is the file name DDI clients see for the release's image:
// spec.artifactFilename, else one derived from the source.
func artifactFilename(rel *otav1.FirmwareRelease) string {
	if f := rel.Spec.ArtifactFilename; f != "" {
		return f
	}
	return defaultArtifactFilename(rel.Spec.Source.URL, rel.Name, rel.Spec.Version, rel.Spec.Format)
}

// defaultArtifactFilename derives a file name from the source: the base name
// of an http(s) URL's path or an S3 key; for OCI, whose tags and digests make
// poor file names, the repository's last component, "-" and the version
// plus the format's extension. Characters spec.artifactFilename does not
// allow become "_"; a SWUpdate or RAUC name gets its required extension
// appended when it lacks it. Without a usable base name (a URL ending in
// "/") the release name and version are used.
func defaultArtifactFilename(sourceURL, releaseName, version string, format otav1.ReleaseFormat) string {
	ext := format.Extension()
	var name string
	if u, err := url.Parse(sourceURL); err == nil {
		switch u.Scheme {
		case "oci":
			repo := path.Base(u.Path)
			if i := strings.IndexByte(repo, '@'); i >= 0 {
				repo = repo[:i]
			}
			if i := strings.IndexByte(repo, ':'); i >= 0 {
				repo = repo[:i]
			}
			if repo = sanitizeFilename(repo); repo != "" {
				name = repo + "-" + sanitizeFilename(version) + ext
			}
		default:
			if !strings.HasSuffix(u.Path, "/") {
				name = sanitizeFilename(path.Base(u.Path))
			}
		}
	}
	if name == "" {
		name = sanitizeFilename(releaseName + "-" + version + ext)
	}
	required := ""
	if format.DDI() {
		required = ext
		if !strings.HasSuffix(name, ext) {
			name += ext
		}
	}
	if len(name) > maxArtifactFilename {
		// Keep the extension clients look at; shorten the stem.
		keep := required
		if keep == "" {
			if e := path.Ext(name); len(e) <= 16 {
				keep = e
			}
		}
		name = name[:maxArtifactFilename-len(keep)] + keep
	}
	return name
}

// sanitizeFilename maps s onto the characters spec.artifactFilename allows
// and drops leading characters that cannot start a name ("", ".", "..",
// ".hidden").
func sanitizeFilename(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return strings.TrimLeft(b.String(), "._-")
}
