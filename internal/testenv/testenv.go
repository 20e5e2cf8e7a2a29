// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// otaflow CRDs installed, for tests of controllers and API validation.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository root, found from this file's location.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where kube-apiserver and etcd are: KUBEBUILDER_ASSETS, or
// bin/k8s as `make envtest` builds it.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(Root(), "bin", "k8s")
}

// Env is a running control plane.
type Env struct {
	env    *envtest.Environment
	Config *rest.Config
}

// Start runs the control plane. It fails (never skips) when the binaries are
// missing: `make test` builds them first.
func Start() (*Env, error) {
	dir := AssetsDir()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return nil, fmt.Errorf("envtest binary %s missing in %s (run `make envtest`): %w", bin, dir, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		// Start may fail after launching etcd and the apiserver (a CRD the
		// apiserver refuses): stop them rather than leave them running.
		_ = env.Stop()
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	// Generous limits: tests create objects quickly.
	cfg.QPS, cfg.Burst = 200, 400
	return &Env{env: env, Config: cfg}, nil
}

// Stop shuts the control plane down.
func (e *Env) Stop() error { return e.env.Stop() }

// Kubeconfig is a kubeconfig file for the control plane's admin user
// (system:masters), for tools such as kubectl.
func (e *Env) Kubeconfig() []byte { return e.env.KubeConfig }
