// Package deviceapi serves the device store as the Kubernetes API group
// devices.ota.otaflow.io (api/devices/v1alpha1) through the API
// aggregation layer, the way metrics-server serves metrics: kube-apiserver
// proxies /apis/devices.ota.otaflow.io to this server (an APIService), and
// the server authenticates and authorizes each request by delegating to
// kube-apiserver (TokenReview, SubjectAccessReview; the front proxy's
// client certificate and request headers), so kubectl and the cluster's
// RBAC apply to devices without an etcd object per device.
package deviceapi

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	basecompatibility "k8s.io/component-base/compatibility"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver/deviceapi/openapi"
)

// Config is what the device API serves from and how.
type Config struct {
	Store     devicestore.Store
	Catalog   snapshotter
	Explainer Explainer
	// ClusterNamespace is where devices of no tenant (the cluster-wide
	// enrollment Secret's) are shown: the OTA server's namespace.
	ClusterNamespace string
	Log              logr.Logger
	// Now is the clock of the tables' ages (default time.Now).
	Now func() time.Time
	// ScanBudget overrides DefaultScanBudget (tests).
	ScanBudget int
}

func (c *Config) scanBudget() int {
	if c.ScanBudget > 0 {
		return c.ScanBudget
	}
	return DefaultScanBudget
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Serving is where and how the API is served.
type Serving struct {
	// Listener, when set, is used instead of BindAddress:BindPort.
	Listener    net.Listener
	BindAddress net.IP
	BindPort    int
	// CertFile and KeyFile are the serving certificate (reloaded when they
	// change); empty: a self-signed one made at start and kept in memory,
	// which no caBundle can vouch for (an APIService with
	// insecureSkipTLSVerify only).
	CertFile, KeyFile string
	// Kubeconfig reaches kube-apiserver for delegated authentication and
	// authorization and for the extension-apiserver-authentication
	// ConfigMap; empty: the in-cluster configuration.
	Kubeconfig string
}

// New builds the API server; run it with Run.
func New(cfg Config, serving Serving) (*genericapiserver.GenericAPIServer, error) {
	if cfg.Store == nil || cfg.Catalog == nil || cfg.Explainer == nil {
		return nil, fmt.Errorf("device API: store, catalog and explainer are required")
	}
	scheme, codecs, err := newScheme()
	if err != nil {
		return nil, fmt.Errorf("device API scheme: %w", err)
	}
	secure := genericoptions.NewSecureServingOptions().WithLoopback()
	secure.Listener = serving.Listener
	secure.BindAddress = serving.BindAddress
	secure.BindPort = serving.BindPort
	secure.ServerCert.CertKey.CertFile = serving.CertFile
	secure.ServerCert.CertKey.KeyFile = serving.KeyFile
	if serving.CertFile == "" {
		if err := secure.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
			return nil, fmt.Errorf("device API self-signed certificate: %w", err)
		}
	}
	authn := genericoptions.NewDelegatingAuthenticationOptions()
	authn.RemoteKubeConfigFile = serving.Kubeconfig
	authz := genericoptions.NewDelegatingAuthorizationOptions()
	authz.RemoteKubeConfigFile = serving.Kubeconfig
	authz.AlwaysAllowPaths = []string{"/healthz", "/readyz", "/livez"}

	config := genericapiserver.NewConfig(codecs)
	if err := secure.ApplyTo(&config.SecureServing, &config.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("device API serving: %w", err)
	}
	if err := authn.ApplyTo(&config.Authentication, config.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("device API delegated authentication: %w", err)
	}
	if err := authz.ApplyTo(&config.Authorization); err != nil {
		return nil, fmt.Errorf("device API delegated authorization: %w", err)
	}
	config.EffectiveVersion = basecompatibility.NewEffectiveVersion(version.MajorMinor(1, 37), false, version.MajorMinor(1, 37), version.MajorMinor(1, 37))
	config.EnableProfiling = false
	namer := openapinamer.NewDefinitionNamer(scheme)
	config.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	config.OpenAPIConfig.Info.Title = "otaflow device API"
	config.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	config.OpenAPIV3Config.Info.Title = "otaflow device API"
	// No admission: devices are never created or changed through the API.
	server, err := config.Complete(nil).New("otaflow-device-api", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("device API server: %w", err)
	}
	devices := &deviceStorage{cfg: &cfg}
	group := genericapiserver.NewDefaultAPIGroupInfo(devicesv1.GroupName, scheme, runtime.NewParameterCodec(scheme), codecs)
	group.VersionedResourcesStorageMap[devicesv1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		devicesv1.ResourceDevices: devices,
		devicesv1.ResourceDevices + "/" + devicesv1.SubresourceDecision: &decisionStorage{devices: devices},
	}
	if err := server.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("device API group: %w", err)
	}
	return server, nil
}

// Run serves until ctx ends.
func Run(ctx context.Context, server *genericapiserver.GenericAPIServer) error {
	return server.PrepareRun().RunWithContext(ctx)
}
