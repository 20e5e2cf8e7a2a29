package s3test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestServer(t *testing.T) {
	srv := Start(t)
	bucket := srv.NewBucket(t)
	c := srv.Client()
	content := []byte("hello")
	if _, err := c.PutObject(t.Context(), bucket, "a/b", bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	obj, err := c.GetObject(t.Context(), bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read %q, %v", got, err)
	}
	// Buckets are per test: another one starts empty.
	other := srv.NewBucket(t)
	for oi := range c.ListObjects(t.Context(), other, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("new bucket holds %q (err %v)", oi.Key, oi.Err)
	}
}

func TestMissingBinaryNamesTheFix(t *testing.T) {
	_, err := binaryIn(t.TempDir())
	if err == nil {
		t.Fatal("binaryIn(empty dir) succeeded")
	}
	for _, want := range []string{"make s3server", "hack/build-s3.sh", BinaryEnv, EndpointEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	t.Setenv(BinaryEnv, "/nonexistent/versitygw")
	if _, err := binary(); err == nil || !strings.Contains(err.Error(), BinaryEnv) {
		t.Errorf("binary() with a missing %s: error = %v", BinaryEnv, err)
	}
}
