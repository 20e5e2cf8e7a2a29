package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// DirStore keeps State in a directory:
//
//	state.json   everything but the private key (0600)
//	device.key   the raw HPKE private key (0600)
//
// Both are replaced atomically (write a temporary file, fsync, rename,
// fsync the directory), so a power cut leaves the old or the new file.
type DirStore struct {
	Dir string

	mu      sync.Mutex
	lastKey []byte
}

// State file names inside a DirStore's directory.
const (
	StateFile = "state.json"
	KeyFile   = "device.key"
)

// NewDirStore creates dir (0700) if needed.
func NewDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state directory: %w", err)
	}
	return &DirStore{Dir: dir}, nil
}

// Load implements StateStore.
func (d *DirStore) Load() (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s State
	b, err := os.ReadFile(filepath.Join(d.Dir, StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return State{}, fmt.Errorf("agent: read state: %w", err)
	default:
		if err := json.Unmarshal(b, &s); err != nil {
			return State{}, fmt.Errorf("agent: parse %s: %w", StateFile, err)
		}
	}
	key, err := os.ReadFile(filepath.Join(d.Dir, KeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return State{}, fmt.Errorf("agent: read device key: %w", err)
	default:
		s.DeviceKey = key
		d.lastKey = bytes.Clone(key)
	}
	return s, nil
}

// Save implements StateStore. The key file is written before the state
// file and only when the key changed.
func (d *DirStore) Save(s State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(s.DeviceKey) > 0 && !bytes.Equal(s.DeviceKey, d.lastKey) {
		if err := WriteFileAtomic(filepath.Join(d.Dir, KeyFile), s.DeviceKey, 0o600); err != nil {
			return err
		}
		d.lastKey = bytes.Clone(s.DeviceKey)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode state: %w", err)
	}
	return WriteFileAtomic(filepath.Join(d.Dir, StateFile), b, 0o600)
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory is written and fsynced, renamed over path, and the directory
// is fsynced so the rename itself survives a power cut.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("agent: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("agent: sync %s: %w", dir, err)
	}
	return nil
}
