// Package leader runs work on one OTA server replica at a time: the replica
// holding a coordination.k8s.io Lease. Every replica serves devices; only the
// leader runs the reporter (fleet sync, cutoffs, offer expiry, counters,
// Rollout status), so its cost and its API writes do not multiply with the
// replica count.
package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=system,resources=leases,verbs=get;create;update

// Config says which Lease to hold and how.
type Config struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity names this replica (the pod name); unique per replica.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod as client-go's leader
	// election (defaults 15s, 10s, 2s, as controller-runtime's): a replica
	// killed without releasing the Lease is replaced within LeaseDuration.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       logr.Logger
}

// Run campaigns for the Lease until ctx ends, and runs work while it holds
// it. When the Lease is lost, work's context is canceled and the replica
// campaigns again; the Lease is released when ctx ends so a successor takes
// over at once. It returns when ctx ends.
func Run(ctx context.Context, rc *rest.Config, cfg Config, work func(ctx context.Context)) error {
	if cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		return errors.New("leader election: namespace, name and identity are required")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("leader election client: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaFor(cfg),
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: cfg.Name, ReleaseOnCancel: true,
			LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					cfg.Log.Info("leading", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
					work(ctx)
				},
				OnStoppedLeading: func() { cfg.Log.Info("not leading", "lease", cfg.Namespace+"/"+cfg.Name) },
				OnNewLeader: func(id string) {
					if id != cfg.Identity {
						cfg.Log.Info("another replica leads", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}

func metaFor(cfg Config) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name}
}
