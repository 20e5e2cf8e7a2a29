package otaserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The OTA server's RBAC (config/rbac/otaserver/role.yaml is generated from
// these markers; docs/security.md explains each rule).
//
// Releases and rollouts: an informer cache (catalog); status: server-side
// apply of the counters (reporter).
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=firmwarereleases;rollouts,verbs=get;list;watch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=rollouts/status,verbs=patch
//
// Secrets, cluster-wide: GET by name only. Content keys live in the
// releases' namespaces (catalog/keys.go reads each by name). No list or
// watch: those would expose every Secret of the cluster, and RBAC cannot
// narrow them to the content-key label. (The signing-key Secret is watched
// by name: signingkeys.go.)
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
//
// The enrollment Secret: a watch narrowed to its name (a metadata.name field
// selector, which the API server authorizes against resourceNames), in the
// server's own namespace (kustomize sets it). A different
// --enrollment-secret needs this Role's resourceNames changed too.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=otaflow-enrollment-tokens,verbs=get;list;watch

// WatchTokenSecret keeps set equal to the data of one Secret (the
// enrollment tokens) until ctx ends. It blocks until the first sync; a
// missing Secret means no device can enroll. The list and watch carry a
// metadata.name field selector, so RBAC can grant them for this one Secret
// (resourceNames) rather than for every Secret of the namespace.
func WatchTokenSecret(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace, name string, set *TokenSet, onChange func(n int)) error {
	if err := WatchSecret(ctx, cfg, scheme, namespace, name, func(data map[string][]byte) { onChange(set.Replace(data)) }); err != nil {
		return fmt.Errorf("enrollment Secret: %w", err)
	}
	return nil
}

// The Mender token key Secret (otaserver/mender, docs/mender.md): watched
// by name like the enrollment Secret. A different
// --mender-token-key-secret needs this Role's resourceNames changed too.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=otaflow-mender-token-key,verbs=get;list;watch

// WatchSecret calls onData with the data of one Secret whenever it
// changes (nil once it is deleted) until ctx ends. It blocks until the
// first sync, and has called onData by then if the Secret exists. The
// list and watch carry a metadata.name field selector, so RBAC can grant
// them for this one Secret (resourceNames).
func WatchSecret(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace, name string, onData func(map[string][]byte)) error {
	c, inf, err := namedSecretInformer(ctx, cfg, scheme, namespace, name)
	if err != nil {
		return err
	}
	update := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok && s.Name == name {
			onData(s.Data)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, o any) { update(o) },
		DeleteFunc: func(any) { onData(nil) },
	}); err != nil {
		return fmt.Errorf("Secret %s/%s handler: %w", namespace, name, err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("Secret %s/%s: cache did not sync", namespace, name)
	}
	return nil
}

// namedSecretInformer returns a cache and its Secret informer narrowed to
// one Secret by a metadata.name field selector, which RBAC authorizes by
// resourceNames. The caller adds handlers, then starts the cache.
func namedSecretInformer(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace, name string) (cache.Cache, cache.Informer, error) {
	c, err := cache.New(cfg, cache.Options{
		Scheme:            scheme,
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", name)},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cache: %w", err)
	}
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return nil, nil, fmt.Errorf("informer: %w", err)
	}
	return c, inf, nil
}
