//go:build !unix

package sqlite

import (
	"fmt"
	"os"
)

// lockFile creates path; without flock(2) nothing keeps a second process
// from opening the database, so run one server per database file.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock %s: %w", path, err)
	}
	return f, nil
}
