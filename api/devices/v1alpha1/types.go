package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the device API's group.
const GroupName = "devices.ota.otaflow.io"

// SchemeGroupVersion is the group and version served.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource names.
const (
	ResourceDevices = "devices"
	// SubresourceDecision is devices/decision: why the device is or is
	// not offered an update, by the rules the server applies.
	SubresourceDecision = "decision"
)

// Field selector labels of devices (besides metadata.name and
// metadata.namespace).
const (
	// FieldVersion matches status.version, the running version.
	FieldVersion = "status.version"
	// FieldRollout matches devices with a record in the named rollout.
	FieldRollout = "status.rollout"
	// FieldState matches devices with a record in this state (in the
	// rollout of status.rollout when both are given).
	FieldState = "status.state"
	// FieldType matches status.type, the device type.
	FieldType = "status.type"
)

// Protocols a device speaks (status.protocol).
const (
	ProtocolNative = "otaflow"
	ProtocolDDI    = "hawkbit-ddi"
	ProtocolMender = "mender"
)

// Device is one enrolled device: its name is the device ID, its namespace
// the tenant it enrolled in, its labels the labels it enrolled with (or, for
// Mender devices, its inventory). Devices are created by enrollment only;
// deleting one decommissions it.
//
// +kubebuilder:object:root=true
type Device struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status DeviceStatus `json:"status,omitempty"`
}

// DeviceStatus is what the OTA server knows of a device.
type DeviceStatus struct {
	// Type is the device type releases are built for.
	Type string `json:"type,omitempty"`
	// Protocol is how the device talks to the OTA server: otaflow,
	// hawkbit-ddi or mender.
	Protocol string `json:"protocol,omitempty"`
	// Version is the firmware version the device last reported running.
	Version string `json:"version,omitempty"`
	// SecurityFloor is the lowest securityVersion the device accepts.
	SecurityFloor int64 `json:"securityFloor,omitempty"`
	// Enrollment is the DeviceEnrollment the device enrolled through ("" for
	// the cluster-wide enrollment Secret).
	Enrollment string `json:"enrollment,omitempty"`
	// EnrolledAt is when the device first enrolled.
	EnrolledAt metav1.Time `json:"enrolledAt,omitempty"`
	// LastSeen is the device's last check-in (recorded with the server's
	// --seen-resolution, a minute by default).
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// Rollout is the rollout whose record of the device changed last.
	Rollout string `json:"rollout,omitempty"`
	// State is the device's state in Rollout.
	State string `json:"state,omitempty"`
	// Reason explains State (why skipped, failed, timed out).
	Reason string `json:"reason,omitempty"`
	// Rollouts are the device's records, one per rollout it took part in,
	// the most recently changed first: its update history.
	// +listType=atomic
	Rollouts []DeviceRollout `json:"rollouts,omitempty"`
}

// DeviceRollout is a device's record in one rollout.
type DeviceRollout struct {
	// Rollout names the rollout (in the device's namespace); the rollout's
	// UID when it no longer exists.
	Rollout string `json:"rollout"`
	// Release is the offered release (namespace/name).
	Release string `json:"release,omitempty"`
	// Version is the offered release's version.
	Version string `json:"version,omitempty"`
	// PreviousVersion is what the device ran when it was offered.
	PreviousVersion string `json:"previousVersion,omitempty"`
	// Wave is the wave (0-based) the device belongs to in the rollout.
	Wave int `json:"wave"`
	// State is the device's state in the rollout.
	State string `json:"state"`
	// Reason explains State.
	Reason string `json:"reason,omitempty"`
	// OfferedAt is when the record was made (the offer, or the decision
	// to skip).
	OfferedAt metav1.Time `json:"offeredAt,omitempty"`
	// UpdatedAt is the record's last change.
	UpdatedAt metav1.Time `json:"updatedAt,omitempty"`
	// RollbackRelease is the release offered to roll back after an abort.
	RollbackRelease string `json:"rollbackRelease,omitempty"`
}

// DeviceList is a page of devices.
//
// +kubebuilder:object:root=true
type DeviceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Device `json:"items"`
}

// DeviceDecision is the answer the device would get if it checked in now,
// with each rollout's verdict: devices/NAME/decision. Reading it changes
// nothing.
//
// +kubebuilder:object:root=true
type DeviceDecision struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Action is what the device would be told: Nothing, Offer, Resend,
	// Cancel, Rollback or Commit.
	Action string `json:"action"`
	// Rollout is the rollout acting on the device ("" when none).
	Rollout string `json:"rollout,omitempty"`
	// Reason explains Action Nothing.
	Reason string `json:"reason,omitempty"`
	// Rollouts are the verdicts of the rollouts in the device's namespace,
	// in the server's order (oldest first).
	// +listType=atomic
	Rollouts []RolloutVerdict `json:"rollouts,omitempty"`
}

// RolloutVerdict is one rollout's view of a device.
type RolloutVerdict struct {
	Rollout string `json:"rollout"`
	// Release and Version are the rollout's release and its version.
	Release string `json:"release,omitempty"`
	Version string `json:"version,omitempty"`
	// InFleet: the rollout selects the device (namespace, device type,
	// labels, release Ready).
	InFleet bool `json:"inFleet"`
	// Wave is the device's wave in the rollout, when known.
	Wave *int `json:"wave,omitempty"`
	// Verdict is one of Acts (this rollout answers the check-in), Offer
	// (would offer, but another rollout acts), Wait, Skip, Current, Done
	// (a finished record) or NotInFleet.
	Verdict string `json:"verdict"`
	// Reason explains the verdict in the server's words.
	Reason string `json:"reason,omitempty"`
	// State is the device's recorded state in the rollout, if any.
	State string `json:"state,omitempty"`
}

// Verdicts.
const (
	VerdictActs       = "Acts"
	VerdictOffer      = "Offer"
	VerdictWait       = "Wait"
	VerdictSkip       = "Skip"
	VerdictCurrent    = "Current"
	VerdictDone       = "Done"
	VerdictNotInFleet = "NotInFleet"
)

// AddToScheme registers the types under the group's version.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Device{}, &DeviceList{}, &DeviceDecision{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
