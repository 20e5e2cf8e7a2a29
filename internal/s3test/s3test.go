// Package s3test runs a real S3 server for tests: versitygw, built from Go
// modules into bin/s3 by hack/build-s3.sh (make s3server), serving a temp
// directory on a free loopback port.
//
// Set OTAFLOW_TEST_S3_ENDPOINT (host:port) to test against an external S3
// instead, with OTAFLOW_TEST_S3_ACCESS_KEY and OTAFLOW_TEST_S3_SECRET_KEY
// (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and optionally
// OTAFLOW_TEST_S3_REGION and OTAFLOW_TEST_S3_INSECURE=true for plain HTTP.
// Each test gets its own bucket, which is emptied and removed afterwards.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// BinaryEnv overrides the versitygw binary to run.
	BinaryEnv = "OTAFLOW_TEST_S3_BINARY"
	// EndpointEnv selects an external S3 endpoint (host:port) instead.
	EndpointEnv = "OTAFLOW_TEST_S3_ENDPOINT"

	healthPath   = "/health"
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is an S3 endpoint for tests.
type Server struct {
	// Endpoint is host:port, without scheme.
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	// Insecure is true when the endpoint speaks plain HTTP.
	Insecure bool
	// External is true when the endpoint came from OTAFLOW_TEST_S3_ENDPOINT.
	External bool

	client *minio.Client
}

// Credentials returns static credentials for the server's account.
func (s *Server) Credentials() *credentials.Credentials {
	return credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")
}

// Client returns a minio-go client for the server, for assertions that go
// around the code under test.
func (s *Server) Client() *minio.Client { return s.client }

// Start returns a running server for t: the external endpoint when
// OTAFLOW_TEST_S3_ENDPOINT is set, else a versitygw process that is stopped
// when t ends. It fails t, never skips it, when versitygw is not built.
func Start(t testing.TB) *Server {
	t.Helper()
	if ep := os.Getenv(EndpointEnv); ep != "" {
		return external(t, ep)
	}
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	// The port is picked by listening and closing, so another process can
	// take it before versitygw binds; retry on an early exit.
	var lastErr error
	for range 3 {
		s, err := startVersity(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return nil
}

// NewBucket creates an empty bucket with a unique name and removes it, with
// everything in it, when t ends.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "otaflow-test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.removeBucket(name); err != nil {
			t.Errorf("remove bucket %s: %v", name, err)
		}
	})
	return name
}

func (s *Server) removeBucket(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objects := s.client.ListObjects(ctx, name, minio.ListObjectsOptions{Recursive: true})
	for res := range s.client.RemoveObjectsWithResult(ctx, name, objects, minio.RemoveObjectsOptions{}) {
		if res.Err != nil {
			return res.Err
		}
	}
	for up := range s.client.ListIncompleteUploads(ctx, name, "", true) {
		if up.Err != nil {
			return up.Err
		}
		if err := s.client.RemoveIncompleteUpload(ctx, name, up.Key); err != nil {
			return err
		}
	}
	return s.client.RemoveBucket(ctx, name)
}

func external(t testing.TB, endpoint string) *Server {
	t.Helper()
	s := &Server{
		Endpoint:  endpoint,
		AccessKey: firstEnv("OTAFLOW_TEST_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
		SecretKey: firstEnv("OTAFLOW_TEST_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
		Region:    firstEnv("OTAFLOW_TEST_S3_REGION", "AWS_REGION"),
		External:  true,
	}
	if s.Region == "" {
		s.Region = "us-east-1"
	}
	if v := os.Getenv("OTAFLOW_TEST_S3_INSECURE"); v != "" {
		insecure, err := strconv.ParseBool(v)
		if err != nil {
			t.Fatalf("OTAFLOW_TEST_S3_INSECURE=%q: %v", v, err)
		}
		s.Insecure = insecure
	}
	if s.AccessKey == "" || s.SecretKey == "" {
		t.Fatalf("%s is set, but OTAFLOW_TEST_S3_ACCESS_KEY/OTAFLOW_TEST_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) are not", EndpointEnv)
	}
	if err := s.connect(); err != nil {
		t.Fatalf("external S3 %s: %v", endpoint, err)
	}
	return s
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// binary finds versitygw: $OTAFLOW_TEST_S3_BINARY, else bin/s3/versitygw in
// the module root.
func binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", BinaryEnv, err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return binaryIn(root)
}

func binaryIn(root string) (string, error) {
	p := filepath.Join(root, "bin", "s3", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the S3 test server is not built (%v): run `make s3server` "+
			"(or hack/build-s3.sh) once, set %s to a versitygw binary, or %s to an external S3 endpoint",
			err, BinaryEnv, EndpointEnv)
	}
	return p, nil
}

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// moduleRoot walks up from the test's working directory (its package
// directory) to the directory holding go.mod.
func moduleRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("s3test: no go.mod above the working directory")
				return
			}
			dir = parent
		}
	})
	return root, rootErr
}

func startVersity(t testing.TB, bin string) (*Server, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor

	var key [12]byte
	_, _ = rand.Read(key[:])
	s := &Server{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AccessKey: "otaflowtest",
		SecretKey: hex.EncodeToString(key[:]),
		Region:    "us-east-1",
		Insecure:  true,
	}
	cmd := exec.Command(bin,
		"--port", s.Endpoint,
		"--region", s.Region,
		"--health", healthPath,
		"--quiet",
		"posix", dataDir)
	// Credentials through the environment keep them out of ps output.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if err := waitReady(s, exited); err != nil {
		stop()
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; versitygw output:\n%s", err, out)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			if out, _ := os.ReadFile(logPath); len(out) > 0 {
				t.Logf("versitygw output:\n%s", out)
			}
		}
	})
	if err := s.connect(); err != nil {
		stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls the health endpoint until versitygw answers or exits.
func waitReady(s *Server, exited <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + s.Endpoint + healthPath
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("versitygw exited before becoming ready: %v", err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw not ready after %v: %v", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) connect() error {
	client, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  s.Credentials(),
		Secure: !s.Insecure,
		Region: s.Region,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.ListBuckets(ctx); err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	s.client = client
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL returns an s3:// URL for bucket and prefix, as blobopen parses it,
// without credentials.
func (s *Server) URL(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix != "" {
		u += "/" + strings.TrimPrefix(prefix, "/")
	}
	u += "?endpoint=" + s.Endpoint + "&region=" + s.Region
	if s.Insecure {
		u += "&insecure=true"
	}
	return u
}
