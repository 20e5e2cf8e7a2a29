package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

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
