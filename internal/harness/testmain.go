package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/otaflow/otaflow/internal/testenv"
)

// RunWithStack is a test package's TestMain body (m is its *testing.M): it builds the manager,
// otaserver and fleetsim binaries into a temporary directory, starts a
// Stack there with o (Dir and BinDir are set), stores it in *stack, runs
// the tests and stops the stack. The directory is removed when the tests
// pass and kept (its path printed) for the logs when they fail.
func RunWithStack(m interface{ Run() int }, prefix string, o StackOptions, stack **Stack) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/manager", "./cmd/otaserver", "./cmd/fleetsim")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		return 1
	}
	o.Dir, o.BinDir = dir, bin
	s, err := StartStack(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*stack = s
	code := m.Run()
	s.Stop()
	if code == 0 {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "logs kept in %s\n", dir)
	}
	return code
}
