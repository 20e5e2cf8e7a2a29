// Command manager runs the otaflow controllers: FirmwareRelease (verify and
// encrypt images once) and Rollout (canary waves, gates, abort).
package main

import (
	"context"
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
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/fetch"
)

type options struct {
	metricsAddr, probeAddr string
	leaderElect            bool
	leaderElectionNS       string
	namespaces             string
	blobDir                string
	maxImageSize           int64
	fetchTimeout           time.Duration
	retryBase, retryMax    time.Duration
	staleAfter             time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader, so only one replica reconciles.")
	flag.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's).")
	flag.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	flag.StringVar(&o.blobDir, "blob-dir", "/var/lib/otaflow/blobs", "Directory of the encrypted blob store, shared with the OTA server.")
	flag.Int64Var(&o.maxImageSize, "max-image-size", 2<<30, "Largest firmware image accepted, in bytes.")
	flag.DurationVar(&o.fetchTimeout, "fetch-timeout", 30*time.Minute, "Time limit for fetching, verifying and encrypting one image.")
	flag.DurationVar(&o.retryBase, "retry-base-delay", 2*time.Second, "First retry delay after a transient failure (doubles each time).")
	flag.DurationVar(&o.retryMax, "retry-max-delay", 5*time.Minute, "Longest retry delay after transient failures.")
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

	if o.maxImageSize <= 0 {
		return fmt.Errorf("--max-image-size must be positive, got %d", o.maxImageSize)
	}
	blobs, err := blobstore.NewFS(o.blobDir)
	if err != nil {
		return fmt.Errorf("open blob store %s: %w", o.blobDir, err)
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
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
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
		Fetcher:        fetch.New(fetch.Options{MaxBytes: o.maxImageSize}),
		Clock:          clock.RealClock{},
		FetchTimeout:   o.fetchTimeout,
		RetryBaseDelay: o.retryBase,
		RetryMaxDelay:  o.retryMax,
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
	if err := metrics.Registry.Register(controllers.NewRolloutCollector(mgr.GetClient())); err != nil {
		return fmt.Errorf("register rollout metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	log.Info("starting manager", "blobDir", o.blobDir, "namespaces", o.namespaces)
	return mgr.Start(ctx)
}
