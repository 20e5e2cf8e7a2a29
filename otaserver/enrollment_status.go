package otaserver

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
)

// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments/status,verbs=patch

// EnrollmentStatusFieldOwner is the field manager of status.enrolledDevices.
const EnrollmentStatusFieldOwner = "otaflow-otaserver"

// EnrollmentStatus writes each DeviceEnrollment's status.enrolledDevices
// from the store's quota counts (one indexed read per object), so people see
// how much of maxDevices is used. Run it where the reporter runs (one
// replica at a time).
type EnrollmentStatus struct {
	Client   client.Client
	Store    devicestore.Store
	Interval time.Duration // default 10 s
	Log      logr.Logger
}

// Run writes changed counts every Interval until ctx ends.
func (e *EnrollmentStatus) Run(ctx context.Context) error {
	if e.Interval <= 0 {
		e.Interval = 10 * time.Second
	}
	t := time.NewTicker(e.Interval)
	defer t.Stop()
	for {
		if err := e.Pass(ctx); err != nil && ctx.Err() == nil {
			e.Log.Error(err, "DeviceEnrollment status")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass writes the counts that differ from the objects' status.
func (e *EnrollmentStatus) Pass(ctx context.Context) error {
	var list otav1.DeviceEnrollmentList
	if err := e.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("list DeviceEnrollments: %w", err)
	}
	for i := range list.Items {
		de := &list.Items[i]
		n, err := e.Store.EnrolledThrough(ctx, de.Namespace, de.Name)
		if err != nil {
			return fmt.Errorf("count devices of %s/%s: %w", de.Namespace, de.Name, err)
		}
		if n == de.Status.EnrolledDevices {
			continue
		}
		u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"enrolledDevices": n}}}
		u.SetAPIVersion(otav1.GroupVersion.String())
		u.SetKind("DeviceEnrollment")
		u.SetNamespace(de.Namespace)
		u.SetName(de.Name)
		if err := e.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(EnrollmentStatusFieldOwner), client.ForceOwnership); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("apply status of %s/%s: %w", de.Namespace, de.Name, err)
		}
	}
	return nil
}
