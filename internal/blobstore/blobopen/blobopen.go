// Package blobopen opens a blobstore.Store named by a URL, so that binaries
// take one --blob-store flag whatever the backend:
//
//	/var/lib/otaflow/blobs                   filesystem store (a bare path)
//	file:///var/lib/otaflow/blobs            the same
//	s3://bucket[/prefix]?endpoint=host:port&region=eu-west-1
//
// s3:// parameters:
//
//	endpoint            host[:port] of the S3 API; default s3.<region>.amazonaws.com
//	region              bucket region; default us-east-1
//	insecure            "true" for plain HTTP (test servers only)
//	access_key_file     file holding the access key ID        } both or neither; for
//	secret_key_file     file holding the secret access key    } Secrets mounted as files
//	session_token_file  file holding a session token (optional)
//	temp_dir            spool directory for uploads; default os.TempDir()
//
// Without the *_file parameters, credentials come from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. Credentials in the URL itself
// are refused: URLs end up in logs, flags and object status.
package blobopen

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/s3"
)

// Scheme names.
const (
	SchemeFile = "file"
	SchemeS3   = "s3"
)

// credentialFileRefresh is how long credentials read from files are used
// before the files are read again; Kubernetes updates mounted Secrets in
// place, so rotated keys are picked up without a restart.
const credentialFileRefresh = time.Minute

// Config is a parsed store URL.
type Config struct {
	// Scheme is SchemeFile or SchemeS3.
	Scheme string
	// Path is the root of a filesystem store.
	Path string
	// S3 holds the options of an S3 store, without Credentials.
	S3 s3.Options
	// AccessKeyFile, SecretKeyFile and SessionTokenFile name files holding
	// the S3 credentials; empty means the environment.
	AccessKeyFile    string
	SecretKeyFile    string
	SessionTokenFile string
}

// s3Params are the query parameters an s3:// URL may carry.
var s3Params = map[string]bool{
	"endpoint":           true,
	"region":             true,
	"insecure":           true,
	"access_key_file":    true,
	"secret_key_file":    true,
	"session_token_file": true,
	"temp_dir":           true,
}

// credentialParams are parameter names people use for inline credentials.
var credentialParams = []string{
	"access_key", "accesskey", "access_key_id", "aws_access_key_id",
	"secret", "secret_key", "secretkey", "secret_access_key", "aws_secret_access_key",
	"session_token", "token", "aws_session_token", "password",
	"x-amz-credential", "x-amz-signature", "x-amz-security-token",
}

var errCredentialsInURL = errors.New("credentials must not be part of the URL (it ends up in logs and flags): " +
	"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_file and secret_key_file")

// Parse parses a store URL without touching the filesystem or network.
func Parse(rawURL string) (Config, error) {
	if rawURL == "" {
		return Config{}, errors.New("empty blob store URL")
	}
	if strings.ContainsFunc(rawURL, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Config{}, errors.New("blob store URL contains control characters")
	}
	if isBarePath(rawURL) {
		return Config{Scheme: SchemeFile, Path: filepath.Clean(rawURL)}, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, fmt.Errorf("parse blob store URL: %w", err)
	}
	if u.User != nil {
		return Config{}, errCredentialsInURL
	}
	if u.Fragment != "" || u.RawFragment != "" || strings.HasSuffix(rawURL, "#") {
		return Config{}, errors.New("blob store URL must not have a fragment")
	}
	switch strings.ToLower(u.Scheme) {
	case SchemeFile:
		return parseFile(u)
	case SchemeS3:
		return parseS3(u)
	default:
		return Config{}, fmt.Errorf("unsupported blob store URL scheme %q: want file:// or s3:// (or a bare path)", u.Scheme)
	}
}

// isBarePath reports whether s is a filesystem path rather than a URL: it
// is one when it has no scheme, that is no ":" before the first "/".
func isBarePath(s string) bool {
	colon := strings.IndexByte(s, ':')
	slash := strings.IndexByte(s, '/')
	return colon < 0 || (slash >= 0 && slash < colon)
}

func parseFile(u *url.URL) (Config, error) {
	if u.Opaque != "" {
		return Config{}, errors.New("file URL must be file:///absolute/path")
	}
	if u.Host != "" && u.Host != "localhost" {
		return Config{}, fmt.Errorf("file URL must be file:///absolute/path, not on host %q", u.Host)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return Config{}, errors.New("file URL takes no query parameters")
	}
	if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
		return Config{}, errors.New("file URL must name an absolute path")
	}
	return Config{Scheme: SchemeFile, Path: filepath.Clean(u.Path)}, nil
}

func parseS3(u *url.URL) (Config, error) {
	if u.Opaque != "" || u.Host == "" {
		return Config{}, errors.New("S3 URL must be s3://bucket[/prefix]")
	}
	if u.Port() != "" {
		return Config{}, errors.New("S3 URL host is the bucket; give the server as ?endpoint=host:port")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("S3 URL query: %w", err)
	}
	for name, values := range q {
		lower := strings.ToLower(name)
		for _, c := range credentialParams {
			if lower == c {
				return Config{}, errCredentialsInURL
			}
		}
		if !s3Params[name] {
			return Config{}, fmt.Errorf("unknown S3 URL parameter %q", name)
		}
		if len(values) != 1 {
			return Config{}, fmt.Errorf("S3 URL parameter %q given %d times", name, len(values))
		}
	}
	c := Config{
		Scheme:           SchemeS3,
		AccessKeyFile:    q.Get("access_key_file"),
		SecretKeyFile:    q.Get("secret_key_file"),
		SessionTokenFile: q.Get("session_token_file"),
		S3: s3.Options{
			Endpoint: q.Get("endpoint"),
			Region:   q.Get("region"),
			Bucket:   u.Host,
			Prefix:   strings.Trim(u.Path, "/"),
			TempDir:  q.Get("temp_dir"),
		},
	}
	if c.S3.Endpoint == "" {
		c.S3.Endpoint = "s3.amazonaws.com"
		if c.S3.Region != "" {
			c.S3.Endpoint = "s3." + c.S3.Region + ".amazonaws.com"
		}
	}
	if v := q.Get("insecure"); v != "" {
		c.S3.Insecure, err = strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("S3 URL parameter insecure=%q: want true or false", v)
		}
	}
	if (c.AccessKeyFile == "") != (c.SecretKeyFile == "") {
		return Config{}, errors.New("S3 URL needs both access_key_file and secret_key_file, or neither")
	}
	if c.SessionTokenFile != "" && c.AccessKeyFile == "" {
		return Config{}, errors.New("S3 URL session_token_file needs access_key_file and secret_key_file")
	}
	if err := c.S3.Validate(); err != nil {
		return Config{}, fmt.Errorf("S3 URL: %w", err)
	}
	return c, nil
}

// Open opens the store rawURL names. An S3 store checks at once that its
// bucket is reachable with the configured credentials.
func Open(ctx context.Context, rawURL string) (blobstore.Store, error) {
	c, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch c.Scheme {
	case SchemeFile:
		return blobstore.NewFS(c.Path)
	case SchemeS3:
		creds, err := c.credentials()
		if err != nil {
			return nil, err
		}
		opts := c.S3
		opts.Credentials = creds
		return s3.New(ctx, opts)
	}
	return nil, fmt.Errorf("unsupported blob store scheme %q", c.Scheme)
}

func (c Config) credentials() (*credentials.Credentials, error) {
	if c.AccessKeyFile != "" {
		p := &fileProvider{access: c.AccessKeyFile, secret: c.SecretKeyFile, token: c.SessionTokenFile}
		// Read once now so that a missing or empty file fails Open.
		if _, err := p.Retrieve(); err != nil {
			return nil, err
		}
		return credentials.New(p), nil
	}
	access, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if access == "" || secret == "" {
		return nil, errors.New("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
			"or access_key_file and secret_key_file in the URL")
	}
	return credentials.NewStaticV4(access, secret, os.Getenv("AWS_SESSION_TOKEN")), nil
}

// fileProvider reads credentials from files and reads them again after
// credentialFileRefresh.
type fileProvider struct {
	access, secret, token string

	mu     sync.Mutex
	readAt time.Time
}

func (p *fileProvider) Retrieve() (credentials.Value, error) {
	v := credentials.Value{SignerType: credentials.SignatureV4}
	var err error
	if v.AccessKeyID, err = readSecretFile(p.access); err != nil {
		return credentials.Value{}, err
	}
	if v.SecretAccessKey, err = readSecretFile(p.secret); err != nil {
		return credentials.Value{}, err
	}
	if p.token != "" {
		if v.SessionToken, err = readSecretFile(p.token); err != nil {
			return credentials.Value{}, err
		}
	}
	p.mu.Lock()
	p.readAt = time.Now()
	p.mu.Unlock()
	return v, nil
}

func (p *fileProvider) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	return p.Retrieve()
}

func (p *fileProvider) IsExpired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.readAt) >= credentialFileRefresh
}

// readSecretFile returns the trimmed content of a credential file. Errors
// name the file, never its content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read S3 credential file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("S3 credential file %s is empty", path)
	}
	return v, nil
}
