package deviceapi

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Explainer decides a check-in without acting on it (otaserver.Server).
type Explainer interface {
	Explain(ctx context.Context, d devicestore.Device, deliverable func(*catalog.Release) (string, bool)) (otaserver.Explanation, error)
}

// decisionStorage serves devices/NAME/decision.
type decisionStorage struct {
	devices *deviceStorage
}

var (
	_ rest.Getter = (*decisionStorage)(nil)
	_ rest.Scoper = (*decisionStorage)(nil)
)

func (s *decisionStorage) New() runtime.Object   { return &devicesv1.DeviceDecision{} }
func (s *decisionStorage) Destroy()              {}
func (s *decisionStorage) NamespaceScoped() bool { return true }

func (s *decisionStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	d, err := s.devices.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	ex, err := s.devices.cfg.Explainer.Explain(ctx, d, deliverable(d))
	if err != nil {
		return nil, storeError(err)
	}
	out := &devicesv1.DeviceDecision{
		TypeMeta:   metav1.TypeMeta{APIVersion: devicesv1.SchemeGroupVersion.String(), Kind: "DeviceDecision"},
		ObjectMeta: metav1.ObjectMeta{Name: d.ID, Namespace: s.devices.shownNamespace(d.Namespace)},
		Action:     ex.Action.String(),
		Reason:     ex.Reason,
	}
	if ex.Rollout != nil {
		out.Rollout = ex.Rollout.Name
	}
	for _, v := range ex.Verdicts {
		rv := devicesv1.RolloutVerdict{Rollout: v.Rollout.Name, InFleet: v.InFleet, Verdict: string(v.Kind), Reason: v.Reason}
		if rel := v.Rollout.Release; rel != nil {
			rv.Release, rv.Version = rel.Name, rel.Version
		}
		if v.Wave >= 0 {
			w := v.Wave
			rv.Wave = &w
		}
		if v.Record != nil {
			rv.State = string(v.Record.State)
		}
		out.Rollouts = append(out.Rollouts, rv)
	}
	return out, nil
}
