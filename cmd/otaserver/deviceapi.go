package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/deviceapi"
)

// deviceAPIOptions are the aggregated device API's flags.
type deviceAPIOptions struct {
	addr              string
	certFile, keyFile string
}

// startDeviceAPI serves devices.ota.otaflow.io on --device-api-bind-address
// (docs/kubectl.md); nothing when the flag is empty.
func startDeviceAPI(ctx context.Context, g *errgroup.Group, o options, store devicestore.Store, cat *catalog.Catalog, srv *otaserver.Server, log logr.Logger) error {
	if o.deviceAPI.addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(o.deviceAPI.addr)
	if err != nil {
		return fmt.Errorf("--device-api-bind-address: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 {
		return fmt.Errorf("--device-api-bind-address: port %q: want a number above 0", port)
	}
	ip := net.IPv4zero
	if host != "" {
		if ip = net.ParseIP(host); ip == nil {
			return fmt.Errorf("--device-api-bind-address: host %q is not an IP address", host)
		}
	}
	if (o.deviceAPI.certFile == "") != (o.deviceAPI.keyFile == "") {
		return fmt.Errorf("--device-api-tls-cert-file and --device-api-tls-key-file go together")
	}
	server, err := deviceapi.New(deviceapi.Config{
		Store: store, Catalog: cat, Explainer: srv, ClusterNamespace: o.namespace, Log: log,
	}, deviceapi.Serving{
		BindAddress: ip, BindPort: p,
		CertFile: o.deviceAPI.certFile, KeyFile: o.deviceAPI.keyFile,
		Kubeconfig: os.Getenv("KUBECONFIG"),
	})
	if err != nil {
		return err
	}
	g.Go(func() error { return deviceapi.Run(ctx, server) })
	return nil
}
