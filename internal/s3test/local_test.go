package s3test

import (
	"context"
	"testing"
	"time"
)

func TestStartLocal(t *testing.T) {
	l, err := StartLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.CreateBucket(ctx, "otaflow-local"); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Client().BucketExists(ctx, "otaflow-local"); err != nil || !ok {
		t.Fatalf("bucket exists: %v %v", ok, err)
	}
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
