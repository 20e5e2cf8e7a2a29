package fetch_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/otaflow/otaflow/internal/fetch"
)

const dgst = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestParseLocation(t *testing.T) {
	for raw, want := range map[string]fetch.Location{
		"s3://firmware/releases/sensor%202.1.0.bin": {Scheme: "s3", Bucket: "firmware", Key: "releases/sensor 2.1.0.bin"},
		"s3://fw.example-bucket/a/b/c.bin":          {Scheme: "s3", Bucket: "fw.example-bucket", Key: "a/b/c.bin"},
		"oci://ghcr.io/acme/firmware/sensor:2.1.0":  {Scheme: "oci", Registry: "ghcr.io", Repository: "acme/firmware/sensor", Tag: "2.1.0"},
		"oci://localhost:5000/fw@" + dgst:           {Scheme: "oci", Registry: "localhost:5000", Repository: "fw", Digest: dgst},
		"oci://10.0.0.5:5000/a__b/c-d.e:v1_2":       {Scheme: "oci", Registry: "10.0.0.5:5000", Repository: "a__b/c-d.e", Tag: "v1_2"},
	} {
		got, err := fetch.ParseLocation(raw)
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if got.Scheme != want.Scheme || got.Bucket != want.Bucket || got.Key != want.Key || got.Registry != want.Registry ||
			got.Repository != want.Repository || got.Tag != want.Tag || got.Digest != want.Digest {
			t.Errorf("%s parsed as %+v, want %+v", raw, got, want)
		}
	}
	for _, raw := range []string{"https://firmware.example.com/fw.bin?sig=abc", "http://[::1]:8080/fw.bin"} {
		got, err := fetch.ParseLocation(raw)
		if err != nil || got.URL == nil || got.URL.String() != raw {
			t.Errorf("%s: %+v, %v", raw, got, err)
		}
	}

	for raw, msg := range map[string]string{
		"s3://firmware":                            "want s3://bucket/key",
		"s3://firmware/":                           "want s3://bucket/key",
		"s3://firmware/dir/":                       "naming an object",
		"s3://firmware:9000/fw.bin":                "the host of an s3 URL is the bucket",
		"s3://firmware/fw.bin?endpoint=minio:9000": "no query or fragment",
		"s3://Firm_Ware/fw.bin":                    "bucket",
		"s3://AKIAEXAMPLE:hunter22@firmware/fw":    "credentials belong in the source's Secret",
		"s3:firmware/fw.bin":                       "want s3://bucket/key",
		"oci://ghcr.io/acme/fw":                    "needs a :tag or an @sha256: digest",
		"oci://ghcr.io/acme/fw:1.0@" + dgst:        "a tag or a digest, not both",
		"oci://ghcr.io/acme/fw@sha512:abcd":        "sha256",
		"oci://ghcr.io/acme/fw@sha256:abcd":        "sha256:<64 lowercase hex>",
		"oci://ghcr.io/Acme/fw:1":                  "invalid repository name",
		"oci://ghcr.io/acme/fw:-bad":               "invalid tag",
		"oci://robot:hunter22@ghcr.io/acme/fw:1":   "credentials belong in the source's Secret",
		"oci://ghcr.io/acme/fw:1#frag":             "no query or fragment",
		"oci://ghcr.io/acme%2Ffw:1":                "no escaped characters",
		"oci:///acme/fw:1":                         "want oci://registry",
		"ftp://example.com/fw":                     "use http, https, s3 or oci",
		"example.com/fw":                           "missing scheme",
		"http:///fw":                               "missing host",
		"https://example.com/fw\x00":               "control characters",
	} {
		_, err := fetch.ParseLocation(raw)
		if err == nil {
			t.Errorf("%s accepted", raw)
			continue
		}
		if !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %q, want it to mention %q", raw, err, msg)
		}
		if !errors.Is(err, fetch.ErrInvalidURL) && !errors.Is(err, fetch.ErrUnsupportedScheme) {
			t.Errorf("%s: error %v is neither ErrInvalidURL nor ErrUnsupportedScheme", raw, err)
		}
		if strings.Contains(err.Error(), "hunter22") {
			t.Errorf("%s: error shows the password: %v", raw, err)
		}
	}
}

// FuzzParseLocation: source URLs come from release authors. Parsing never
// panics, never repeats a password, and what it accepts names the same
// location when written back out.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{
		"https://firmware.example.com/fw.bin", "http://u:p4ssw0rd@h/x?q#f",
		"s3://firmware/releases/sensor%202.1.0.bin", "s3://b/k?x", "s3://u:p4ssw0rd@b/k",
		"oci://ghcr.io/acme/fw:2.1.0", "oci://localhost:5000/fw@" + dgst, "oci://r/a:b@" + dgst,
		"oci://u:p4ssw0rd@r/a:1", "oci://[::1]:5000/a/b:c", "oci://r/a%2Fb:1", "s3://x/%zz", "oci://r/:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := fetch.ParseLocation(raw)
		if err != nil {
			if u, perr := url.Parse(raw); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Contains(err.Error(), pw) {
					t.Fatalf("error %q repeats the password", err)
				}
			}
			if !errors.Is(err, fetch.ErrInvalidURL) && !errors.Is(err, fetch.ErrUnsupportedScheme) {
				t.Fatalf("error %v is neither ErrInvalidURL nor ErrUnsupportedScheme", err)
			}
			return
		}
		switch loc.Scheme {
		case "http", "https":
			if loc.URL == nil || loc.URL.Host == "" {
				t.Fatalf("%q: http location without host", raw)
			}
		case "s3":
			again, err := fetch.ParseLocation((&url.URL{Scheme: "s3", Host: loc.Bucket, Path: "/" + loc.Key}).String())
			if err != nil || again.Bucket != loc.Bucket || again.Key != loc.Key {
				t.Fatalf("%q → %+v does not round-trip: %+v, %v", raw, loc, again, err)
			}
		case "oci":
			if (loc.Tag == "") == (loc.Digest == "") {
				t.Fatalf("%q: tag %q and digest %q, want exactly one", raw, loc.Tag, loc.Digest)
			}
			again, err := fetch.ParseLocation("oci://" + loc.Reference())
			if err != nil || *again != *loc {
				t.Fatalf("%q → %+v does not round-trip: %+v, %v", raw, loc, again, err)
			}
		default:
			t.Fatalf("%q parsed with scheme %q", raw, loc.Scheme)
		}
	})
}

func manifestJSON(t testing.TB, layers ...ocispec.Descriptor) []byte {
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.DescriptorEmptyJSON, Layers: layers}
	m.SchemaVersion = 2
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func layer(mediaType, title, hex string, size int64) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest("sha256:" + digestFrom(hex)), Size: size}
	if title != "" {
		d.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	}
	return d
}

func digestFrom(s string) string { return strings.Repeat(s, 64)[:64] }

func TestSelectLayer(t *testing.T) {
	fw := layer("application/octet-stream", "fw.bin", "a", 10)
	notes := layer("text/plain", "NOTES.txt", "b", 5)
	marked := layer(fetch.ImageLayerMediaType, "fw.bin", "c", 10)
	for _, tc := range []struct {
		name      string
		mediaType string
		manifest  []byte
		want      string // digest hex letter, or an error fragment
	}{
		{"single layer", ocispec.MediaTypeImageManifest, manifestJSON(t, fw), "a"},
		{"marked among others", ocispec.MediaTypeImageManifest, manifestJSON(t, notes, marked, fw), "c"},
		{"empty placeholder ignored", ocispec.MediaTypeImageManifest, manifestJSON(t, ocispec.DescriptorEmptyJSON, fw), "a"},
		{"docker manifest", "application/vnd.docker.distribution.manifest.v2+json", []byte(`{"schemaVersion":2,"layers":[{"mediaType":"x","digest":"sha256:` + digestFrom("a") + `","size":10}]}`), "a"},
		{"two unmarked", ocispec.MediaTypeImageManifest, manifestJSON(t, notes, fw), `the manifest has 2 layers: "NOTES.txt" (text/plain), "fw.bin" (application/octet-stream)`},
		{"two marked", ocispec.MediaTypeImageManifest, manifestJSON(t, marked, marked), "2 layers are marked as the image"},
		{"no layers", ocispec.MediaTypeImageManifest, manifestJSON(t), "no layers"},
		{"only the placeholder", ocispec.MediaTypeImageManifest, manifestJSON(t, ocispec.DescriptorEmptyJSON), "no layers"},
		{"index", ocispec.MediaTypeImageIndex, []byte(`{}`), "image index"},
		{"unknown type", "application/json", []byte(`{}`), "unsupported manifest media type"},
		{"not JSON", ocispec.MediaTypeImageManifest, []byte(`{`), "not valid JSON"},
		{"type disagrees", ocispec.MediaTypeImageManifest, []byte(`{"mediaType":"application/vnd.oci.image.index.v1+json"}`), "manifest says media type"},
		{"bad digest", ocispec.MediaTypeImageManifest, []byte(`{"layers":[{"mediaType":"x","digest":"sha256:xyz","size":1}]}`), "layer digest"},
		{"negative size", ocispec.MediaTypeImageManifest, manifestJSON(t, layer("x", "", "a", -1)), "layer size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch.SelectLayer(tc.mediaType, tc.manifest)
			if len(tc.want) == 1 {
				if err != nil || got.Digest.Encoded() != digestFrom(tc.want) {
					t.Fatalf("got %v, %v; want layer %s", got.Digest, err, tc.want)
				}
				return
			}
			if !errors.Is(err, fetch.ErrArtifact) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrArtifact mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzSelectLayer: manifests come from registries. Selection never panics,
// and a selected layer is one of the manifest's, the only one of its kind.
func FuzzSelectLayer(f *testing.F) {
	f.Add(ocispec.MediaTypeImageManifest, string(manifestJSON(f, layer("x", "fw.bin", "a", 10))))
	f.Add(ocispec.MediaTypeImageManifest, string(manifestJSON(f, layer("text/plain", "", "b", 1), layer(fetch.ImageLayerMediaType, "", "c", 2))))
	f.Add(ocispec.MediaTypeImageManifest, `{"layers":[{"mediaType":"x","digest":"sha256:x","size":-1}]}`)
	f.Add(ocispec.MediaTypeImageIndex, `{"manifests":[]}`)
	f.Add("application/vnd.docker.distribution.manifest.v2+json", `{"layers":null}`)
	f.Fuzz(func(t *testing.T, mediaType, manifest string) {
		got, err := fetch.SelectLayer(mediaType, []byte(manifest))
		if err != nil {
			if !errors.Is(err, fetch.ErrArtifact) {
				t.Fatalf("error %v is not ErrArtifact", err)
			}
			return
		}
		var m ocispec.Manifest
		if err := json.Unmarshal([]byte(manifest), &m); err != nil {
			t.Fatalf("accepted a manifest that is not JSON: %v", err)
		}
		same := 0
		for _, l := range m.Layers {
			if l.Digest == got.Digest && l.MediaType == got.MediaType && l.Size == got.Size {
				same++
			}
		}
		if same == 0 || got.Size < 0 || got.Digest.Validate() != nil {
			t.Fatalf("selected %+v, not a valid layer of the manifest", got)
		}
	})
}
