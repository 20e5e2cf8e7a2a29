// Package deps checks the boundaries between components: they meet only
// through the API objects and the device protocol, so no binary may link a
// package it must not.
package deps

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/testenv"
)

const module = "github.com/otaflow/otaflow/"

// rules: for each binary or library, import-path prefixes it must not link.
var rules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"./cmd/otaserver", []string{module + "controllers"}, "the device-facing server must not link the reconcilers"},
	{"./cmd/manager", []string{module + "otaserver"}, "the manager does not serve devices"},
	{"./agent", []string{module + "otaserver", module + "controllers", module + "internal/devicestore", module + "internal/signature", "k8s.io/", "sigs.k8s.io/", "github.com/sigstore/"}, "the device library needs no server code, no Kubernetes and only the standard library's crypto (internal/vendorsig)"},
	{"./cmd/ota-agent", []string{module + "otaserver", module + "controllers", module + "internal/devicestore", module + "internal/signature", "k8s.io/", "sigs.k8s.io/", "github.com/sigstore/"}, "the device binary needs no server code, no Kubernetes and no sigstore"},
	{"./cmd/fleetsim", []string{module + "controllers", module + "internal/devicestore", "k8s.io/", "sigs.k8s.io/"}, "simulated devices speak the protocol only"},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", pkg)
	cmd.Dir = testenv.Root()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestBoundaries(t *testing.T) {
	for _, r := range rules {
		t.Run(strings.TrimPrefix(r.pkg, "./"), func(t *testing.T) {
			all := deps(t, r.pkg)
			if len(all) < 10 {
				t.Fatalf("go list -deps %s listed only %v", r.pkg, all)
			}
			for _, p := range all {
				for _, bad := range r.forbidden {
					if strings.HasPrefix(p, bad) {
						t.Errorf("%s links %s: %s", r.pkg, p, r.why)
					}
				}
			}
		})
	}
}

// TestRulesCanFail: the check sees a link that exists, so a passing run
// means the forbidden packages are really absent.
func TestRulesCanFail(t *testing.T) {
	found := false
	for _, p := range deps(t, "./cmd/manager") {
		found = found || strings.HasPrefix(p, module+"controllers")
	}
	if !found {
		t.Fatal("the manager does not seem to link its controllers: the dependency listing is broken")
	}
}

// allow: for libraries devices import, every package outside the standard
// library they may link (import-path prefixes). Anything new must be added
// here on purpose.
var allow = []struct {
	pkg     string
	allowed []string
	why     string
}{
	{"./protocol/...", []string{module + "protocol/", module + "internal/envelope"}, "the protocol package is the wire format only: standard library"},
	{"./agent", []string{module + "agent", module + "protocol/", module + "internal/envelope", module + "internal/vendorsig", "filippo.io/edwards25519", "github.com/go-logr/logr"}, "the device library: standard library crypto, streaming Ed25519 (filippo.io/edwards25519, the code crypto/ed25519 is built on) and logr"},
}

// standard reports whether p is a standard library package (no dot in its
// first path element).
func standard(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

func TestAllowedDependencies(t *testing.T) {
	for _, a := range allow {
		t.Run(strings.TrimPrefix(a.pkg, "./"), func(t *testing.T) {
			for _, p := range deps(t, a.pkg) {
				if standard(p) {
					continue
				}
				ok := false
				for _, prefix := range a.allowed {
					ok = ok || strings.HasPrefix(p, prefix)
				}
				if !ok {
					t.Errorf("%s links %s: %s", a.pkg, p, a.why)
				}
			}
		})
	}
}

// TestAgentStandsAlone builds and tests test/agentmodule, a device program
// in its own module that imports the device library and the protocol
// packages. Go refuses imports of this module's internal packages from
// another module, so this passes only while the agent's public API names
// no internal type.
func TestAgentStandsAlone(t *testing.T) {
	for _, args := range [][]string{{"vet", "./..."}, {"test", "-count=1", "./..."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(testenv.Root(), "test", "agentmodule")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in test/agentmodule: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
