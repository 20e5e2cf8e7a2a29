package integration_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

var (
	k8s     client.Client
	cfg     *rest.Config
	scheme  *runtime.Scheme
	blobs   *blobstore.FS
	images  *releasetest.ImageServer
	rootCtx context.Context
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	s, err := releasetest.Start(releasetest.Options{TempPrefix: "otaserver-it-"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // fail, never skip, without binaries
		return 1
	}
	defer s.Close()
	k8s, cfg, scheme, blobs, images, rootCtx = s.Client, s.Config, s.Scheme, s.Blobs, s.Images, s.Ctx
	code := m.Run()
	s.Stop()
	return code
}
