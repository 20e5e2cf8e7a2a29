package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/memlimit"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/reporter"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("otaserver")
	if err := o.validate(); err != nil {
		return err
	}
	limit, err := memlimit.Apply("/sys/fs/cgroup", o.memoryLimitRatio, os.LookupEnv)
	if err != nil {
		return err
	}
	log.Info("memory", "goSoftLimitBytes", limit)
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(otav1.AddToScheme(scheme))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	opened := time.Now()
	store, err := openStore(ctx, o.storeDSN)
	if err != nil {
		return err
	}
	if ix, ok := store.(interface{ IndexStats() devindex.Stats }); ok {
		st := ix.IndexStats()
		log.Info("device store open", "took", time.Since(opened).Round(time.Millisecond), "indexedDevices", st.Devices, "indexBytes", st.Bytes)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error(err, "close device store")
		}
	}()
	blobs, err := blobstore.NewFS(o.blobDir)
	if err != nil {
		return fmt.Errorf("open blob store %s: %w", o.blobDir, err)
	}
	key, err := loadSigningKey(ctx, o, k8s)
	if err != nil {
		return err
	}
	signer, err := assignment.NewSigner(key)
	if err != nil {
		return fmt.Errorf("assignment signing key: %w", err)
	}

	var namespaces []string
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	cat, err := catalog.New(cfg, scheme, namespaces)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cat.Start(gctx) })
	if !cat.WaitForSync(gctx) {
		return errors.New("catalog: informers did not sync")
	}
	tokens := otaserver.NewTokenSet()
	if err := otaserver.WatchTokenSecret(gctx, cfg, scheme, o.namespace, o.enrollSecret, tokens, func(n int) {
		log.Info("enrollment tokens updated", "count", n) // the count only, never the tokens
	}); err != nil {
		return err
	}
	rep, err := reporter.New(reporter.Config{
		Client: k8s, Catalog: cat, Store: store, Interval: o.reportInterval, Heartbeat: o.statusHeartbeat,
		Log: log.WithName("reporter"), Registerer: reg,
	})
	if err != nil {
		return err
	}
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: cat, Cutoffs: rep, Blobs: blobs, Signer: signer, Tokens: tokens,
		Metrics: otaserver.NewMetrics(reg), Log: log.WithName("devices"), PublicURL: o.publicURL,
		AssignmentTTL: o.assignmentTTL, DeviceRate: rate.Limit(o.deviceRate), DeviceBurst: o.deviceBurst,
	})
	if err != nil {
		return err
	}
	g.Go(func() error { return rep.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })

	devices := otaserver.NewHTTPServer(o.deviceAddr, srv.Handler(), o.httpLimits)
	devices.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	ops := &http.Server{
		Addr:              o.metricsAddr,
		Handler:           opsHandler(reg, store),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	serve := func(s *http.Server, tlsOn bool, maxConns int) func() error {
		return func() error {
			ln, err := net.Listen("tcp", s.Addr)
			if err != nil {
				return fmt.Errorf("listen %s: %w", s.Addr, err)
			}
			if maxConns > 0 {
				ln = otaserver.LimitListener(ln, maxConns)
			}
			if tlsOn {
				err = s.ServeTLS(ln, o.tlsCert, o.tlsKey)
			} else {
				err = s.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		}
	}
	if o.insecureHTTP {
		log.Info("WARNING: serving the device API over plain HTTP; use TLS outside local testing")
	}
	g.Go(serve(devices, !o.insecureHTTP, o.httpLimits.MaxConnections))
	g.Go(serve(ops, false, 0))
	g.Go(func() error {
		<-gctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer scancel()
		return errors.Join(devices.Shutdown(sctx), ops.Shutdown(sctx))
	})
	log.Info("serving devices", "address", o.deviceAddr, "tls", !o.insecureHTTP, "blobDir", o.blobDir, "namespaces", namespaces)
	return g.Wait()
}

// openStore opens the store named by a DSN; only sqlite:// exists so far.
func openStore(ctx context.Context, dsn string) (devicestore.Store, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("--store-dsn: %w", err)
	}
	switch u.Scheme {
	case "sqlite":
		path := u.Host + u.Path
		if path == "" {
			return nil, errors.New("--store-dsn: sqlite:///path/to/devices.db needs a path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("device store directory: %w", err)
		}
		s, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: strings.ToUpper(u.Query().Get("synchronous"))})
		if err != nil {
			return nil, fmt.Errorf("open device store: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("--store-dsn: unsupported store %q (supported: sqlite)", u.Scheme)
	}
}

// loadSigningKey reads the assignment signing key once at start.
func loadSigningKey(ctx context.Context, o options, c client.Client) (crypto.Signer, error) {
	var pemBytes []byte
	if o.signingKeyFile != "" {
		b, err := os.ReadFile(o.signingKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		pemBytes = b
	} else {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var s corev1.Secret
		if err := c.Get(gctx, client.ObjectKey{Namespace: o.namespace, Name: o.signingSecret}, &s); err != nil {
			return nil, fmt.Errorf("read signing-key Secret %s/%s: %w", o.namespace, o.signingSecret, err)
		}
		pemBytes = s.Data[o.signField]
		if len(pemBytes) == 0 {
			return nil, fmt.Errorf("signing-key Secret %s/%s has no key %q", o.namespace, o.signingSecret, o.signField)
		}
	}
	k, err := assignment.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err) // the parser never echoes key bytes
	}
	return k, nil
}

func opsHandler(reg *prometheus.Registry, store devicestore.Store) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			http.Error(w, "device store unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}
