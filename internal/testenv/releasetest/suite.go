// Package releasetest runs, for tests, a control plane (envtest) with a
// manager whose FirmwareRelease controller turns releases Ready: it fetches
// images from an in-process image server and stores artifacts in a blob
// store on disk. It also has the helpers such tests share: vendor signing
// keys, polling, namespaces.
package releasetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpproxy"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv"
)

// Scheme has the Kubernetes and otaflow types.
func Scheme() *runtime.Scheme { return harness.Scheme() }

// Options tune Start. Zero values take the defaults.
type Options struct {
	// Logger is the controller-runtime logger; by default errors only, to
	// stderr.
	Logger logr.Logger
	// TempPrefix names the suite's temporary directory.
	TempPrefix string
	// MaxImageSize caps a fetched image; default 1 MiB.
	MaxImageSize int64
	// RetryBaseDelay and RetryMaxDelay bound the release controller's
	// retries; default 100ms and 1s.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Setup adds more to the manager (other reconcilers) before it starts.
	Setup func(ctrl.Manager) error
	// Egress is the fetcher's egress policy; by default loopback
	// (127.0.0.0/8, ::1), where the image server listens, is allowlisted.
	Egress *egress.Policy
	// Resolver resolves the fetcher's host names; default the system's.
	Resolver egress.Resolver
	// ImageHost names the image server in its URLs instead of 127.0.0.1,
	// for a suite whose policy refuses loopback: Resolver must resolve it
	// to 127.0.0.1 and Egress admit it.
	ImageHost string
}

// Suite is a running control plane and manager.
type Suite struct {
	Env    *testenv.Env
	Config *rest.Config
	Scheme *runtime.Scheme
	// Client is the manager's client.
	Client client.Client
	// Dir is a temporary directory, removed by Close; Blobs is under it.
	Dir    string
	Blobs  *blobstore.FS
	Images *ImageServer
	// Ctx lives until Stop.
	Ctx context.Context

	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// Start starts envtest, the image server, the blob store and the manager,
// and waits for the manager's cache. It fails (never skips) when the envtest
// binaries are missing.
func Start(opts Options) (_ *Suite, err error) {
	if opts.Logger.GetSink() == nil {
		opts.Logger = zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel))
	}
	if opts.TempPrefix == "" {
		opts.TempPrefix = "otaflow-it-"
	}
	if opts.MaxImageSize == 0 {
		opts.MaxImageSize = 1 << 20
	}
	if opts.RetryBaseDelay == 0 {
		opts.RetryBaseDelay = 100 * time.Millisecond
	}
	if opts.RetryMaxDelay == 0 {
		opts.RetryMaxDelay = time.Second
	}
	if opts.Egress == nil {
		p, err := egress.New(egress.Config{Allow: []string{"127.0.0.0/8", "::1"}})
		if err != nil {
			return nil, err
		}
		opts.Egress = p
	}
	ctrl.SetLogger(opts.Logger)

	s := &Suite{Scheme: Scheme()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Env, err = testenv.Start(); err != nil {
		return nil, err
	}
	s.Config = s.Env.Config
	if s.Dir, err = os.MkdirTemp("", opts.TempPrefix); err != nil {
		return nil, err
	}
	if s.Blobs, err = blobstore.NewFS(filepath.Join(s.Dir, "blobs")); err != nil {
		return nil, err
	}
	files, err := harness.StartFileServer()
	if err != nil {
		return nil, err
	}
	s.Images = &ImageServer{FileServer: files, host: opts.ImageHost}

	mgr, err := ctrl.NewManager(s.Config, ctrl.Options{
		Scheme:  s.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, err
	}
	s.Ctx, s.cancel = context.WithCancel(context.Background())
	if err := controllers.SetupIndexes(s.Ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	rel := &controllers.FirmwareReleaseReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("otaflow-manager"),
		Blobs:     s.Blobs,
		Fetcher: fetch.New(fetch.Options{
			MaxBytes: opts.MaxImageSize, IdleReadTimeout: 5 * time.Second,
			Egress: opts.Egress, Resolver: opts.Resolver,
			Proxy: &httpproxy.Config{}, // the test servers are local
		}),
		FetchTimeout:   30 * time.Second,
		RetryBaseDelay: opts.RetryBaseDelay,
		RetryMaxDelay:  opts.RetryMaxDelay,
	}
	if err := rel.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if opts.Setup != nil {
		if err := opts.Setup(mgr); err != nil {
			return nil, err
		}
	}
	s.Client = mgr.GetClient()
	s.done = make(chan error, 1)
	go func() { s.done <- mgr.Start(s.Ctx) }()
	if !mgr.GetCache().WaitForCacheSync(s.Ctx) {
		return nil, fmt.Errorf("cache did not sync")
	}
	return s, nil
}

// Stop cancels Ctx and waits for the manager, reporting its error on
// stderr. Stopping twice does nothing.
func (s *Suite) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.cancel != nil {
		s.cancel()
	}
	if s.done != nil {
		if err := <-s.done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}
}

// Close stops the manager if it runs, then the image server and the control
// plane, and removes Dir.
func (s *Suite) Close() {
	s.Stop()
	if s.Images != nil {
		_ = s.Images.Close()
	}
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
	if s.Env != nil {
		_ = s.Env.Stop()
	}
}
