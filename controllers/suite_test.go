package controllers_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch/fetchtest"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

// maxImageSize is the manager's image cap in these tests.
const maxImageSize = 1 << 20

var (
	k8s    client.Client
	blobs  *blobstore.FS
	images *releasetest.ImageServer
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

// The suite's egress policy is the manager's default (loopback, link-local
// and cluster-internal addresses refused) with one allowlist entry,
// *.allowed.test: test servers listen on 127.0.0.1 and are addressed by
// names under it, so a URL naming 127.0.0.1 itself is refused as it would
// be in a cluster. Names under example.test resolve to 127.0.0.1 too but are
// not allowlisted: they stand for a DNS name pointing at loopback.
const allowedDomain = "allowed.test"

// allowed renames a test server's URL (or host:port) from 127.0.0.1 to
// name.allowed.test.
func allowed(u, name string) string {
	return strings.Replace(u, "127.0.0.1:", name+"."+allowedDomain+":", 1)
}

func runSuite(m *testing.M) int {
	policy, err := egress.New(egress.Config{Allow: []string{"*." + allowedDomain}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := releasetest.Start(releasetest.Options{
		Egress:       policy,
		Resolver:     fetchtest.LoopbackDomains{allowedDomain, "example.test"},
		ImageHost:    "images." + allowedDomain,
		Logger:       zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapLevel()), zap.StacktraceLevel(zapcore.PanicLevel)),
		TempPrefix:   "otaflow-blobs-",
		MaxImageSize: maxImageSize,
		Setup: func(mgr ctrl.Manager) error {
			ro := &controllers.RolloutReconciler{
				Client:   mgr.GetClient(),
				Recorder: mgr.GetEventRecorder("otaflow-manager"),
				// Short enough for TestRolloutStaleCounts, long enough
				// for the other tests' pauses between reports.
				StaleAfter: staleAfter,
			}
			if err := ro.SetupWithManager(mgr); err != nil {
				return err
			}
			return (&controllers.DeviceEnrollmentReconciler{Client: mgr.GetClient()}).SetupWithManager(context.Background(), mgr)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	k8s, blobs, images = s.Client, s.Blobs, s.Images
	code := m.Run()
	s.Stop()
	return code
}

// staleAfter is the Rollout controller's --counts-stale-after in the suite.
const staleAfter = 15 * time.Second

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel // keep test output readable
}

// newNamespace makes a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	return releasetest.NewNamespace(t, k8s, "t-")
}

// waitCondition waits for a release condition with the given status and reason.
func waitCondition(t *testing.T, key client.ObjectKey, typ string, status metav1.ConditionStatus, reason string) *otav1.FirmwareRelease {
	t.Helper()
	rel := &otav1.FirmwareRelease{}
	releasetest.Eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), key, rel); err != nil {
			return err
		}
		c := meta.FindStatusCondition(rel.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition yet; conditions: %+v", typ, rel.Status.Conditions)
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s is %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
		}
		return nil
	})
	return rel
}
