package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RolloutPhase is the rollout's place in its life cycle.
// +kubebuilder:validation:Enum=Pending;Progressing;Paused;Succeeded;Aborted
type RolloutPhase string

// Rollout phases.
const (
	RolloutPending     RolloutPhase = "Pending"
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutPaused      RolloutPhase = "Paused"
	RolloutSucceeded   RolloutPhase = "Succeeded"
	RolloutAborted     RolloutPhase = "Aborted"
)

// RolloutSpec says which devices get a release, in which waves, and when to
// stop.
// +kubebuilder:validation:XValidation:rule="!has(self.approvedWave) || size(self.approvedWave) == 0 || self.waves.exists(w, w.name == self.approvedWave)",message="approvedWave must name one of the waves"
type RolloutSpec struct {
	// ReleaseRef names the FirmwareRelease (same namespace). Immutable: make
	// a new Rollout to ship another release.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="releaseRef is immutable; create a new Rollout for another release"
	ReleaseRef ReleaseReference `json:"releaseRef"`

	// Selector over device labels. Empty selects every compatible device.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Waves in order; devices is the cumulative share of the fleet after each
	// wave, as a count ("10") or a percentage ("10%"). The last wave must be
	// "100%". Ordering rules compare pairs with two-variable comprehensions
	// (Kubernetes 1.33 or later); "N%" strings order by length, then bytes.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(w, self.exists_one(x, x.name == w.name))",message="wave names must be unique"
	// +kubebuilder:validation:XValidation:rule="self[size(self)-1].devices == '100%'",message="the last wave must be \"100%\" so the rollout can finish; hold part of the fleet with a manual gate (pause: {}) on an earlier wave"
	// +kubebuilder:validation:XValidation:rule="self.all(i, a, self.all(j, b, i >= j || type(a.devices) != string || type(b.devices) != string || size(a.devices) < size(b.devices) || (size(a.devices) == size(b.devices) && a.devices < b.devices)))",message="percentage waves must strictly increase"
	// +kubebuilder:validation:XValidation:rule="self.all(i, a, self.all(j, b, i >= j || type(a.devices) != int || type(b.devices) != int || a.devices < b.devices))",message="count waves must strictly increase"
	Waves []Wave `json:"waves"`

	// SuccessThreshold is the share of a wave's devices that must succeed
	// before the next wave may open.
	// +kubebuilder:default="95%"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="self.matches('^(100(\\\\.0+)?|[0-9]{1,2}(\\\\.[0-9]+)?)%$')",message="successThreshold must be a percentage from 0% to 100%, such as 95%"
	// +optional
	SuccessThreshold string `json:"successThreshold,omitempty"`

	// FailureThreshold is the share of offered devices that may fail (or time
	// out) before the rollout aborts, once minFailures is reached.
	// +kubebuilder:default="5%"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="self.matches('^(100(\\\\.0+)?|[0-9]{1,2}(\\\\.[0-9]+)?)%$')",message="failureThreshold must be a percentage from 0% to 100%, such as 5%"
	// +optional
	FailureThreshold string `json:"failureThreshold,omitempty"`

	// MinFailures is how many failures must be seen before the failure
	// threshold can abort (so one early failure in a small canary does not).
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinFailures int32 `json:"minFailures,omitempty"`

	// DeviceTimeout: a device offered the release that has not finished in
	// this time counts as timed out (a failure).
	// +kubebuilder:default="2h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="deviceTimeout must be at least 1m"
	// +optional
	DeviceTimeout *metav1.Duration `json:"deviceTimeout,omitempty"`

	// MaxOffersPerMinute limits new offers, to bound bandwidth. Unset means
	// no limit.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxOffersPerMinute *int32 `json:"maxOffersPerMinute,omitempty"`

	// ApprovedWave is the name of the last manual gate passed. Setting it to
	// a wave with `pause: {}` lets the next wave open (a GitOps approval).
	// +kubebuilder:validation:MaxLength=63
	// +optional
	ApprovedWave string `json:"approvedWave,omitempty"`

	// Paused holds everything: no new offers, no new waves. Resumable.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Abort stops the rollout for good: no new offers; devices not yet
	// installing are told to cancel.
	// +optional
	Abort bool `json:"abort,omitempty"`

	// RollbackOnAbort offers devices that took this release their previous
	// release after an abort (never below their security floor).
	// +kubebuilder:default=true
	// +optional
	RollbackOnAbort *bool `json:"rollbackOnAbort,omitempty"`
}

// ReleaseReference names a FirmwareRelease in the Rollout's namespace.
type ReleaseReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Wave is one step of a rollout.
type Wave struct {
	// Name of the wave, unique in the rollout.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Devices is the cumulative size of the fleet after this wave: a count
	// (the N lowest-ranked devices) or a percentage of the fleet.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? int(self) >= 1 : string(self).matches('^([1-9][0-9]?|100)%$')",message="devices must be a count of at least 1 or a percentage from 1% to 100%"
	Devices intstr.IntOrString `json:"devices"`

	// Pause after this wave completes: a duration (timed pause) or empty
	// (manual gate, released by spec.approvedWave).
	// +optional
	Pause *WavePause `json:"pause,omitempty"`
}

// WavePause is the gate after a wave.
type WavePause struct {
	// Duration of a timed pause. Unset means a manual gate.
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="pause duration must be positive; omit it for a manual gate"
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// WaveStatus reports one wave. The controller owns name, startedAt and
// completedAt; the OTA server owns the device counters.
type WaveStatus struct {
	// Name of the wave.
	Name string `json:"name"`

	// Targeted devices in the wave (its share of the current fleet).
	// +optional
	Targeted int64 `json:"targeted,omitempty"`
	// Offered devices: given an assignment for this release.
	// +optional
	Offered int64 `json:"offered,omitempty"`
	// InProgress devices: offered and not yet finished.
	// +optional
	InProgress int64 `json:"inProgress,omitempty"`
	// Succeeded devices: checked in again running the new version.
	// +optional
	Succeeded int64 `json:"succeeded,omitempty"`
	// Failed devices: reported failure or reverted.
	// +optional
	Failed int64 `json:"failed,omitempty"`
	// TimedOut devices: offered but not finished within deviceTimeout.
	// +optional
	TimedOut int64 `json:"timedOut,omitempty"`
	// RolledBack devices: took the release, then went back to their
	// previous release after the rollout aborted.
	// +optional
	RolledBack int64 `json:"rolledBack,omitempty"`

	// StartedAt is when the wave opened.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// CompletedAt is when the wave met its success threshold.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
}

// FleetStatus is written by the OTA server with every batch of counters.
type FleetStatus struct {
	// Size is the number of enrolled devices that match the selector and
	// are compatible with the release.
	// +optional
	Size int64 `json:"size,omitempty"`
	// Conflicts counts matching devices held by an older active rollout.
	// +optional
	Conflicts int64 `json:"conflicts,omitempty"`
	// ObservedWave is the highest open wave (status.currentWave) the
	// counters account for. A wave's counters mean nothing to the
	// controller until ObservedWave reaches it.
	// +optional
	ObservedWave int32 `json:"observedWave,omitempty"`
	// ReportedAt is when the counters were computed.
	// +optional
	ReportedAt *metav1.Time `json:"reportedAt,omitempty"`
}

// DeviceFailure is one recent device failure, for humans.
type DeviceFailure struct {
	Device string      `json:"device"`
	Wave   string      `json:"wave"`
	Reason string      `json:"reason"`
	Time   metav1.Time `json:"time"`
}

// RolloutStatus is written by two owners with server-side apply, each with
// its own field manager: the controller ("otaflow-manager": phase,
// currentWave, waveSummary, progress, pausedUntil, abortReason,
// rollbackRequested, observedGeneration, conditions, and waves[].name,
// startedAt, completedAt) and the OTA server ("otaflow-otaserver": fleet,
// recentFailures, and waves[].name plus the device counters).
type RolloutStatus struct {
	// ObservedGeneration is the generation the controller acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase of the rollout.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`

	// CurrentWave is the index of the open wave (0-based).
	// +optional
	CurrentWave int32 `json:"currentWave,omitempty"`

	// WaveSummary is "n/m name" of the open wave, for printing.
	// +optional
	WaveSummary string `json:"waveSummary,omitempty"`

	// Progress is "succeeded/fleet", for printing.
	// +optional
	Progress string `json:"progress,omitempty"`

	// PausedUntil is the end of the current timed pause.
	// +optional
	PausedUntil *metav1.Time `json:"pausedUntil,omitempty"`

	// AbortReason says why the rollout aborted.
	// +optional
	AbortReason string `json:"abortReason,omitempty"`

	// RollbackRequested tells the OTA server to offer devices that took the
	// release their previous one.
	// +optional
	RollbackRequested bool `json:"rollbackRequested,omitempty"`

	// Fleet is the OTA server's view of the rollout's devices.
	// +optional
	Fleet *FleetStatus `json:"fleet,omitempty"`

	// Waves, in spec order.
	// +listType=map
	// +listMapKey=name
	// +optional
	Waves []WaveStatus `json:"waves,omitempty"`

	// RecentFailures is a bounded list of the latest device failures.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	RecentFailures []DeviceFailure `json:"recentFailures,omitempty"`

	// Conditions: Ready, Reconciling (while progressing), Stalled (aborted
	// or blocked on something a human must fix).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Rollout delivers a FirmwareRelease to a device fleet in canary waves.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ro,categories=ota
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.spec.releaseRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Wave",type=string,JSONPath=`.status.waveSummary`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec"`
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Rollout{}, &RolloutList{})
}

// GetConditions returns the conditions.
func (r *Rollout) GetConditions() []metav1.Condition { return r.Status.Conditions }

// SetConditions replaces the conditions.
func (r *Rollout) SetConditions(c []metav1.Condition) { r.Status.Conditions = c }
