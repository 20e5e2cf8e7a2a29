package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore/blobopen"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
	"github.com/otaflow/otaflow/internal/devicestore/storeopen"
	"github.com/otaflow/otaflow/internal/memlimit"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/cutoffs"
	"github.com/otaflow/otaflow/otaserver/ddi"
	"github.com/otaflow/otaflow/otaserver/leader"
	"github.com/otaflow/otaflow/otaserver/mender"
	"github.com/otaflow/otaflow/otaserver/reporter"
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
	store, err := storeopen.Open(ctx, o.storeDSN)
	if err != nil {
		return fmt.Errorf("--store-dsn: %w", err)
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
	blobs, err := blobopen.Open(ctx, o.blobStore)
	if err != nil {
		return fmt.Errorf("open blob store: %w", err)
	}

	var namespaces []string
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	cat, err := catalog.NewWithOptions(cfg, scheme, namespaces, catalog.Options{
		Build: catalog.BuildOptions{ClusterWideDevices: o.clusterWideDevices},
	})
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
	if o.clusterWideDevices {
		if err := otaserver.WatchTokenSecret(gctx, cfg, scheme, o.namespace, o.enrollSecret, tokens, func(n int) {
			log.Info("cluster-wide enrollment tokens updated", "count", n) // the count only, never the tokens
		}); err != nil {
			return err
		}
	}
	creds := otaserver.NewCredentialSet()
	var ddiTargets *otaserver.DDITokens
	if o.ddi {
		ddiTargets = otaserver.NewDDITokens()
	}
	if err := otaserver.WatchCredentials(gctx, cfg, scheme, creds, otaserver.CredentialWatchOptions{
		Namespaces: namespaces, Log: log.WithName("enrollments"), DDITargets: ddiTargets,
	}); err != nil {
		return err
	}
	signer, err := signingKeys(gctx, o, cfg, scheme, reg, log.WithName("signing-keys"))
	if err != nil {
		return err
	}
	rep, err := reporter.New(reporter.Config{
		Client: k8s, Catalog: cat, Store: store, Interval: o.reportInterval, Heartbeat: o.statusHeartbeat,
		Log: log.WithName("reporter"), Registerer: reg,
	})
	if err != nil {
		return err
	}
	// One replica alone computes cutoffs and serves them from memory; with
	// several, every replica (the leader too) serves those the leader
	// stored, so all answer alike.
	var cuts otaserver.Cutoffs = rep
	if o.leaderElect {
		cuts = cutoffs.New(store, cutoffs.Options{TTL: o.cutoffsTTL, Log: log.WithName("cutoffs")})
	}
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: cat, Cutoffs: cuts, Blobs: blobs, Signer: signer, Tokens: tokens, Credentials: creds,
		EnrollFailureRate: rate.Every(o.enrollFailRate), EnrollFailureBurst: o.enrollFailBurst,
		Metrics: otaserver.NewMetrics(reg), Log: log.WithName("devices"), PublicURL: o.publicURL,
		AssignmentTTL: o.assignmentTTL, DeviceRate: rate.Limit(o.deviceRate), DeviceBurst: o.deviceBurst,
		BlobRedirectTTL: o.blobRedirectTTL,
	})
	if err != nil {
		return err
	}
	enrolled := &otaserver.EnrollmentStatus{Client: k8s, Store: store, Log: log.WithName("enrollments")}
	if o.leaderElect {
		g.Go(func() error {
			return leader.Run(gctx, cfg, leader.Config{Namespace: o.namespace, Name: "otaflow-otaserver-reporter",
				Identity: o.leaderElectionID, Log: log.WithName("leader")},
				func(ctx context.Context) {
					go func() { _ = enrolled.Run(ctx) }()
					_ = rep.Run(ctx)
				})
		})
	} else {
		g.Go(func() error { return rep.Run(gctx) })
		g.Go(func() error { return enrolled.Run(gctx) })
	}
	g.Go(func() error { return srv.Run(gctx) })
	if err := startDeviceAPI(gctx, g, o, store, cat, srv, log.WithName("device-api")); err != nil {
		return err
	}

	handler := srv.Handler()
	if o.ddi {
		ext := o.ddiExternalURL
		if ext == "" {
			ext = o.publicURL
		}
		front, err := ddi.New(ddi.Config{
			Core: srv, Auth: ddi.Credentials(otaserver.DDIAuthenticator{Creds: creds, Targets: ddiTargets}),
			ExternalURL: ext, PollInterval: o.ddiPoll, ActivePollInterval: o.ddiActivePoll,
			AttributesRefresh: o.ddiAttributesRefresh, Fallback: handler,
		})
		if err != nil {
			return err
		}
		handler = front
	}
	if o.mender {
		if handler, err = menderFront(gctx, o, cfg, scheme, srv, creds, handler, log.WithName("mender")); err != nil {
			return err
		}
	}
	devices := otaserver.NewHTTPServer(o.deviceAddr, handler, o.httpLimits)
	if !o.insecureHTTP {
		// Reloaded from the files on rotation, without a restart.
		tlsCfg, certs, err := otaserver.ReloadingTLSConfig(o.tlsCert, o.tlsKey)
		if err != nil {
			return err
		}
		devices.TLSConfig = tlsCfg
		g.Go(func() error { return certs.Start(gctx) })
	}
	ops, err := opsServers(gctx, g, o, cfg, reg, readyChecks{"store": storeReady(store), "catalog": func(context.Context) error { return cat.Ready() }})
	if err != nil {
		return err
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
				err = s.ServeTLS(ln, "", "") // certificates from s.TLSConfig
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
	for _, s := range ops {
		g.Go(serve(s, s.TLSConfig != nil, 0))
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer scancel()
		errs := []error{devices.Shutdown(sctx)}
		for _, s := range ops {
			errs = append(errs, s.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	log.Info("serving devices", "address", o.deviceAddr, "tls", !o.insecureHTTP, "blobStore", o.blobStore, "namespaces", namespaces)
	return g.Wait()
}

// signingKeys returns the assignment key set. From --signing-key-file it
// is one key, read at start; from the signing-key Secret it is watched, so
// a rotation (docs/security.md) needs no restart, and a version that is
// refused leaves the last good set signing.
func signingKeys(ctx context.Context, o options, cfg *rest.Config, scheme *runtime.Scheme, reg prometheus.Registerer, log logr.Logger) (*otaserver.SigningKeys, error) {
	keys := otaserver.NewSigningKeys(reg)
	if o.signingKeyFile != "" {
		b, err := os.ReadFile(o.signingKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		if _, err := keys.Update(map[string][]byte{o.signField: b}, o.signField); err != nil {
			return nil, fmt.Errorf("--signing-key-file %s: %w", o.signingKeyFile, err)
		}
	} else if err := otaserver.WatchSigningKeySecret(ctx, cfg, scheme, o.namespace, o.signingSecret, o.signField, keys, log); err != nil {
		return nil, err
	}
	log.Info("assignment key set", "serial", keys.Serial(), "current", keys.KeyID(), "keys", keys.KeyIDs())
	return keys, nil
}

// readyChecks are what /readyz checks, by name: a replica is ready when
// its device store answers and its catalog has loaded releases, rollouts
// and content keys. The API server is not checked: an outage of it must
// not take every replica out of the Service while the cached state can
// still be served.
type readyChecks map[string]func(context.Context) error

// ServeHTTP answers 200 when every check passes, else 503, listing each
// check as Kubernetes components do ("[+]store ok", "[-]catalog failed").
// The probe port needs no token, so errors go to the log, not the answer.
func (rc readyChecks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	names := slices.Sorted(maps.Keys(rc))
	var out strings.Builder
	failed := false
	for _, name := range names {
		if err := rc[name](ctx); err != nil {
			failed = true
			fmt.Fprintf(&out, "[-]%s failed\n", name)
			ctrl.Log.WithName("readyz").Info("not ready", "check", name, "error", err.Error())
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = io.WriteString(w, out.String())
}

// opsServers returns the servers of /metrics, /healthz and /readyz. With
// --metrics-secure, /metrics is HTTPS and only for callers the API server
// authenticates and authorizes for GET /metrics (controller-runtime's
// filter, as the manager uses); the probes stay open because kubelet
// probes carry no token, and they tell nothing but ok or not. Certificate
// watchers run in g.
func opsServers(ctx context.Context, g *errgroup.Group, o options, cfg *rest.Config, reg *prometheus.Registry, ready readyChecks) ([]*http.Server, error) {
	probes := http.NewServeMux()
	probes.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	probes.Handle("/readyz", ready)
	newServer := func(addr string, h http.Handler) *http.Server {
		return &http.Server{
			Addr: addr, Handler: h,
			ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
		}
	}

	var metrics http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	var tlsCfg *tls.Config
	if o.metricsSecure {
		httpClient, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return nil, fmt.Errorf("metrics authorization client: %w", err)
		}
		filter, err := filters.WithAuthenticationAndAuthorization(cfg, httpClient)
		if err != nil {
			return nil, fmt.Errorf("metrics authorization: %w", err)
		}
		if metrics, err = filter(ctrl.Log.WithName("metrics"), metrics); err != nil {
			return nil, fmt.Errorf("metrics authorization: %w", err)
		}
		if tlsCfg, err = metricsTLS(ctx, g, o.metricsCertDir); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	if o.probeAddr == "" {
		mux.Handle("/", probes)
	}
	ms := newServer(o.metricsAddr, mux)
	if tlsCfg != nil {
		ms.TLSConfig = tlsCfg
		// HTTP/1.1 only, as controller-runtime's metrics servers in
		// kubebuilder projects: no HTTP/2 rapid-reset exposure.
		ms.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	servers := []*http.Server{ms}
	if o.probeAddr != "" {
		servers = append(servers, newServer(o.probeAddr, probes))
	}
	return servers, nil
}

// metricsTLS serves the certificate in certDir (reloaded on change) or, as
// controller-runtime's metrics server does, a self-signed one: scrapers
// authenticate with a token, so the certificate only encrypts.
func metricsTLS(ctx context.Context, g *errgroup.Group, certDir string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if certDir != "" {
		w, err := certwatcher.New(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
		if err != nil {
			return nil, fmt.Errorf("metrics certificate: %w", err)
		}
		g.Go(func() error { return w.Start(ctx) })
		cfg.GetCertificate = w.GetCertificate
		return cfg, nil
	}
	crt, key, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("metrics certificate: %w", err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// storeReady is the store's readiness check. A shared database that cannot
// be reached (devicestore.ErrUnavailable) leaves the replica ready: every
// replica sees the same outage, and a ready replica answers devices 503
// with Retry-After, while a Service with no ready endpoint refuses their
// connections. Any other failure (a broken local SQLite file) is not ready.
func storeReady(s devicestore.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := s.Ping(ctx); err != nil && !errors.Is(err, devicestore.ErrUnavailable) {
			return err
		}
		return nil
	}
}

// menderFront serves the Mender device API in front of next, its token
// keys watched in the token key Secret.
func menderFront(ctx context.Context, o options, cfg *rest.Config, scheme *runtime.Scheme, srv *otaserver.Server, creds *otaserver.CredentialSet, next http.Handler, log logr.Logger) (http.Handler, error) {
	keys := mender.NewTokenKeys()
	err := otaserver.WatchSecret(ctx, cfg, scheme, o.namespace, o.menderTokenSecret, func(data map[string][]byte) {
		if err := keys.Replace(data); err != nil {
			// The last good keys stay in use.
			log.Error(err, "Mender token key Secret refused", "secret", o.namespace+"/"+o.menderTokenSecret)
			return
		}
		log.Info("Mender token keys loaded", "current", keys.Current())
	})
	if err != nil {
		return nil, fmt.Errorf("mender token key Secret: %w", err)
	}
	if keys.Current() == "" {
		log.Error(mender.ErrNoTokenKey, "Mender devices cannot authenticate until the Secret exists", "secret", o.namespace+"/"+o.menderTokenSecret)
	}
	ext := o.menderExternalURL
	if ext == "" {
		ext = o.publicURL
	}
	return mender.New(mender.Config{
		Core: srv, Auth: mender.Credentials(creds), Keys: keys, ExternalURL: ext,
		TokenTTL: o.menderTokenTTL, LinkTTL: o.menderLinkTTL, Fallback: next,
	})
}
