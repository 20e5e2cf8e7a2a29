package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Staging receives the verified plaintext of the image being downloaded.
// Only bytes whose chunk tag verified are ever written to it.
type Staging interface {
	// Begin starts or resumes staging the image id (its plainSHA256). The
	// agent believes keep bytes are durably staged; Begin keeps exactly
	// those (dropping anything after them) and returns keep, or starts
	// over and returns 0 when it cannot vouch for them.
	Begin(id string, keep int64) (Stage, int64, error)
	// Discard removes whatever is staged.
	Discard() error
}

// Stage is one image being staged.
type Stage interface {
	io.Writer
	// Replay writes the bytes kept by Begin to w, so that digests can be
	// rebuilt after a restart.
	Replay(w io.Writer) error
	// Sync makes everything written so far durable.
	Sync() error
	// Path is the staged file, or "" when the staging keeps no file.
	Path() string
	Close() error
}

// FileStaging stages into a file in Dir ("staging-<digest prefix>.img").
// Installers that need the image bytes (ABSlots, Command) need it.
type FileStaging struct{ Dir string }

func (f FileStaging) path(id string) string {
	if len(id) > 16 {
		id = id[:16]
	}
	return filepath.Join(f.Dir, "staging-"+id+".img")
}

// Begin implements Staging.
func (f FileStaging) Begin(id string, keep int64) (Stage, int64, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	p := f.path(id)
	f.removeOthers(p)
	file, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	if st.Size() < keep {
		keep = 0 // the file lost bytes the state says were synced: start over
	}
	if err := file.Truncate(keep); err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	if _, err := file.Seek(keep, io.SeekStart); err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	return &fileStage{f: file, kept: keep}, keep, nil
}

func (f FileStaging) removeOthers(keep string) {
	matches, _ := filepath.Glob(filepath.Join(f.Dir, "staging-*.img"))
	for _, m := range matches {
		if m != keep {
			_ = os.Remove(m)
		}
	}
}

// Discard implements Staging.
func (f FileStaging) Discard() error {
	matches, _ := filepath.Glob(filepath.Join(f.Dir, "staging-*.img"))
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type fileStage struct {
	f    *os.File
	kept int64
}

func (s *fileStage) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s *fileStage) Sync() error                 { return s.f.Sync() }
func (s *fileStage) Path() string                { return s.f.Name() }
func (s *fileStage) Close() error                { return s.f.Close() }

func (s *fileStage) Replay(w io.Writer) error {
	if s.kept == 0 {
		return nil
	}
	r := io.NewSectionReader(s.f, 0, s.kept)
	_, err := io.Copy(w, r)
	return err
}

// DiscardStaging keeps no bytes: the image is only hashed and verified as
// it streams, and a restart starts the download over. It suits simulators
// and installers that do not read the staged image.
type DiscardStaging struct{}

// Begin implements Staging; it always starts over.
func (DiscardStaging) Begin(string, int64) (Stage, int64, error) { return discardStage{}, 0, nil }

// Discard implements Staging.
func (DiscardStaging) Discard() error { return nil }

type discardStage struct{}

func (discardStage) Write(p []byte) (int, error) { return len(p), nil }
func (discardStage) Replay(io.Writer) error      { return nil }
func (discardStage) Sync() error                 { return nil }
func (discardStage) Path() string                { return "" }
func (discardStage) Close() error                { return nil }
