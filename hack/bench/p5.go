package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/testenv"
	"github.com/otaflow/otaflow/otaserver/reporter"
)

// countingRT counts API write requests.
type countingRT struct {
	next   http.RoundTripper
	writes *atomic.Int64
}

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.Method {
	case http.MethodPatch, http.MethodPut, http.MethodPost, http.MethodDelete:
		c.writes.Add(1)
	}
	return c.next.RoundTrip(r)
}

// runP5 runs the reporter against a real API server (envtest) for a fleet
// of p5-small then p5-large devices whose states change continuously, and
// counts its write requests.
func runP5(ctx context.Context, c config, res *Results) error {
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = otav1.AddToScheme(scheme)
	var writes atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingRT{next: rt, writes: &writes} }
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}); err != nil {
		return err
	}
	dir := filepath.Join(c.WorkDir, "p5")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 64<<10, 1)
	if err != nil {
		return err
	}
	perMin := map[int]float64{}
	for _, n := range []int{c.P5Small, c.P5Large} {
		name := fmt.Sprintf("fleet-%d", n)
		ro, err := harness.SampleRollout()
		if err != nil {
			return err
		}
		ro.Namespace, ro.Name = benchNS, name
		ro.Spec.ReleaseRef.Name = "fw-2"
		ro.Spec.Waves = []otav1.Wave{{Name: "canary", Devices: intstr.FromString("1%")}, {Name: "early", Devices: intstr.FromString("10%")}, {Name: "all", Devices: intstr.FromString("100%")}}
		if err := k8s.Create(ctx, ro); err != nil {
			return fmt.Errorf("create rollout: %w", err)
		}
		// The server's catalog view of this rollout: the fixture's, renamed.
		snap := fx.Snapshot()
		sro := *snap.Rollouts[0]
		sro.Name, sro.UID = name, "uid-"+name
		snap.Rollouts[0] = &sro
		db := filepath.Join(dir, name+".db")
		if _, err := seed(ctx, db, "p5-", n); err != nil {
			return err
		}
		store, err := sqlite.Open(ctx, db, sqlite.Options{})
		if err != nil {
			return err
		}
		rep, err := reporter.New(reporter.Config{Client: k8s, Catalog: staticCatalog{snap}, Store: store, Interval: 2 * time.Second})
		if err != nil {
			store.Close()
			return err
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = rep.Run(rctx); close(done) }()
		t0 := time.Now()
		for { // the first cycle syncs the fleet
			if _, ok := rep.Cutoffs(sro.UID); ok || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sync := time.Since(t0)
		time.Sleep(3 * time.Second)
		// Devices keep changing state: offers, then progress, at a steady
		// rate independent of fleet size.
		mctx, mcancel := context.WithCancel(rctx)
		changes := atomic.Int64{}
		go mutate(mctx, store, sro.UID, n, &changes)
		time.Sleep(2 * time.Second)
		before := writes.Load()
		time.Sleep(c.P5Window)
		w := writes.Load() - before
		mcancel()
		cancel()
		<-done
		store.Close()
		pm := float64(w) * float64(time.Minute) / float64(c.P5Window)
		perMin[n] = pm
		res.raw("P5 fleet %d: %d API writes in %s (%.1f/min), %d device state changes, first cycle (fleet sync) %s", n, w, c.P5Window, pm, changes.Load(), sync.Round(time.Millisecond))
	}
	small, large := perMin[c.P5Small], perMin[c.P5Large]
	res.add(Row{ID: "P5", Measure: fmt.Sprintf("apiserver write requests per minute during a rollout, fleet of %d vs %d devices (states changing continuously)", c.P5Small, c.P5Large),
		Figure: fmt.Sprintf("%.0f/min (%d) vs %.0f/min (%d)", small, c.P5Small, large, c.P5Large),
		Ratio:  fmt.Sprintf("%.2f", large/max(small, 1)), Target: "equal: writes do not grow with the fleet", Result: passIf(large <= small*1.1+1),
		Command: fmt.Sprintf("go run ./hack/bench --only=p5 --p5-small=%d --p5-large=%d --p5-window=%s", c.P5Small, c.P5Large, c.P5Window),
		Notes:   fmt.Sprintf("reporter (interval 2 s) against envtest's kube-apiserver, writes counted in a wrapped rest.Config transport over a %s window, scaled to a minute", c.P5Window)})
	return nil
}

// mutate changes device states at about 500 per second.
func mutate(ctx context.Context, s *sqlite.Store, uid string, n int, changes *atomic.Int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	steps := []rollout.State{rollout.StateDownloading, rollout.StateDownloaded, rollout.StateInstalling, rollout.StateInstalled}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for seq := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range 10 {
			seq++
			i := rng.IntN(n/2) * 2 // region eu devices
			id := deviceID("p5-", i)
			_, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: id, ReportID: fmt.Sprint(seq), RolloutUID: uid, At: time.Now()},
				func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
					r.State = steps[rng.IntN(len(steps))]
					r.UpdatedAt = time.Now()
					return r, nil, nil
				})
			if err != nil { // no record yet: offer
				now := time.Now()
				_ = s.PutRecord(ctx, devicestore.Record{RolloutUID: uid, DeviceID: id, Wave: 0, State: rollout.StateOffered,
					Release: benchNS + "/fw-2", Version: "2.0.0", Blob: "b", OfferedAt: now, UpdatedAt: now}, nil)
			}
			changes.Add(1)
		}
	}
}
