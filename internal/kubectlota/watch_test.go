package kubectlota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// watching runs `kubectl ota status ... --watch` in the background.
type watching struct {
	out, errOut syncBuffer
	done        chan error
	cancel      context.CancelFunc
}

func startWatch(t *testing.T, args ...string) *watching {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	w := &watching{done: make(chan error, 1), cancel: cancel}
	go func() { w.done <- execute(ctx, &w.out, &w.errOut, env.kubeconfig, args...) }()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// waitFor waits until the output has n reports with want in the last.
func (w *watching) waitFor(t *testing.T, n int, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		reports := w.reports()
		if len(reports) >= n && strings.Contains(reports[len(reports)-1], want) {
			return
		}
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("the watch ended (%v) before report %d showed %q:\n%s", err, n, want, w.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no report %d with %q after 30s:\n%s", n, want, w.out.String())
}

// reports splits the output at the watch's separators.
func (w *watching) reports() []string {
	return strings.Split(w.out.String(), "\n--- ")
}

// running checks that the watch has not ended within a while.
func (w *watching) running(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		t.Fatalf("the watch ended (%v) while the rollout is not finished:\n%s", err, w.out.String())
	case <-time.After(within):
	}
}

// ended waits for the watch to end and returns its error.
func (w *watching) ended(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("the watch did not end:\n%s", w.out.String())
		return nil
	}
}

func TestWatchEndsOnSuccess(t *testing.T) {
	ns := namespace(t, "watch-demo")
	createRelease(t, ns)
	ro := newRollout(ns)
	ro.Spec.ApprovedWave = "canary"
	createRollout(t, ro, progressingStatus())

	w := startWatch(t, "status", rolloutName, "-n", ns, "--watch")
	w.waitFor(t, 1, "Phase:      Progressing")
	w.running(t, time.Second)

	// The OTA server reports more successes: a new report, still watching.
	s := progressingStatus()
	s.Waves[1].Succeeded, s.Waves[1].InProgress = 33, 0
	s.Progress = "43/200"
	setStatus(t, ro, s)
	w.waitFor(t, 2, "progress 43/200")
	w.running(t, time.Second)

	// The rollout moves on, in a goroutine as the controller would, and
	// succeeds: the watch prints it and ends with no error.
	go func() {
		time.Sleep(200 * time.Millisecond)
		ro := &otav1.Rollout{}
		if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: rolloutName}, ro); err != nil {
			t.Errorf("get: %v", err)
			return
		}
		ro.Status = succeededStatus()
		ro.Status.ObservedGeneration = ro.Generation
		if err := env.k8s.Status().Update(context.Background(), ro); err != nil {
			t.Errorf("status: %v", err)
		}
	}()
	if err := w.ended(t); err != nil {
		t.Fatalf("the watch ended with %v", err)
	}
	reports := w.reports()
	last := reports[len(reports)-1]
	if !strings.Contains(last, "Phase:      Succeeded") || !strings.Contains(last, "3 all     100%     [####################]") {
		t.Errorf("the last report is not the succeeded rollout:\n%s", last)
	}
	if len(reports) != 3 {
		t.Errorf("%d reports, want 3 (one per version):\n%s", len(reports), w.out.String())
	}
	golden(t, "watch", "$ kubectl ota status "+rolloutName+" -n "+ns+" --watch\n"+w.out.String())
}

func TestWatchContinuousEndsOnlyOnAbort(t *testing.T) {
	ns := namespace(t, "watch-continuous")
	createRelease(t, ns)
	ro := newRollout(ns)
	ro.Spec.TargetSelection = otav1.TargetContinuous
	createRollout(t, ro, succeededStatus())

	w := startWatch(t, "status", rolloutName, "-n", ns, "--watch")
	w.waitFor(t, 1, "Phase:      Succeeded")
	// A device joins and takes the release: still watching.
	s := succeededStatus()
	s.Fleet.Size, s.Waves[2].Targeted, s.Waves[2].Succeeded, s.Progress = 201, 151, 151, "201/201"
	setStatus(t, ro, s)
	w.waitFor(t, 2, "progress 201/201")
	w.running(t, 2*time.Second)

	s.Phase, s.AbortReason = otav1.RolloutAborted, "AbortRequested: spec.abort is set"
	s.Conditions = []metav1.Condition{cond("Ready", metav1.ConditionFalse, "Aborted", s.AbortReason, 0)}
	setStatus(t, ro, s)
	if err := w.ended(t); err != nil {
		t.Fatalf("the watch ended with %v", err)
	}
	if !strings.Contains(w.out.String(), "Aborted:    AbortRequested: spec.abort is set") {
		t.Errorf("the abort is not shown:\n%s", w.out.String())
	}
}

func TestWatchFinishedAlready(t *testing.T) {
	ns := namespace(t, "watch-finished")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), abortedStatus())
	r := run(t, "status", rolloutName, "-n", ns, "--watch")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if strings.Count(r.out, "Rollout:") != 1 {
		t.Errorf("want one report:\n%s", r.out)
	}
}

func TestWatchTimeout(t *testing.T) {
	ns := namespace(t, "watch-timeout")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), progressingStatus())
	start := time.Now()
	r := run(t, "status", rolloutName, "-n", ns, "--watch", "--timeout", "1s")
	if r.err == nil || !strings.Contains(r.err.Error(), "did not finish within --timeout 1s") || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the timeout", r.err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the timeout took %s", d)
	}
}

func TestWatchCanceled(t *testing.T) {
	ns := namespace(t, "watch-canceled")
	createRelease(t, ns)
	createRollout(t, newRollout(ns), progressingStatus())
	w := startWatch(t, "status", rolloutName, "-n", ns, "--watch")
	w.waitFor(t, 1, "Phase:      Progressing")
	w.cancel() // Ctrl-C
	if err := w.ended(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the cancellation", err)
	}
}

func TestWatchJSON(t *testing.T) {
	ns := namespace(t, "watch-json")
	createRelease(t, ns)
	ro := newRollout(ns)
	createRollout(t, ro, awaitingApprovalStatus())
	w := startWatch(t, "status", rolloutName, "-n", ns, "--watch", "-o", "json")
	w.waitFor(t, 1, `"phase": "Paused"`)
	setStatus(t, ro, abortedStatus())
	if err := w.ended(t); err != nil {
		t.Fatal(err)
	}
	out := w.out.String()
	if strings.Count(out, `"kind": "Rollout"`) != 2 || !strings.Contains(out, `"phase": "Aborted"`) || strings.Contains(out, "\n--- ") {
		t.Errorf("want two JSON objects and no separators:\n%s", out)
	}
}
