package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/assignment"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/testenv"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/reporter"
)

// The suite runs a real control plane (envtest), the FirmwareRelease
// controller, and an OTA server wired as cmd/otaserver wires it, with a
// catalog over all namespaces. Tests play the Rollout controller's part.
var (
	k8s       client.Client
	rootCtx   context.Context
	blobs     *blobstore.FS
	images    = newImageServer()
	serverURL string
	signer    *assignment.Signer
	assignPEM []byte
	cat       *catalog.Catalog
	rep       *reporter.Reporter
)

const bootstrap = "factory-token"

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	env, err := testenv.Start()
	if err != nil {
		return fail(err) // fail, never skip, without binaries
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(otav1.AddToScheme(scheme))

	dir, err := os.MkdirTemp("", "agent-it-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if blobs, err = blobstore.NewFS(filepath.Join(dir, "blobs")); err != nil {
		return fail(err)
	}
	imgSrv := httptest.NewServer(images)
	defer imgSrv.Close()
	images.base = imgSrv.URL

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rootCtx = ctx
	if err := controllers.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fail(err)
	}
	rel := &controllers.FirmwareReleaseReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("otaflow-manager"),
		Blobs: blobs, Fetcher: fetch.New(fetch.Options{MaxBytes: 4 << 20, IdleReadTimeout: 5 * time.Second}),
		FetchTimeout: 30 * time.Second, RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: time.Second,
	}
	if err := rel.SetupWithManager(mgr); err != nil {
		return fail(err)
	}
	k8s = mgr.GetClient()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fail(fmt.Errorf("cache did not sync"))
	}

	store, err := sqlite.Open(ctx, filepath.Join(dir, "devices.db"), sqlite.Options{})
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	cat, err = catalog.New(env.Config, scheme, nil)
	if err != nil {
		return fail(err)
	}
	go func() { _ = cat.Start(ctx) }()
	if !cat.WaitForSync(ctx) {
		return fail(fmt.Errorf("catalog did not sync"))
	}
	reg := prometheus.NewRegistry()
	rep, err = reporter.New(reporter.Config{Client: k8s, Catalog: cat, Store: store, Interval: 200 * time.Millisecond, Log: logr.Discard(), Registerer: reg})
	if err != nil {
		return fail(err)
	}
	go func() { _ = rep.Run(ctx) }()
	_, signKey, _ := ed25519.GenerateKey(rand.Reader)
	if signer, err = assignment.NewSigner(signKey); err != nil {
		return fail(err)
	}
	if assignPEM, err = assignment.MarshalPublicKeyPEM(signKey.Public()); err != nil {
		return fail(err)
	}
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"t": []byte(bootstrap)})
	srv, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: cat, Cutoffs: rep, Blobs: blobs, Signer: signer, Tokens: tokens,
		Metrics: otaserver.NewMetrics(reg), Log: logr.Discard(), DeviceRate: 1000, DeviceBurst: 1000,
	})
	if err != nil {
		return fail(err)
	}
	go func() { _ = srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	serverURL = hs.URL

	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return code
}

// imageServer serves firmware images to the release controller.
type imageServer struct {
	base  string
	files map[string][]byte
	mu    chan struct{}
}

func newImageServer() *imageServer {
	return &imageServer{files: map[string][]byte{}, mu: make(chan struct{}, 1)}
}

func (s *imageServer) put(path string, b []byte) string {
	s.mu <- struct{}{}
	s.files[path] = b
	<-s.mu
	return s.base + path
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu <- struct{}{}
	b, ok := s.files[r.URL.Path]
	<-s.mu
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}
