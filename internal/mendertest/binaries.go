package mendertest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// DirEnv names the directory hack/ensure-mender.sh filled (bin/mender).
const DirEnv = "OTAFLOW_MENDER"

// Binaries are the wrappers and the unpacked package tree of
// hack/ensure-mender.sh.
type Binaries struct {
	// Dir is $OTAFLOW_MENDER.
	Dir string
	// Mender runs the client (mender-client 3.4), MenderArtifact the
	// artifact tool (mender-artifact 3.9).
	Mender         string
	MenderArtifact string
	// Root is the unpacked tree; Root/usr/share/mender/modules/v3 holds
	// Debian's update modules.
	Root string
}

// FindBinaries returns the binaries under $OTAFLOW_MENDER and fails t when
// the variable is unset or the directory is incomplete.
func FindBinaries(t testing.TB) Binaries {
	t.Helper()
	b, err := findBinaries()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func findBinaries() (Binaries, error) {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		return Binaries{}, errors.New("mendertest: " + DirEnv + " is not set: run `make mender` " +
			"(hack/ensure-mender.sh bin/mender) and set " + DirEnv + " to that directory (make test exports it)")
	}
	if !filepath.IsAbs(dir) {
		// go test runs in the package's directory: a relative path would
		// silently point elsewhere.
		return Binaries{}, fmt.Errorf("mendertest: %s=%s must be an absolute path", DirEnv, dir)
	}
	b := Binaries{
		Dir:            dir,
		Mender:         filepath.Join(dir, "mender"),
		MenderArtifact: filepath.Join(dir, "mender-artifact"),
		Root:           filepath.Join(dir, "root"),
	}
	for _, p := range []string{b.Mender, b.MenderArtifact, filepath.Join(b.Root, "usr", "share", "mender", "modules", "v3")} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("mendertest: %s=%s is incomplete (%w): run `make mender` "+
				"(hack/ensure-mender.sh %s)", DirEnv, dir, err, dir)
		}
	}
	return b, nil
}
