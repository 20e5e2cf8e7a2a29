package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/reporter"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// The suite runs a real control plane (envtest), the FirmwareRelease
// controller, and an OTA server wired as cmd/otaserver wires it, with a
// catalog over all namespaces. Tests play the Rollout controller's part.
var (
	k8s       client.Client
	rootCtx   context.Context
	images    *releasetest.ImageServer
	serverURL string
	signer    *assignment.Signer
	assignPEM []byte
	cat       *catalog.Catalog
	rep       *reporter.Reporter
	// suite and devStore let a test run more OTA servers on the suite's
	// control plane, blob store and device store (replicas).
	suite    *releasetest.Suite
	devStore *sqlite.Store
)

const bootstrap = "factory-token-0123456789abcdef0123456789"

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	s, err := releasetest.Start(releasetest.Options{TempPrefix: "agent-it-", MaxImageSize: 4 << 20})
	if err != nil {
		return fail(err) // fail, never skip, without binaries
	}
	defer s.Close()
	suite = s
	k8s, rootCtx, images = s.Client, s.Ctx, s.Images
	ctx := s.Ctx

	store, err := sqlite.Open(ctx, filepath.Join(s.Dir, "devices.db"), sqlite.Options{})
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	devStore = store
	cat, err = catalog.NewWithOptions(s.Config, s.Scheme, nil, catalog.Options{Build: catalog.BuildOptions{ClusterWideDevices: true}})
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
		Store: store, Catalog: cat, Cutoffs: rep, Blobs: s.Blobs, Signer: signer, Tokens: tokens,
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
	s.Stop()
	return code
}
