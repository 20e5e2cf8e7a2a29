package otaclient

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// ErrDeleted ends a watch whose Rollout was deleted.
var ErrDeleted = errors.New("the rollout was deleted")

// WatchRollout calls changed with every new version of the one Rollout lw
// lists, until changed reports done, changed fails, or ctx ends. The watch
// re-lists when its resource version expires or the connection drops; a
// version already seen (a re-list brings it again) is not passed twice.
// key is the Rollout's namespace/name; seen is the resource version the
// caller already showed, "" for none.
func WatchRollout(ctx context.Context, lw cache.ListerWatcher, key, seen string, changed func(*otav1.Rollout) (done bool, err error)) error {
	last := seen
	exists := func(store cache.Store) (bool, error) {
		if _, ok, err := store.GetByKey(key); err != nil || !ok {
			return false, fmt.Errorf("rollout %s: %w", key, ErrDeleted)
		}
		return false, nil
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &otav1.Rollout{}, exists, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			return false, fmt.Errorf("rollout %s: %w", key, ErrDeleted)
		case watch.Added, watch.Modified:
		default:
			return false, nil
		}
		ro, ok := ev.Object.(*otav1.Rollout)
		if !ok {
			return false, fmt.Errorf("watch sent a %T, not a Rollout", ev.Object)
		}
		if ro.ResourceVersion == last {
			return false, nil
		}
		last = ro.ResourceVersion
		return changed(ro)
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("watch of the rollout stopped: %w", ctx.Err())
	}
	return err
}
