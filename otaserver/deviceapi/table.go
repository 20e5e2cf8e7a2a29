package deviceapi

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// columns of `kubectl get devices`; priority 1 shows with -o wide.
var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The device ID."},
	{Name: "Type", Type: "string", Description: "The device type."},
	{Name: "Version", Type: "string", Description: "The running firmware version."},
	{Name: "Rollout", Type: "string", Description: "The rollout whose record of the device changed last."},
	{Name: "State", Type: "string", Description: "The device's state in that rollout."},
	{Name: "Last Seen", Type: "string", Description: "Time since the last check-in."},
	{Name: "Age", Type: "string", Description: "Time since enrollment."},
	{Name: "Protocol", Type: "string", Priority: 1, Description: "otaflow, hawkbit-ddi or mender."},
	{Name: "Floor", Type: "integer", Priority: 1, Description: "The device's security floor."},
	{Name: "Enrollment", Type: "string", Priority: 1, Description: "The DeviceEnrollment it enrolled through."},
	{Name: "Reason", Type: "string", Priority: 1, Description: "Why the device is in its state."},
}

func (s *deviceStorage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: columns}
	now := s.cfg.now()
	add := func(d *devicesv1.Device) {
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{
				d.Name, d.Status.Type, d.Status.Version, orNone(d.Status.Rollout), orNone(d.Status.State),
				since(now, d.Status.LastSeen), since(now, &d.CreationTimestamp),
				d.Status.Protocol, d.Status.SecurityFloor, orNone(d.Status.Enrollment), d.Status.Reason,
			},
			Object: runtime.RawExtension{Object: d},
		})
	}
	switch o := obj.(type) {
	case *devicesv1.Device:
		add(o)
	case *devicesv1.DeviceList:
		for i := range o.Items {
			add(&o.Items[i])
		}
		t.Continue = o.Continue
		t.RemainingItemCount = o.RemainingItemCount
	default:
		return nil, fmt.Errorf("cannot show %T as a table", obj)
	}
	if m, err := meta.ListAccessor(obj); err == nil {
		t.ResourceVersion = m.GetResourceVersion()
		t.Continue = m.GetContinue()
	}
	return t, nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func since(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "<never>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
