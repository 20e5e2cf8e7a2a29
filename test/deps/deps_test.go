// Package deps checks the boundaries between components: they meet only
// through the API objects and the device protocol, so no binary may link a
// package it must not.
package deps

import (
	"os/exec"
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
