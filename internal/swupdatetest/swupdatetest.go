// Package swupdatetest runs the real SWUpdate client (Debian's swupdate
// 2022.12 with its suricatta hawkBit DDI client) in tests, without root and
// without touching the host: it builds signed .swu images (BuildSWU with a
// Signer), writes the client's configuration and runs the binary in its
// own process group with a private TMPDIR (Start).
//
// The binary comes from hack/ensure-swupdate.sh (make swupdate), which
// unpacks the Debian packages into bin/swupdate and writes the wrapper
// bin/swupdate/run; OTAFLOW_SWUPDATE overrides the wrapper's path. A
// missing binary fails the test, never skips it.
package swupdatetest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BinaryEnv names the SWUpdate executable (or wrapper) to run.
const BinaryEnv = "OTAFLOW_SWUPDATE"

// Binary returns the SWUpdate executable: $OTAFLOW_SWUPDATE, else
// bin/swupdate/run in the module root. It fails t when neither exists.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (run `make swupdate`)", BinaryEnv, err)
		}
		return p, nil
	}
	p := filepath.Join(moduleRoot(), "bin", "swupdate", "run")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the SWUpdate client is not set up (%v): run `make swupdate` "+
			"(or hack/ensure-swupdate.sh) once, or set %s to a swupdate 2022.12 binary", err, BinaryEnv)
	}
	return p, nil
}

// moduleRoot is the repository root, found from this file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// quote renders s as a libconfig string literal (sw-description and
// swupdate.cfg are libconfig files).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
