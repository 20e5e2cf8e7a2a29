package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// Local is a versitygw process started outside a test (StartLocal), for
// tools that need a real S3 server for longer than a test: it serves a
// directory of their choosing and is stopped with Stop.
type Local struct {
	*Server
	// LogPath receives versitygw's output.
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartLocal starts versitygw ($OTAFLOW_TEST_S3_BINARY, else bin/s3 in the
// module root of the working directory) serving dir/data on a free
// loopback port, with fresh credentials, and waits until it answers. It
// dies with the calling process (parent-death signal).
func StartLocal(dir string) (*Local, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	// The port is picked by listening and closing, so another process can
	// take it before versitygw binds; retry on an early exit.
	var lastErr error
	for range 3 {
		l, err := startLocal(bin, dir)
		if err == nil {
			return l, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("s3test: start versitygw: %w", lastErr)
}

func startLocal(bin, dir string) (*Local, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "versitygw.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	var key [12]byte
	_, _ = rand.Read(key[:])
	l := &Local{
		Server: &Server{
			Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			AccessKey: "otaflowlocal",
			SecretKey: hex.EncodeToString(key[:]),
			Region:    "us-east-1",
			Insecure:  true,
		},
		LogPath: logPath,
		exited:  make(chan struct{}),
	}
	l.cmd = exec.Command(bin, "--port", l.Endpoint, "--region", l.Region, "--health", healthPath, "--quiet",
		"posix", filepath.Join(dir, "data"))
	// Credentials through the environment keep them out of ps output.
	l.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+l.AccessKey, "ROOT_SECRET_ACCESS_KEY="+l.SecretKey)
	l.cmd.Stdout, l.cmd.Stderr = logFile, logFile
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exitErr := make(chan error, 1)
	go func() { err := l.cmd.Wait(); exitErr <- err; close(l.exited) }()
	if err := waitReady(l.Server, exitErr); err != nil {
		_ = l.Stop()
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; versitygw output:\n%s", err, out)
	}
	if err := l.connect(); err != nil {
		_ = l.Stop()
		return nil, err
	}
	return l, nil
}

// CreateBucket creates an empty bucket.
func (l *Local) CreateBucket(ctx context.Context, name string) error {
	if err := l.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{Region: l.Region}); err != nil {
		return fmt.Errorf("s3test: create bucket %s: %w", name, err)
	}
	return nil
}

// Env is the AWS_* environment that gives a process (blobopen) the
// server's credentials.
func (l *Local) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + l.AccessKey, "AWS_SECRET_ACCESS_KEY=" + l.SecretKey, "AWS_REGION=" + l.Region}
}

// Stop interrupts versitygw and waits for it, killing it after a while.
func (l *Local) Stop() error {
	select {
	case <-l.exited:
		return nil
	default:
	}
	if err := l.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("s3test: stop versitygw: %w", err)
	}
	select {
	case <-l.exited:
	case <-time.After(stopTimeout):
		_ = l.cmd.Process.Kill()
		<-l.exited
	}
	return nil
}
