// Package catalog is the OTA server's informer cache of FirmwareReleases,
// Rollouts and their content-key Secrets. Requests read an immutable,
// precompiled Snapshot (rollouts ordered oldest first, selectors compiled,
// content keys in memory); informer events only mark it stale, and the
// next reader rebuilds it. No request ever calls the API server.
package catalog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// Catalog serves snapshots built from an informer cache.
type Catalog struct {
	cache cache.Cache
	mu    sync.Mutex // serializes rebuilds
	snap  atomic.Pointer[Snapshot]
	stale atomic.Bool
	// gen counts rebuilds; the reporter uses it to skip idle cycles.
	gen atomic.Uint64
}

// New creates a catalog watching namespaces (all when empty). Only
// content-key Secrets (labelled with their release's UID) are cached.
func New(cfg *rest.Config, scheme *runtime.Scheme, namespaces []string) (*Catalog, error) {
	hasUID, err := labels.NewRequirement(otav1.LabelReleaseUID, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: key Secret selector: %w", err)
	}
	opts := cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*hasUID)},
		},
	}
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
	cat := &Catalog{cache: c}
	cat.snap.Store(Build(nil, nil, nil))
	cat.stale.Store(true)
	return cat, nil
}

// Start registers event handlers and runs the informers until ctx ends.
func (c *Catalog) Start(ctx context.Context) error {
	mark := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.stale.Store(true) },
		UpdateFunc: func(any, any) { c.stale.Store(true) },
		DeleteFunc: func(any) { c.stale.Store(true) },
	}
	for _, obj := range []client.Object{&otav1.Rollout{}, &otav1.FirmwareRelease{}, &corev1.Secret{}} {
		inf, err := c.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("catalog: informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(mark); err != nil {
			return fmt.Errorf("catalog: handler for %T: %w", obj, err)
		}
	}
	return c.cache.Start(ctx)
}

// WaitForSync blocks until the informers have listed everything once.
func (c *Catalog) WaitForSync(ctx context.Context) bool { return c.cache.WaitForCacheSync(ctx) }

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
	var secs corev1.SecretList
	if err := c.cache.List(ctx, &secs); err != nil {
		return nil, fmt.Errorf("catalog: list key Secrets: %w", err)
	}
	keys := make(map[string]*corev1.Secret, len(secs.Items))
	for i := range secs.Items {
		keys[secs.Items[i].Namespace+"/"+secs.Items[i].Name] = &secs.Items[i]
	}
	return Build(ros.Items, rels.Items, keys), nil
}

// Static serves one fixed snapshot (tests, tools).
type Static struct{ S *Snapshot }

// Snapshot returns the fixed snapshot.
func (s Static) Snapshot() *Snapshot { return s.S }
