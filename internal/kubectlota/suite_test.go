package kubectlota

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// suite is the control plane the rollout commands run against.
type suite struct {
	k8s        client.Client
	kubeconfig string
}

var env suite

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	cp, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cp.Stop() }()
	dir, err := os.MkdirTemp("", "kubectl-ota-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	env.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(env.kubeconfig, cp.Kubeconfig(), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(otav1.AddToScheme(scheme))
	env.k8s, err = client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// now is the plugin's clock in these tests, so ages in the output are
// stable; the status the tests write is dated from it.
var now = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *metav1.Time {
	t := metav1.NewTime(now.Add(-d))
	return &t
}

// result is one run of the plugin.
type result struct {
	out, errOut string
	err         error
}

// run runs `kubectl ota args...` against the suite's control plane.
func run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := execute(ctx, &out, &errOut, env.kubeconfig, args...)
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

func execute(ctx context.Context, out, errOut interface{ Write([]byte) (int, error) }, kubeconfig string, args ...string) error {
	cmd := newCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}, func() time.Time { return now })
	cmd.SetArgs(append(args, "--kubeconfig", kubeconfig))
	return cmd.ExecuteContext(ctx)
}

// transcript records commands and their output the way a terminal shows
// them, for golden files (and the examples in docs/kubectl.md).
type transcript struct{ b strings.Builder }

func (tr *transcript) add(args []string, r result) {
	fmt.Fprintf(&tr.b, "$ kubectl ota %s\n", strings.Join(args, " "))
	// Warnings are written before the output.
	tr.b.WriteString(r.errOut)
	tr.b.WriteString(r.out)
	if r.err != nil {
		fmt.Fprintf(&tr.b, "error: %v\n", r.err)
	}
	tr.b.WriteString("\n")
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// syncBuffer is a buffer a running command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// namespace creates a namespace for one test. Its name is fixed, for the
// transcripts; envtest deletes no namespace, so a test run again (-count)
// finds it and reuses it, the objects of the last run being deleted.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// deleteAtEnd deletes obj when the test ends.
func deleteAtEnd(t *testing.T, obj client.Object) {
	t.Cleanup(func() {
		if err := env.k8s.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", obj.GetName(), err)
		}
	})
}
