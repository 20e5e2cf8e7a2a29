package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// Field indexes shared by the reconcilers.
const (
	// indexReleaseSecrets lists the Secrets a FirmwareRelease reads: its
	// trusted keys' and its source credentials'.
	indexReleaseSecrets = "spec.secretNames"
	// indexReleaseConfigMaps lists the ConfigMap a release reads a bundle from.
	indexReleaseConfigMaps = "spec.signature.bundleRef.name"
	// indexRolloutRelease is the release a Rollout ships.
	indexRolloutRelease = "spec.releaseRef.name"
)

// SetupIndexes registers the field indexes the reconcilers query.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &otav1.FirmwareRelease{}, indexReleaseSecrets, func(o client.Object) []string {
		rel := o.(*otav1.FirmwareRelease)
		names := make([]string, 0, len(rel.Spec.Signature.PublicKeys)+1)
		for _, k := range rel.Spec.Signature.PublicKeys {
			names = append(names, k.SecretRef.Name)
		}
		if ref := rel.Spec.Source.SecretRef; ref != nil {
			names = append(names, ref.Name)
		}
		return names
	}); err != nil {
		return fmt.Errorf("index %s: %w", indexReleaseSecrets, err)
	}
	if err := indexer.IndexField(ctx, &otav1.FirmwareRelease{}, indexReleaseConfigMaps, func(o client.Object) []string {
		rel := o.(*otav1.FirmwareRelease)
		if rel.Spec.Signature.BundleRef == nil {
			return nil
		}
		return []string{rel.Spec.Signature.BundleRef.Name}
	}); err != nil {
		return fmt.Errorf("index %s: %w", indexReleaseConfigMaps, err)
	}
	if err := indexer.IndexField(ctx, &otav1.Rollout{}, indexRolloutRelease, func(o client.Object) []string {
		return []string{o.(*otav1.Rollout).Spec.ReleaseRef.Name}
	}); err != nil {
		return fmt.Errorf("index %s: %w", indexRolloutRelease, err)
	}
	return nil
}

// referrers maps o to reconcile requests for the objects of list (same
// namespace) whose index field names it; what names a changed object is
// reconciled again.
func referrers(ctx context.Context, c client.Reader, list client.ObjectList, index string, o client.Object) []reconcile.Request {
	if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "map object to referrers", "index", index, "name", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(obj runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj.(client.Object))})
		return nil
	})
	return reqs
}
