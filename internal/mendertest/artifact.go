package mendertest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MinArtifactSize is the smallest download mender-client 3.4 accepts: it
// refuses a Content-Length under 4096 bytes.
const MinArtifactSize = 4096

// toolTimeout bounds one mender-artifact or `mender show-artifact` run.
const toolTimeout = 30 * time.Second

// ArtifactOptions describe an update-module artifact (format version 3).
type ArtifactOptions struct {
	// Name is the artifact name (-n); required.
	Name string
	// DeviceTypes are the compatible device types (-t); at least one.
	DeviceTypes []string
	// Type is the payload type, the update module that installs it (-T);
	// default ModuleType.
	Type string
	// Payload is the content of the artifact's single file; default 8 KiB
	// of random bytes. PayloadName is its name; default "payload.bin".
	Payload     []byte
	PayloadName string
	// SigningKey, when set, signs the artifact (-k); RSA or ECDSA only.
	SigningKey *Key
	// Dir receives the artifact; default t.TempDir().
	Dir string
}

// Artifact is a written .mender file.
type Artifact struct {
	Path        string
	Bytes       []byte
	Name        string
	PayloadName string
	Payload     []byte
}

// WriteArtifact runs `mender-artifact write module-image`.
func WriteArtifact(t testing.TB, opts ArtifactOptions) *Artifact {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	a, err := writeArtifact(FindBinaries(t).MenderArtifact, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func writeArtifact(tool string, opts ArtifactOptions) (*Artifact, error) {
	if opts.Name == "" || len(opts.DeviceTypes) == 0 {
		return nil, errors.New("mendertest: an artifact needs a Name and at least one device type")
	}
	name := cmp.Or(opts.PayloadName, "payload.bin")
	if strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("mendertest: payload name %q contains '/'", name)
	}
	payload := opts.Payload
	if payload == nil {
		// Random bytes do not compress: the artifact stays over
		// MinArtifactSize.
		payload = make([]byte, 8<<10)
		_, _ = rand.Read(payload)
	}
	work, err := os.MkdirTemp(opts.Dir, "artifact")
	if err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, name), payload, 0o644); err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	f, err := os.CreateTemp(opts.Dir, "*.mender")
	if err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	out := f.Name()
	f.Close()
	args := []string{"write", "module-image", "-T", cmp.Or(opts.Type, ModuleType), "-n", opts.Name}
	for _, dt := range opts.DeviceTypes {
		args = append(args, "-t", dt)
	}
	args = append(args, "-o", out, "-f", name)
	if opts.SigningKey != nil {
		pemKey, err := opts.SigningKey.TraditionalPEM()
		if err != nil {
			return nil, err
		}
		keyPath := filepath.Join(work, "signing-key.pem")
		if err := os.WriteFile(keyPath, pemKey, 0o600); err != nil {
			return nil, fmt.Errorf("mendertest: %w", err)
		}
		args = append(args, "-k", keyPath)
	}
	if _, err := runTool(work, tool, args...); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	if len(b) < MinArtifactSize {
		return nil, fmt.Errorf("mendertest: %s is %d bytes, under the %d the client downloads: use a larger payload",
			out, len(b), MinArtifactSize)
	}
	return &Artifact{Path: out, Bytes: b, Name: opts.Name, PayloadName: name, Payload: payload}, nil
}

// ReadArtifact runs `mender-artifact read` (with the public key verifyKey
// when not nil, which checks the signature) and returns its report.
func ReadArtifact(t testing.TB, path string, verifyKey []byte) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"read"}
	if verifyKey != nil {
		keyPath := filepath.Join(dir, "verify-key.pem")
		if err := os.WriteFile(keyPath, verifyKey, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-k", keyPath)
	}
	out, err := runTool(dir, FindBinaries(t).MenderArtifact, append(args, path)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runTool runs a tool in dir and returns its standard output; the error
// carries the standard error.
func runTool(dir, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("mendertest: %s %s: %w\n%s", filepath.Base(tool), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}
