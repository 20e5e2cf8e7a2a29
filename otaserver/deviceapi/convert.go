package deviceapi

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/ddi"
	"github.com/otaflow/otaflow/otaserver/mender"
)

// protocol names the device's protocol from the key type it enrolled with.
func protocol(d devicestore.Device) string {
	switch {
	case d.KEM == ddi.KEMTarget || d.KEM == ddi.KEMGateway:
		return devicesv1.ProtocolDDI
	case strings.HasPrefix(d.KEM, mender.KEMPrefix):
		return devicesv1.ProtocolMender
	}
	return devicesv1.ProtocolNative
}

// deliverable is the release filter of the device's protocol, as its front
// applies it at a check-in (nil: every release).
func deliverable(d devicestore.Device) func(*catalog.Release) (string, bool) {
	switch protocol(d) {
	case devicesv1.ProtocolDDI:
		return ddi.DeliverableRelease
	case devicesv1.ProtocolMender:
		return mender.Deliverable(d.Type)
	}
	return nil
}

// rolloutName names a rollout by UID for display: its name when the
// catalog has it, else the UID (a deleted rollout's records are forgotten
// by the reporter soon after).
func rolloutName(snap *catalog.Snapshot, uid string) string {
	if ro := snap.RolloutByUID(uid); ro != nil {
		return ro.Name
	}
	return uid
}

// toDevice converts a stored device and its records. ns is the namespace
// shown (see Config.ClusterNamespace).
func toDevice(d devicestore.Device, recs []devicestore.Record, snap *catalog.Snapshot, ns string) devicesv1.Device {
	out := devicesv1.Device{
		TypeMeta: metav1.TypeMeta{APIVersion: devicesv1.SchemeGroupVersion.String(), Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.ID, Namespace: ns, Labels: copyLabels(d.Labels),
			CreationTimestamp: metav1.NewTime(d.EnrolledAt),
		},
		Status: devicesv1.DeviceStatus{
			Type: d.Type, Protocol: protocol(d), Version: d.Version, SecurityFloor: d.SecurityFloor,
			Enrollment: d.Enrollment, EnrolledAt: metav1.NewTime(d.EnrolledAt),
		},
	}
	if !d.LastSeen.IsZero() {
		t := metav1.NewTime(d.LastSeen)
		out.Status.LastSeen = &t
	}
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b devicestore.Record) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.RolloutUID, b.RolloutUID)
	})
	for _, r := range recs {
		out.Status.Rollouts = append(out.Status.Rollouts, devicesv1.DeviceRollout{
			Rollout: rolloutName(snap, r.RolloutUID), Release: r.Release, Version: r.Version,
			PreviousVersion: r.PreviousVersion, Wave: r.Wave, State: string(r.State), Reason: r.Reason,
			OfferedAt: metav1.NewTime(r.OfferedAt), UpdatedAt: metav1.NewTime(r.UpdatedAt),
			RollbackRelease: r.RollbackRelease,
		})
	}
	if len(out.Status.Rollouts) > 0 {
		cur := out.Status.Rollouts[0]
		out.Status.Rollout, out.Status.State, out.Status.Reason = cur.Rollout, cur.State, cur.Reason
	}
	return out
}

func copyLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]string, len(l))
	for k, v := range l {
		m[k] = v
	}
	return m
}
