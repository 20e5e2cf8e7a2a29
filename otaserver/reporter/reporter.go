// Package reporter turns the device store into Rollout status. Every
// --report-interval it, for each rollout: brings the rollout's fleet up to
// date with the devices enrolled since the last pass, recomputes the wave
// cutoffs, times out stale offers, reads the counters the store maintains
// (devicestore.Store.Counts), and applies the server's status fields with
// server-side apply (field manager otaflow-otaserver) — only when they
// changed, so API writes do not grow with the fleet.
//
// Only the leader replica runs it. Its fleet-sync cursor and the cutoffs
// it computes are kept in the store (devicestore.RolloutState): a new
// leader resumes from them instead of rescanning every device, and other
// replicas serve the same cutoffs (package otaserver/cutoffs).
package reporter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// FieldOwner is the server's field manager for Rollout status.
const FieldOwner = "otaflow-otaserver"

// ReportIDRetention is how long processed report IDs are remembered.
const ReportIDRetention = 7 * 24 * time.Hour

// MaxRecentFailures bounds status.recentFailures (the CRD allows 20).
const MaxRecentFailures = 20

// Catalog provides the rollouts.
type Catalog interface {
	Snapshot() *catalog.Snapshot
}

// Config wires a Reporter.
type Config struct {
	Client   client.Client // status subresource Apply only
	Catalog  Catalog
	Store    devicestore.Store
	Interval time.Duration
	// ApplyTimeout bounds one status apply.
	ApplyTimeout time.Duration
	// Heartbeat: status is applied at least this often even when no
	// counter changed, so status.fleet.reportedAt shows the server is
	// alive (default 30s).
	Heartbeat  time.Duration
	Log        logr.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Reporter computes fleets, cutoffs and counters, and writes status.
type Reporter struct {
	cfg Config
	metrics

	mu      sync.RWMutex
	cutoffs map[string][]uint64 // published for the request path

	// Owned by the cycle goroutine.
	fleets map[string]*fleetState
	last   map[string]applied // rollout UID → last applied status
}

// applied is a status the server applied: its comparable form and when.
type applied struct {
	key string
	at  time.Time
}

// fleetState is the cycle's view of a rollout's stored state
// (devicestore.RolloutState): read once when this replica starts leading,
// written back when it changes.
type fleetState struct {
	key         types.NamespacedName
	seq         int64
	selectorKey string
	cutoffs     []uint64
	stored      bool // the store holds this state (as of the last write)
}

// New creates a Reporter.
func New(cfg Config) (*Reporter, error) {
	if cfg.Catalog == nil || cfg.Store == nil {
		return nil, fmt.Errorf("reporter: Catalog and Store are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 30 * time.Second
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client != nil {
		cfg.Client = applyTagged{cfg.Client}
	}
	r := &Reporter{
		cfg:     cfg,
		metrics: newMetrics(),
		cutoffs: map[string][]uint64{},
		fleets:  map[string]*fleetState{},
		last:    map[string]applied{},
	}
	if cfg.Registerer != nil {
		if err := r.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Cutoffs returns the wave cutoffs of a rollout once its fleet was synced.
func (r *Reporter) Cutoffs(rolloutUID string) ([]uint64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.cutoffs[rolloutUID]
	return c, ok
}

// Run runs a cycle every interval until ctx ends. Errors are logged and
// retried on the next cycle: devices keep being served meanwhile.
func (r *Reporter) Run(ctx context.Context) error {
	// Each run is a term as leader: what the last term knew may be stale
	// (another replica led in between), so start from the store's state
	// and apply status afresh.
	r.fleets = map[string]*fleetState{}
	r.last = map[string]applied{}
	r.leading.Set(1)
	defer r.leading.Set(0)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	var pruned time.Time
	for {
		r.Cycle(ctx)
		if now := r.cfg.Now(); now.Sub(pruned) > time.Hour {
			// Report IDs only guard against retries, which stop long before this.
			if _, err := r.cfg.Store.PruneReports(ctx, now.Add(-ReportIDRetention)); err != nil && ctx.Err() == nil {
				r.errs.WithLabelValues(StagePrune).Inc()
				r.cfg.Log.Error(err, "prune report IDs")
			}
			pruned = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Cycle runs one reporting pass over every rollout. A pass that reported
// every rollout without an error sets the last-success time: the
// "not reporting" alert watches it. Errors forgetting deleted rollouts
// are counted but do not make a pass fail, since every live rollout's
// status was still written.
func (r *Reporter) Cycle(ctx context.Context) {
	start := time.Now()
	defer func() { r.cycleTime.Observe(time.Since(start).Seconds()) }()
	snap := r.cfg.Catalog.Snapshot()
	seen := map[string]bool{}
	failed := false
	for _, ro := range snap.Rollouts {
		seen[ro.UID] = true
		err := r.rollout(ctx, ro)
		if err == nil {
			continue
		}
		failed = true
		if ctx.Err() == nil {
			stage := stageOf(err, StageCounts)
			r.errs.WithLabelValues(stage).Inc()
			r.cfg.Log.Error(err, "report rollout", "rollout", ro.Key(), "stage", stage)
		}
	}
	for uid, st := range r.fleets {
		if !seen[uid] {
			r.forget(ctx, uid, st.key)
		}
	}
	if !failed && ctx.Err() == nil {
		r.lastSuccess.Set(float64(r.cfg.Now().UnixNano()) / 1e9)
	}
}

// forget drops a deleted rollout's data, once the API server confirms no
// rollout with that UID exists: a catalog that lost it for any other
// reason (a cache not yet synced, a decoding problem) must never cost its
// records, fleet and failure log.
func (r *Reporter) forget(ctx context.Context, uid string, key types.NamespacedName) {
	if r.cfg.Client != nil {
		var ro otav1.Rollout
		err := r.cfg.Client.Get(ctx, key, &ro)
		switch {
		case err == nil && string(ro.UID) == uid:
			r.cfg.Log.Info("rollout missing from the catalog but present in the API; keeping its data", "rollout", key)
			return
		case err != nil && !apierrors.IsNotFound(err):
			r.forgetFailed(ctx)
			r.cfg.Log.Error(err, "check a rollout missing from the catalog; keeping its data", "rollout", key)
			return
		}
	}
	if err := r.cfg.Store.ForgetRollout(ctx, uid); err != nil {
		r.forgetFailed(ctx)
		r.cfg.Log.Error(err, "forget deleted rollout", "uid", uid)
		return
	}
	delete(r.fleets, uid)
	delete(r.last, uid)
	r.mu.Lock()
	delete(r.cutoffs, uid)
	r.mu.Unlock()
}

func (r *Reporter) forgetFailed(ctx context.Context) {
	if ctx.Err() == nil {
		r.errs.WithLabelValues(StageForget).Inc()
	}
}

// frozen reports whether a rollout's fleet no longer changes: its spec
// cannot be applied (it keeps the fleet it had, so its counts stay
// meaningful while the controller reports the problem), it aborted, or it
// succeeded with Snapshot targeting (it never acts on devices that join
// later, so they do not join its fleet or its counts).
func frozen(ro *catalog.Rollout) bool {
	v := ro.View
	return ro.Problem != "" || v.Phase == rollout.Aborted || v.Abort || v.Phase == rollout.Succeeded && !v.Continuous
}

func (r *Reporter) rollout(ctx context.Context, ro *catalog.Rollout) error {
	if ro.Release == nil {
		return nil // no fleet without device types; status stays as it is
	}
	if err := r.syncFleet(ctx, ro, frozen(ro)); err != nil {
		return inStage(StageFleetSync, err)
	}
	now := r.cfg.Now()
	if _, err := r.cfg.Store.ExpireOffers(ctx, ro.UID, now.Add(-ro.DeviceTimeout), now); err != nil {
		return inStage(StageExpireOffers, err)
	}
	// Apply errors are tagged by applyTagged; the rest of report's are
	// the store's counts.
	return r.report(ctx, ro, now)
}
