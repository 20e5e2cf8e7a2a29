// Package harness runs otaflow the way it runs in a cluster — a real
// kube-apiserver and etcd, the manager and the OTA server as separate
// processes — on one machine, for `make demo` and the end-to-end tests.
package harness

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv"
)

// ControlPlane is a running kube-apiserver and etcd with the otaflow CRDs.
type ControlPlane struct {
	env *envtest.Environment
	// Config reaches the apiserver as an administrator.
	Config *rest.Config
	// Kubeconfig is a file other processes (and kubectl) can use.
	Kubeconfig string
	// Client is a typed client with the otaflow scheme.
	Client client.Client

	// API server outages (outage.go).
	stoppedArgs []string
	restarted   *apiserverProc
}

// Scheme has the Kubernetes and otaflow types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(otav1.AddToScheme(s))
	return s
}

// StartControlPlane starts the control plane and writes a kubeconfig into
// dir.
func StartControlPlane(dir string) (*ControlPlane, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: testenv.AssetsDir(),
		CRDDirectoryPaths:     []string{filepath.Join(testenv.Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// The aggregation layer, for the device API (devices.ota.otaflow.io).
	agg, err := aggregationFlags(dir)
	if err != nil {
		return nil, fmt.Errorf("aggregation layer certificates: %w", err)
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	for k, v := range agg {
		args.Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop() // it may have launched etcd and the apiserver already
		return nil, fmt.Errorf("start control plane (binaries from %s; `make envtest` builds them): %w", testenv.AssetsDir(), err)
	}
	cp := &ControlPlane{env: env, Config: cfg}
	user, err := env.AddUser(envtest.User{Name: "otaflow-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("add control plane user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("render kubeconfig: %w", err)
	}
	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	cp.Client, err = client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("client: %w", err)
	}
	return cp, nil
}

// Stop shuts the control plane down.
func (c *ControlPlane) Stop() error {
	c.stopRestarted()
	return c.env.Stop()
}
