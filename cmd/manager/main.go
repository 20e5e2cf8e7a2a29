// Command manager runs the otaflow controllers: FirmwareRelease (verify and
// encrypt images once) and Rollout (canary waves, gates, abort).
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore/blobopen"
	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
)

// Secure metrics: the manager asks the API server who a scraper is and
// whether it may GET /metrics (controller-runtime's filter).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

type options struct {
	metricsAddr, probeAddr string
	metricsSecure          bool
	metricsCertDir         string
	enableHTTP2            bool
	leaderElect            bool
	leaderElectionNS       string
	namespaces             string
	blobDir                string
	blobStore              string
	maxImageSize           int64
	fetchTimeout           time.Duration
	retryBase, retryMax    time.Duration
	staleAfter             time.Duration
	releaseBuilds          int
	egressAllow            string
	egressClusterCIDRs     string
	egressClusterDomain    string
	egressDenyPrivate      bool
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers the API server authenticates and authorizes for GET /metrics (TokenReview, SubjectAccessReview); false serves plain HTTP (local use only).")
	flag.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for --metrics-secure, reloaded when they change (empty: a self-signed certificate).")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics endpoint (off: HTTP/2 rapid reset, CVE-2023-44487).")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes (plain HTTP, no authentication: kubelet probes carry no token).")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader, so only one replica reconciles.")
	flag.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's).")
	flag.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	flag.StringVar(&o.blobDir, "blob-dir", "/var/lib/otaflow/blobs", "Directory of the encrypted blob store, shared with the OTA server (ignored when --blob-store is set).")
	flag.StringVar(&o.blobStore, "blob-store", "", "Blob store URL: a directory (file:///path) or object storage (s3://bucket/prefix?endpoint=host:port&region=…; credentials from AWS_* variables or *_file parameters, docs/object-storage.md). Empty: --blob-dir.")
	flag.Int64Var(&o.maxImageSize, "max-image-size", 2<<30, "Largest firmware image accepted, in bytes.")
	flag.DurationVar(&o.fetchTimeout, "fetch-timeout", 30*time.Minute, "Time limit for fetching, verifying and encrypting one image.")
	flag.DurationVar(&o.retryBase, "retry-base-delay", 2*time.Second, "First retry delay after a transient failure (doubles each time).")
	flag.DurationVar(&o.retryMax, "retry-max-delay", 5*time.Minute, "Longest retry delay after transient failures.")
	flag.IntVar(&o.releaseBuilds, "max-concurrent-release-builds", controllers.DefaultMaxConcurrentBuilds, "FirmwareReleases fetched, verified and encrypted at once (one at a time per release).")
	flag.StringVar(&o.egressAllow, "egress-allow", "", "Comma-separated addresses, CIDRs, host names and *.domains image fetches may reach although the egress policy refuses them (loopback, link-local, metadata, cluster-internal, and private with --egress-deny-private), e.g. an in-cluster registry: registry.infra.svc.cluster.local,10.0.0.0/24. A name admits whatever it resolves to.")
	flag.StringVar(&o.egressClusterCIDRs, "egress-cluster-cidrs", "", "Comma-separated Service and Pod CIDRs of the cluster; image fetches to them are refused as cluster-internal (the manager cannot discover them).")
	flag.StringVar(&o.egressClusterDomain, "egress-cluster-domain", egress.DefaultClusterDomain, "The cluster's DNS domain; image fetches to names under it (and under .svc) are refused as cluster-internal.")
	flag.BoolVar(&o.egressDenyPrivate, "egress-deny-private", false, "Refuse image fetches to private addresses too (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7); off by default because on-premises mirrors live there.")
	flag.DurationVar(&o.staleAfter, "counts-stale-after", controllers.DefaultStaleAfter, "Counts the OTA server reported longer ago than this are stale: no wave opens, completes or aborts on them (the server heartbeats every --status-heartbeat).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.Error(err, "manager failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(otav1.AddToScheme(scheme))

	if o.releaseBuilds < 1 {
		return fmt.Errorf("--max-concurrent-release-builds must be at least 1, got %d", o.releaseBuilds)
	}
	if o.maxImageSize <= 0 {
		return fmt.Errorf("--max-image-size must be positive, got %d", o.maxImageSize)
	}
	policy, err := egress.New(egress.Config{
		Allow:         splitList(o.egressAllow),
		ClusterCIDRs:  splitList(o.egressClusterCIDRs),
		ClusterDomain: o.egressClusterDomain,
		DenyPrivate:   o.egressDenyPrivate,
	})
	if err != nil {
		return fmt.Errorf("egress policy (--egress-*): %w", err)
	}
	blobURL := o.blobStore
	if blobURL == "" {
		blobURL = o.blobDir
	}
	blobs, err := blobopen.Open(ctx, blobURL)
	if err != nil {
		return fmt.Errorf("open blob store: %w", err)
	}

	cacheOpts := cache.Options{}
	if o.namespaces != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(o.namespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				cacheOpts.DefaultNamespaces[ns] = cache.Config{}
			}
		}
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
		metricsOpts.CertDir = o.metricsCertDir // empty: controller-runtime's self-signed certificate
		if !o.enableHTTP2 {
			metricsOpts.TLSOpts = append(metricsOpts.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
		}
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "otaflow-manager.ota.otaflow.io",
		LeaderElectionNamespace: o.leaderElectionNS,
		// The process exits right after losing the lease, so a new leader
		// never overlaps with a stale one.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := controllers.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	rel := &controllers.FirmwareReleaseReconciler{
		Client:         mgr.GetClient(),
		APIReader:      mgr.GetAPIReader(),
		Recorder:       mgr.GetEventRecorder("otaflow-manager"),
		Blobs:          blobs,
		Fetcher:        fetch.New(fetch.Options{MaxBytes: o.maxImageSize, Egress: policy}),
		Clock:          clock.RealClock{},
		FetchTimeout:   o.fetchTimeout,
		RetryBaseDelay: o.retryBase,
		RetryMaxDelay:  o.retryMax,

		MaxConcurrentBuilds: o.releaseBuilds,
	}
	if err := rel.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up FirmwareRelease controller: %w", err)
	}
	ro := &controllers.RolloutReconciler{
		Client:     mgr.GetClient(),
		Recorder:   mgr.GetEventRecorder("otaflow-manager"),
		Clock:      clock.RealClock{},
		StaleAfter: o.staleAfter,
	}
	if err := ro.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up Rollout controller: %w", err)
	}
	if err := (&controllers.DeviceEnrollmentReconciler{Client: mgr.GetClient(), Clock: clock.RealClock{}}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("set up DeviceEnrollment controller: %w", err)
	}
	if err := metrics.Registry.Register(controllers.NewRolloutCollector(mgr.GetClient())); err != nil {
		return fmt.Errorf("register rollout metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	log.Info("starting manager", "blobStore", blobURL, "namespaces", o.namespaces, "egress", policy.String())
	return mgr.Start(ctx)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
