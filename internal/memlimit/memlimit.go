// Package memlimit sets the Go runtime's soft memory limit from the
// container's memory limit. The OTA server keeps a large, long-lived
// device index; with only GOGC the heap may grow to twice what is live
// before a collection, which a container limit sized for the live set
// would kill. A soft limit below the container's makes the collector run
// earlier instead.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// unlimited is what cgroup v1 reports for "no limit" (rounded to a page).
const unlimited = 1 << 62

// Container returns the memory limit of the cgroup the process runs in
// (cgroup v2 memory.max, else v1 memory.limit_in_bytes, under root,
// normally /sys/fs/cgroup); ok is false when there is none.
func Container(root string) (limit int64, ok bool, err error) {
	for _, f := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("memlimit: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, false, fmt.Errorf("memlimit: %s: unexpected value %q", f, v)
		}
		if n >= unlimited {
			return 0, false, nil
		}
		return n, true, nil
	}
	return 0, false, nil
}

// Apply sets the soft limit to ratio × the container's limit, unless the
// GOMEMLIMIT environment variable already set one (lookup reads the
// environment). It returns the limit in force, 0 for none.
func Apply(root string, ratio float64, lookup func(string) (string, bool)) (int64, error) {
	if _, set := lookup("GOMEMLIMIT"); set {
		return debug.SetMemoryLimit(-1), nil
	}
	if ratio <= 0 || ratio > 1 {
		return 0, fmt.Errorf("memlimit: ratio %v: want (0, 1]", ratio)
	}
	c, ok, err := Container(root)
	if err != nil || !ok {
		return 0, err
	}
	limit := int64(float64(c) * ratio)
	debug.SetMemoryLimit(limit)
	return limit, nil
}
