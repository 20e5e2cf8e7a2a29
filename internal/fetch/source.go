package fetch

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"oras.land/oras-go/v2/registry"
)

// URL schemes of image sources.
const (
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
	SchemeS3    = "s3"
	SchemeOCI   = "oci"
)

var (
	// ErrUnauthorized: the server refused the request's credentials (or
	// their absence): HTTP 401 or 403, an S3 access error, a registry's
	// unauthorized answer. Not permanent: a grant may still be on its way,
	// and a changed Secret is picked up.
	ErrUnauthorized = errors.New("access denied")
	// ErrCredentials: the credentials do not fit the source's scheme (S3
	// keys for an https URL, a token for s3://). Permanent.
	ErrCredentials = errors.New("credentials do not fit the source")
	// ErrArtifact: an OCI reference names something that is not a single
	// firmware image (an index, no layer, several candidate layers).
	// Permanent.
	ErrArtifact = errors.New("unusable OCI artifact")
)

// DigestMismatchError reports an OCI layer whose digest is not the pinned
// SHA-256, found from the manifest before the layer is downloaded.
type DigestMismatchError struct {
	Want, Got string // hex SHA-256
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("image layer sha256 is %s, the pinned sha256 is %s", e.Got, e.Want)
}

// Source is one image to fetch.
type Source struct {
	// URL is http(s)://…, s3://bucket/key or
	// oci://registry/repository{:tag|@sha256:…}.
	URL string
	// SHA256 is the pinned digest (hex), if known. An OCI layer whose
	// digest is another SHA-256 is refused before it is downloaded; the
	// caller still checks the bytes.
	SHA256 string
	// ExpectedSize is the exact size; < 0 means unknown.
	ExpectedSize int64
	// Credentials authenticate to the source; nil is anonymous.
	Credentials *Credentials
	// S3 configures s3:// URLs.
	S3 S3Options
	// OCI configures oci:// URLs.
	OCI OCIOptions
}

// S3Options locate the S3 API, with blobopen's defaults.
type S3Options struct {
	// Endpoint is host[:port]; default s3.<region>.amazonaws.com, or
	// s3.amazonaws.com without a region.
	Endpoint string
	// Region signs requests; default us-east-1.
	Region string
	// Insecure selects plain HTTP.
	Insecure bool
}

// OCIOptions configure registry access.
type OCIOptions struct {
	// Insecure selects plain HTTP.
	Insecure bool
}

// Credentials for a source. Basic (Username and Password) or Token for
// http, https and oci; AccessKeyID, SecretAccessKey and SessionToken for
// s3. They never appear in errors: formatting prints a placeholder, and
// errors are scrubbed of their values.
type Credentials struct {
	Username, Password                         string
	Token                                      string
	AccessKeyID, SecretAccessKey, SessionToken string
}

// String keeps credentials out of logs and messages.
func (c Credentials) String() string { return "[redacted credentials]" }

// GoString keeps credentials out of %#v.
func (c Credentials) GoString() string { return c.String() }

// MarshalLog keeps credentials out of logr output.
func (c Credentials) MarshalLog() any { return c.String() }

func (c *Credentials) basic() bool { return c.Username != "" || c.Password != "" }
func (c *Credentials) s3() bool {
	return c.AccessKeyID != "" || c.SecretAccessKey != "" || c.SessionToken != ""
}

// fits checks that credentials suit the scheme; the Secret's own rules are
// the caller's (controllers), this is the last line.
func (c *Credentials) fits(scheme string) error {
	if c == nil {
		return nil
	}
	switch scheme {
	case SchemeS3:
		if c.basic() || c.Token != "" {
			return fmt.Errorf("%w: s3:// takes an access key, not a user name, password or token", ErrCredentials)
		}
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return fmt.Errorf("%w: s3:// needs both an access key ID and a secret access key", ErrCredentials)
		}
	default:
		if c.s3() {
			return fmt.Errorf("%w: %s:// takes a user name and password or a token, not S3 keys", ErrCredentials, scheme)
		}
		if c.basic() && c.Token != "" {
			return fmt.Errorf("%w: a user name and password, or a token, not both", ErrCredentials)
		}
		if !c.basic() && c.Token == "" {
			return fmt.Errorf("%w: empty credentials", ErrCredentials)
		}
	}
	return nil
}

// secrets lists the values that must never appear in a message, with the
// encodings they travel in.
func (c *Credentials) secrets() []string {
	var out []string
	add := func(v string) {
		// Very short values would mangle messages more than they
		// protect.
		if len(v) >= 4 {
			out = append(out, v)
		}
	}
	add(c.Password)
	add(c.Token)
	add(c.SecretAccessKey)
	add(c.SessionToken)
	add(c.AccessKeyID)
	if c.basic() {
		add(base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)))
	}
	return out
}

// scrubbedError replaces a message that contained credentials; Unwrap keeps
// the chain for errors.Is and errors.As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub removes credential values from err's message: servers echo what
// they were sent in their error bodies.
func scrub(err error, c *Credentials) error {
	if err == nil || c == nil {
		return err
	}
	msg := err.Error()
	changed := false
	for _, v := range c.secrets() {
		if strings.Contains(msg, v) {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// Image is an open image stream.
type Image struct {
	// Body is capped at the expected size or the limit, fails after the
	// idle read timeout, and must be closed.
	Body io.ReadCloser
	// Size is the announced size, or -1.
	Size int64
	// ManifestDigest is the OCI manifest the image layer was taken from
	// ("sha256:…"), what a tag resolved to; empty for other schemes.
	ManifestDigest string
}

// Location is a parsed source URL.
type Location struct {
	Scheme string
	// URL is the http(s) URL.
	URL *url.URL
	// Bucket and Key of an s3:// URL (the key unescaped).
	Bucket, Key string
	// Registry (host[:port]), Repository, and Tag or Digest of an oci://
	// URL.
	Registry, Repository, Tag, Digest string
}

// Reference is the OCI reference, registry/repository:tag or @digest.
func (l *Location) Reference() string {
	ref := l.Registry + "/" + l.Repository
	if l.Digest != "" {
		return ref + "@" + l.Digest
	}
	return ref + ":" + l.Tag
}

// ParseLocation parses a source URL without touching the network. Errors
// wrap ErrInvalidURL or ErrUnsupportedScheme and never repeat credentials.
func ParseLocation(rawURL string) (*Location, error) {
	if strings.ContainsFunc(rawURL, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("fetch: %w: control characters", ErrInvalidURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w: %s", ErrInvalidURL, parseErrorReason(err))
	}
	switch u.Scheme {
	case SchemeHTTP, SchemeHTTPS:
		if u.Host == "" {
			return nil, fmt.Errorf("fetch %s: %w: missing host", redact(u), ErrInvalidURL)
		}
		return &Location{Scheme: u.Scheme, URL: u}, nil
	case SchemeS3:
		return parseS3(u)
	case SchemeOCI:
		return parseOCI(u)
	case "":
		return nil, fmt.Errorf("fetch %s: %w: missing scheme", redact(u), ErrInvalidURL)
	default:
		return nil, fmt.Errorf("fetch %s: %w %q: use http, https, s3 or oci", redact(u), ErrUnsupportedScheme, u.Scheme)
	}
}

func parseS3(u *url.URL) (*Location, error) {
	bad := func(why string) (*Location, error) {
		return nil, fmt.Errorf("fetch %s: %w: %s", redact(u), ErrInvalidURL, why)
	}
	switch {
	case u.User != nil:
		return bad("credentials belong in the source's Secret, not the URL")
	case u.Opaque != "" || u.Host == "":
		return bad("want s3://bucket/key")
	case u.Port() != "":
		return bad("the host of an s3 URL is the bucket; give the server as the s3 endpoint")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return bad("an s3 URL has no query or fragment; endpoint and region are source fields")
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return bad(fmt.Sprintf("bucket %q: %v", u.Host, err))
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key == "" || strings.HasSuffix(key, "/") {
		return bad("want s3://bucket/key, naming an object")
	}
	if err := s3utils.CheckValidObjectName(key); err != nil {
		return bad(fmt.Sprintf("key: %v", err))
	}
	return &Location{Scheme: SchemeS3, Bucket: u.Host, Key: key}, nil
}

func parseOCI(u *url.URL) (*Location, error) {
	bad := func(why string) (*Location, error) {
		return nil, fmt.Errorf("fetch %s: %w: %s", redact(u), ErrInvalidURL, why)
	}
	switch {
	case u.User != nil:
		return bad("credentials belong in the source's Secret, not the URL")
	case u.Opaque != "" || u.Host == "":
		return bad("want oci://registry/repository:tag or @sha256:digest")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return bad("an oci URL has no query or fragment")
	case u.RawPath != "":
		return bad("an oci reference has no escaped characters")
	}
	path := strings.TrimPrefix(u.Path, "/")
	loc := &Location{Scheme: SchemeOCI, Registry: u.Host}
	repo := path
	if at := strings.IndexByte(path, '@'); at >= 0 {
		repo, loc.Digest = path[:at], path[at+1:]
		if !strings.HasPrefix(loc.Digest, "sha256:") {
			return bad("the digest must be sha256:<64 hex>")
		}
	}
	if colon := strings.LastIndexByte(repo, ':'); colon > strings.LastIndexByte(repo, '/') {
		repo, loc.Tag = repo[:colon], repo[colon+1:]
		if loc.Digest != "" {
			return bad("give a tag or a digest, not both")
		}
	}
	loc.Repository = repo
	if loc.Tag == "" && loc.Digest == "" {
		return bad("the reference needs a :tag or an @sha256: digest")
	}
	ref := registry.Reference{Registry: loc.Registry, Repository: loc.Repository, Reference: loc.Tag + loc.Digest}
	// The parser's own messages quote the reference; ours name the part.
	if ref.ValidateRegistry() != nil {
		return bad("invalid registry host")
	}
	if ref.ValidateRepository() != nil {
		return bad("invalid repository name (lowercase letters, digits and separators)")
	}
	if ref.ValidateReference() != nil {
		if loc.Digest != "" {
			return bad("the digest must be sha256:<64 lowercase hex>")
		}
		return bad("invalid tag")
	}
	return loc, nil
}

// Fetch opens the image src names. expected sizes, the size limit and the
// idle timeout are enforced as described on Image.Body; an announced size
// that breaks them is refused before any byte is read. Errors never contain
// credentials, URL user information or query strings.
func (f *Fetcher) Fetch(ctx context.Context, src Source) (*Image, error) {
	loc, err := ParseLocation(src.URL)
	if err != nil {
		return nil, err
	}
	if src.ExpectedSize > f.maxBytes {
		return nil, fmt.Errorf("fetch %s: %w", RedactURL(src.URL), &TooLargeError{Limit: f.maxBytes, Size: src.ExpectedSize})
	}
	if err := src.Credentials.fits(loc.Scheme); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", RedactURL(src.URL), err)
	}
	var img *Image
	switch loc.Scheme {
	case SchemeS3:
		img, err = f.openS3(ctx, loc, src)
	case SchemeOCI:
		img, err = f.openOCI(ctx, loc, src)
	default:
		img, err = f.openHTTP(ctx, loc.URL, src)
	}
	return img, scrub(err, src.Credentials)
}
