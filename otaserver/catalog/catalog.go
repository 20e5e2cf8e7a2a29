// Package catalog is the OTA server's view of FirmwareReleases, Rollouts
// and their content keys. Releases and rollouts come from an informer
// cache; content keys from a GET per key Secret (keys.go), so the server
// needs no list or watch of Secrets. Requests read an immutable,
// precompiled Snapshot (rollouts ordered oldest first, selectors compiled,
// content keys in memory); events only mark it stale, and the next reader
// rebuilds it. No request ever calls the API server.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// Catalog serves snapshots built from an informer cache and the key loader.
type Catalog struct {
	cache cache.Cache
	keys  *keyLoader
	mu    sync.Mutex // serializes rebuilds
	snap  atomic.Pointer[Snapshot]
	stale atomic.Bool
	// gen counts rebuilds; the reporter uses it to skip idle cycles.
	gen       atomic.Uint64
	buildOpts BuildOptions
}

// Options tune a Catalog; the zero value is what cmd/otaserver uses.
type Options struct {
	// KeyTTL is how long a content key read from its Secret is used before
	// it is read again (DefaultKeyTTL when zero).
	KeyTTL time.Duration
	// Log receives key read errors (default: controller-runtime's logger,
	// named "catalog").
	Log logr.Logger
	// Build tunes snapshots (tenancy).
	Build BuildOptions
}

// New creates a catalog watching namespaces (all when empty).
func New(cfg *rest.Config, scheme *runtime.Scheme, namespaces []string) (*Catalog, error) {
	return NewWithOptions(cfg, scheme, namespaces, Options{})
}

// NewWithOptions is New with options.
func NewWithOptions(cfg *rest.Config, scheme *runtime.Scheme, namespaces []string, o Options) (*Catalog, error) {
	opts := cache.Options{Scheme: scheme}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("catalog: create cache: %w", err)
	}
	// A plain client: Get goes to the API server, nothing is cached.
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("catalog: create client: %w", err)
	}
	if o.KeyTTL <= 0 {
		o.KeyTTL = DefaultKeyTTL
	}
	cat := &Catalog{cache: c, buildOpts: o.Build}
	cat.keys = newKeyLoader(direct, o.KeyTTL, func() { cat.stale.Store(true) })
	cat.keys.log = o.Log
	if o.Log.GetSink() == nil {
		cat.keys.log = ctrllog.Log.WithName("catalog")
	}
	cat.snap.Store(Build(nil, nil, nil))
	cat.stale.Store(true)
	return cat, nil
}

// Start registers event handlers, runs the informers and, once they have
// synced, the key loader, until ctx ends.
func (c *Catalog) Start(ctx context.Context) error {
	mark := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.stale.Store(true) },
		UpdateFunc: func(any, any) { c.stale.Store(true) },
		DeleteFunc: func(any) { c.stale.Store(true) },
	}
	// A release event may name a new key Secret: read it now.
	markAndLoad := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.stale.Store(true); c.keys.poke() },
		UpdateFunc: func(any, any) { c.stale.Store(true); c.keys.poke() },
		DeleteFunc: func(any) { c.stale.Store(true); c.keys.poke() },
	}
	for obj, h := range map[client.Object]toolscache.ResourceEventHandlerFuncs{&otav1.Rollout{}: mark, &otav1.FirmwareRelease{}: markAndLoad} {
		inf, err := c.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("catalog: informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("catalog: handler for %T: %w", obj, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.cache.Start(ctx) }()
	if !c.cache.WaitForCacheSync(ctx) {
		if err := <-errc; err != nil {
			return err
		}
		return ctx.Err()
	}
	c.keys.run(ctx, func(ctx context.Context) ([]otav1.FirmwareRelease, error) {
		var l otav1.FirmwareReleaseList
		err := c.cache.List(ctx, &l)
		return l.Items, err
	})
	return <-errc
}

// WaitForSync blocks until the informers have listed everything once and
// the content keys of every servable release have been read once: only
// then does a snapshot tell devices the truth.
func (c *Catalog) WaitForSync(ctx context.Context) bool {
	select {
	case <-c.keys.loaded:
		return true
	case <-ctx.Done():
		return false
	}
}

// ErrNotSynced is Ready's answer before WaitForSync would return true.
var ErrNotSynced = errors.New("catalog: releases, rollouts and content keys not loaded yet")

// Ready reports whether the catalog has synced (for a readiness probe). A
// later API server outage does not make it unready: the last state read
// keeps being served.
func (c *Catalog) Ready() error {
	select {
	case <-c.keys.loaded:
		return nil
	default:
		return ErrNotSynced
	}
}

// Generation increases with every rebuilt snapshot.
func (c *Catalog) Generation() uint64 {
	c.Snapshot()
	return c.gen.Load()
}

// Snapshot returns the current snapshot, rebuilding it first if an
// informer event arrived since the last build.
func (c *Catalog) Snapshot() *Snapshot {
	if !c.stale.Load() {
		return c.snap.Load()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Clear before reading so an event during the rebuild is not lost.
	if !c.stale.Swap(false) {
		return c.snap.Load()
	}
	s, err := c.build(context.Background())
	if err != nil {
		c.stale.Store(true) // retry on the next read; keep serving the old one
		return c.snap.Load()
	}
	c.snap.Store(s)
	c.gen.Add(1)
	return s
}

func (c *Catalog) build(ctx context.Context) (*Snapshot, error) {
	var ros otav1.RolloutList
	if err := c.cache.List(ctx, &ros); err != nil {
		return nil, fmt.Errorf("catalog: list rollouts: %w", err)
	}
	var rels otav1.FirmwareReleaseList
	if err := c.cache.List(ctx, &rels); err != nil {
		return nil, fmt.Errorf("catalog: list releases: %w", err)
	}
	return BuildWith(c.buildOpts, ros.Items, rels.Items, c.keys.secrets()), nil
}

// Static serves one fixed snapshot (tests, tools).
type Static struct{ S *Snapshot }

// Snapshot returns the fixed snapshot.
func (s Static) Snapshot() *Snapshot { return s.S }
