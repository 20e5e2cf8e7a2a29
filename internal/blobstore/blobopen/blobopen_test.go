package blobopen

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/blobstore/blobstoretest"
	"github.com/otaflow/otaflow/internal/blobstore/s3"
	"github.com/otaflow/otaflow/internal/s3test"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Config
	}{
		{"/var/lib/otaflow/blobs", Config{Scheme: SchemeFile, Path: "/var/lib/otaflow/blobs"}},
		{"/var/lib/../lib/otaflow/blobs/", Config{Scheme: SchemeFile, Path: "/var/lib/otaflow/blobs"}},
		{"relative/blobs", Config{Scheme: SchemeFile, Path: "relative/blobs"}},
		{"./with:colon", Config{Scheme: SchemeFile, Path: "with:colon"}},
		{"/path/with?query#and-hash", Config{Scheme: SchemeFile, Path: "/path/with?query#and-hash"}},
		{"file:///var/lib/otaflow/blobs", Config{Scheme: SchemeFile, Path: "/var/lib/otaflow/blobs"}},
		{"file://localhost/srv/blobs", Config{Scheme: SchemeFile, Path: "/srv/blobs"}},
		{"file:///srv/with%20space", Config{Scheme: SchemeFile, Path: "/srv/with space"}},
		{"FILE:///srv/blobs", Config{Scheme: SchemeFile, Path: "/srv/blobs"}},
		{"s3://images", Config{Scheme: SchemeS3, S3: s3.Options{Endpoint: "s3.amazonaws.com", Bucket: "images"}}},
		{"s3://images?region=eu-west-1", Config{Scheme: SchemeS3, S3: s3.Options{
			Endpoint: "s3.eu-west-1.amazonaws.com", Region: "eu-west-1", Bucket: "images"}}},
		{"s3://images/fleet/a/?endpoint=minio.storage:9000&insecure=true&temp_dir=/spool", Config{Scheme: SchemeS3, S3: s3.Options{
			Endpoint: "minio.storage:9000", Insecure: true, Bucket: "images", Prefix: "fleet/a", TempDir: "/spool"}}},
		{"s3://images?endpoint=10.0.0.1:9000&access_key_file=/s/ak&secret_key_file=/s/sk&session_token_file=/s/t", Config{
			Scheme: SchemeS3, AccessKeyFile: "/s/ak", SecretKeyFile: "/s/sk", SessionTokenFile: "/s/t",
			S3: s3.Options{Endpoint: "10.0.0.1:9000", Bucket: "images"}}},
		{"s3://images?endpoint=[::1]:9000&insecure=false", Config{Scheme: SchemeS3, S3: s3.Options{
			Endpoint: "[::1]:9000", Bucket: "images"}}},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) =\n  %+v\nwant\n  %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "empty"},
		{"/blobs\n", "control characters"},
		{"http://example.com/blobs", "unsupported blob store URL scheme"},
		{"gs://bucket", "unsupported blob store URL scheme"},
		{"s3:bucket", "s3://bucket[/prefix]"},
		{"s3://", "s3://bucket[/prefix]"},
		{"s3:///prefix", "s3://bucket[/prefix]"},
		{"s3://bucket:9000", "?endpoint=host:port"},
		{"s3://AKIAEXAMPLE:secret@bucket", "credentials must not be part of the URL"},
		{"s3://AKIAEXAMPLE@bucket", "credentials must not be part of the URL"},
		{"s3://bucket?access_key=AKIA&secret_key=s", "credentials must not be part of the URL"},
		{"s3://bucket?AWS_SECRET_ACCESS_KEY=s", "credentials must not be part of the URL"},
		{"s3://bucket?X-Amz-Credential=x", "credentials must not be part of the URL"},
		{"s3://bucket?token=t", "credentials must not be part of the URL"},
		{"s3://bucket?endpont=host", `unknown S3 URL parameter "endpont"`},
		{"s3://bucket?region=a&region=b", "given 2 times"},
		{"s3://bucket?insecure=yes", "want true or false"},
		{"s3://bucket?endpoint=http://minio:9000", "without scheme"},
		{"s3://bucket?endpoint=minio:9000/path", "without path"},
		{"s3://bucket?access_key_file=/s/ak", "both access_key_file and secret_key_file"},
		{"s3://bucket?secret_key_file=/s/sk", "both access_key_file and secret_key_file"},
		{"s3://bucket?session_token_file=/s/t", "session_token_file needs"},
		{"s3://Bad_Bucket", "bucket"},
		{"s3://ab", "bucket"},
		{"s3://bucket/a/../b", "invalid key prefix"},
		{"s3://bucket/a//b", "invalid key prefix"},
		{"s3://bucket#frag", "fragment"},
		{"s3://bucket?%zz", "query"},
		{"file://host/srv/blobs", "not on host"},
		{"file:relative", "file:///absolute/path"},
		{"file:///srv/blobs?x=1", "no query parameters"},
		{"file://", "absolute path"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
}

// TestParseErrorsHideSecrets checks that no error repeats a secret given
// in the URL.
func TestParseErrorsHideSecrets(t *testing.T) {
	for _, in := range []string{
		"s3://AKIA:hunter2secret@bucket",
		"s3://AKIA:hunter2secret@bucket:bad port",
		"s3://bucket?secret_key=hunter2secret",
		"s3://bucket?endpoint=x&secret=hunter2secret",
	} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", in)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("Parse(%q) error repeats the secret: %v", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"/var/lib/otaflow/blobs",
		"relative",
		"file:///srv/blobs",
		"file://localhost/srv",
		"s3://bucket",
		"s3://bucket/prefix/a?endpoint=minio:9000&region=eu-west-1&insecure=true",
		"s3://bucket?access_key_file=/a&secret_key_file=/b&session_token_file=/c",
		"s3://user:pass@bucket",
		"s3://bucket?secret_key=x",
		"s3://bucket/../x",
		"s3://bucket?endpoint=[::1]:9000",
		"s3://bucket#x",
		"http://x",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(in)
		if u, perr := url.Parse(in); perr == nil && u.User != nil && !isBarePath(in) && err == nil {
			t.Fatalf("Parse(%q) accepted credentials in the URL", in)
		}
		if err != nil {
			if p, ok := password(in); ok && len(p) >= 4 && strings.Contains(err.Error(), p) {
				t.Fatalf("Parse(%q) error repeats the password: %v", in, err)
			}
			return
		}
		switch c.Scheme {
		case SchemeFile:
			if c.Path == "" || c.Path != filepath.Clean(c.Path) {
				t.Fatalf("Parse(%q) path %q is not clean", in, c.Path)
			}
		case SchemeS3:
			if err := c.S3.Validate(); err != nil {
				t.Fatalf("Parse(%q) returned invalid options: %v", in, err)
			}
			if c.S3.Credentials != nil {
				t.Fatalf("Parse(%q) set credentials", in)
			}
		default:
			t.Fatalf("Parse(%q) scheme = %q", in, c.Scheme)
		}
		// Parsing is deterministic.
		if again, err := Parse(in); err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("Parse(%q) not deterministic", in)
		}
	})
}

func password(in string) (string, bool) {
	u, err := url.Parse(in)
	if err != nil || u.User == nil {
		return "", false
	}
	return u.User.Password()
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	for _, raw := range []string{filepath.Join(dir, "bare"), "file://" + filepath.Join(dir, "url")} {
		s, err := Open(t.Context(), raw)
		if err != nil {
			t.Fatalf("Open(%q): %v", raw, err)
		}
		if _, ok := s.(*blobstore.FS); !ok {
			t.Fatalf("Open(%q) = %T, want *blobstore.FS", raw, s)
		}
		info := blobstoretest.Put(t, s, []byte("on disk"))
		if got := blobstoretest.ReadBlob(t, s, info.Digest); string(got) != "on disk" {
			t.Errorf("read back %q", got)
		}
	}
}

func TestOpenS3(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)

	t.Run("environment credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		t.Setenv("AWS_SESSION_TOKEN", "")
		s, err := Open(t.Context(), srv.URL(bucket, "env"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if _, ok := s.(*s3.Store); !ok {
			t.Fatalf("Open = %T, want *s3.Store", s)
		}
		if _, ok := s.(blobstore.Presigner); !ok {
			t.Error("S3 store is not a Presigner")
		}
		blobstoretest.Put(t, s, []byte("via env"))
	})

	t.Run("credential files", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		dir := t.TempDir()
		ak, sk := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
		// Secrets often end with a newline.
		writeFile(t, ak, srv.AccessKey+"\n")
		writeFile(t, sk, srv.SecretKey+"\n")
		raw := srv.URL(bucket, "files") + "&access_key_file=" + url.QueryEscape(ak) + "&secret_key_file=" + url.QueryEscape(sk)
		s, err := Open(t.Context(), raw)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		blobstoretest.Put(t, s, []byte("via files"))

		writeFile(t, sk, "")
		if _, err := Open(t.Context(), raw); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("Open with empty secret file: error = %v", err)
		}
		writeFile(t, sk, "wrong-secret")
		if _, err := Open(t.Context(), raw); err == nil {
			t.Error("Open with a wrong secret succeeded")
		} else if strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("error repeats the secret: %v", err)
		}
		if err := os.Remove(ak); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(t.Context(), raw); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open with missing access key file: error = %v, want ErrNotExist", err)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		if _, err := Open(t.Context(), srv.URL(bucket, "")); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Errorf("Open without credentials: error = %v, want one naming AWS_ACCESS_KEY_ID", err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
