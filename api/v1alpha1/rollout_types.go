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

	// The selector rules: metav1.LabelSelector declares no maxLength or
	// maxItems, so CEL sees strings and lists of request size, and any regex
	// over them is past the CRD cost budget. The rules bound the counts and
	// check keys and values one character at a time (charAt, and indexOf on
	// a literal alphabet, cost the same for any length), over
	// lists.range(N) with a literal N, sliced to the real length so short
	// input costs little. [x].all(v, ...) binds a value to a name.

	// Selector over device labels. Empty selects every compatible device.
	// Operators, keys and values are checked as for built-in kinds; at most
	// 16 matchExpressions (32 values each) and 64 matchLabels.
	// +kubebuilder:validation:XValidation:rule="(!has(self.matchExpressions) || (size(self.matchExpressions) <= 16 && self.matchExpressions.all(e, !has(e.values) || size(e.values) <= 32))) && (!has(self.matchLabels) || size(self.matchLabels) <= 64)",message="selector may have at most 16 matchExpressions, 32 values per expression and 64 matchLabels"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist (case-sensitive)",fieldPath=.matchExpressions
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? has(e.values) && size(e.values) > 0 : (!(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0))",message="matchExpressions with operator In or NotIn need at least one value; Exists and DoesNotExist take none",fieldPath=.matchExpressions
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, !has(self.matchExpressions) || lists.range(16).slice(0, [16, size(self.matchExpressions)].min()).all(j, [self.matchExpressions[j].key].all(k, size(k) >= 1 && size(k) <= 317 && [lists.range(317).slice(0, [317, size(k)].min()).filter(i, k.charAt(i) == '/')].all(slashes, size(slashes) <= 1 && [size(slashes) == 0 ? -1 : slashes[0]].all(p, size(k) - p - 1 >= 1 && size(k) - p - 1 <= 63 && alnum.indexOf(k.charAt(p + 1)) >= 0 && alnum.indexOf(k.charAt(size(k) - 1)) >= 0 && (p == -1 || (p <= 253 && lower.indexOf(k.charAt(0)) >= 0 && lower.indexOf(k.charAt(p - 1)) >= 0)) && lists.range(317).slice(0, [317, size(k)].min()).all(i, i == p || (i > p ? name.indexOf(k.charAt(i)) >= 0 : (k.charAt(i) == '.' ? i >= 1 && lower.indexOf(k.charAt(i - 1)) >= 0 && lower.indexOf(k.charAt(i + 1)) >= 0 : (lower + '-').indexOf(k.charAt(i)) >= 0))))))))))",message="matchExpressions keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside",fieldPath=.matchExpressions
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, !has(self.matchExpressions) || lists.range(16).slice(0, [16, size(self.matchExpressions)].min()).all(j, !has(self.matchExpressions[j].values) || lists.range(32).slice(0, [32, size(self.matchExpressions[j].values)].min()).all(n, [self.matchExpressions[j].values[n]].all(v, size(v) <= 63 && (size(v) == 0 || (alnum.indexOf(v.charAt(0)) >= 0 && alnum.indexOf(v.charAt(size(v) - 1)) >= 0 && lists.range(63).slice(0, [63, size(v)].min()).all(i, name.indexOf(v.charAt(i)) >= 0)))))))))",message="matchExpressions values must be label values: at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside, or empty",fieldPath=.matchExpressions
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, !has(self.matchLabels) || [self.matchLabels.map(k, k)].all(keys, lists.range(64).slice(0, [64, size(keys)].min()).all(j, [keys[j]].all(k, size(k) >= 1 && size(k) <= 317 && [lists.range(317).slice(0, [317, size(k)].min()).filter(i, k.charAt(i) == '/')].all(slashes, size(slashes) <= 1 && [size(slashes) == 0 ? -1 : slashes[0]].all(p, size(k) - p - 1 >= 1 && size(k) - p - 1 <= 63 && alnum.indexOf(k.charAt(p + 1)) >= 0 && alnum.indexOf(k.charAt(size(k) - 1)) >= 0 && (p == -1 || (p <= 253 && lower.indexOf(k.charAt(0)) >= 0 && lower.indexOf(k.charAt(p - 1)) >= 0)) && lists.range(317).slice(0, [317, size(k)].min()).all(i, i == p || (i > p ? name.indexOf(k.charAt(i)) >= 0 : (k.charAt(i) == '.' ? i >= 1 && lower.indexOf(k.charAt(i - 1)) >= 0 && lower.indexOf(k.charAt(i + 1)) >= 0 : (lower + '-').indexOf(k.charAt(i)) >= 0)))))))))))",message="matchLabels keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside",fieldPath=.matchLabels
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, !has(self.matchLabels) || [self.matchLabels.map(k, self.matchLabels[k])].all(vals, lists.range(64).slice(0, [64, size(vals)].min()).all(j, [vals[j]].all(v, size(v) <= 63 && (size(v) == 0 || (alnum.indexOf(v.charAt(0)) >= 0 && alnum.indexOf(v.charAt(size(v) - 1)) >= 0 && lists.range(63).slice(0, [63, size(v)].min()).all(i, name.indexOf(v.charAt(i)) >= 0)))))))))",message="matchLabels values must be label values: at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside, or empty",fieldPath=.matchLabels
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
	// no limit. Each OTA server replica enforces it on its own, so N
	// replicas offer up to N times this many.
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

	// TargetSelection says whether devices that join the fleet after the
	// rollout succeeded still get the release: Snapshot (the default) stops
	// at the devices enrolled before it succeeded; Continuous keeps
	// offering to newcomers, never to a device already on a newer version.
	// +kubebuilder:default=Snapshot
	// +optional
	TargetSelection TargetSelection `json:"targetSelection,omitempty"`

	// OfflineAfter: a device of the fleet that was not offered anything and
	// has not checked in for this long counts as offline in its wave (open
	// or not yet) and leaves that wave's success denominator until it
	// returns.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="offlineAfter must be at least 10s"
	// +optional
	OfflineAfter *metav1.Duration `json:"offlineAfter,omitempty"`

	// ProgressDeadline is how long a wave may stay open without completing.
	// Past it the rollout is Stalled (ProgressDeadlineExceeded), or aborts
	// when progressDeadlineAbort is set.
	// +kubebuilder:default="48h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="progressDeadline must be at least 1m"
	// +optional
	ProgressDeadline *metav1.Duration `json:"progressDeadline,omitempty"`

	// ProgressDeadlineAbort aborts the rollout (with rollbackOnAbort) when
	// a wave misses its progress deadline, instead of stalling it.
	// +optional
	ProgressDeadlineAbort bool `json:"progressDeadlineAbort,omitempty"`

	// Commit makes the release's securityVersion the security floor of
	// every device that succeeded so far, without waiting for the rollout
	// to succeed (which commits as well). Until a commit, a device can be
	// rolled back to its previous release even across a securityVersion
	// bump.
	// +optional
	Commit bool `json:"commit,omitempty"`
}

// TargetSelection says which devices a finished rollout still serves.
// +kubebuilder:validation:Enum=Snapshot;Continuous
type TargetSelection string

// Target selections.
const (
	TargetSnapshot   TargetSelection = "Snapshot"
	TargetContinuous TargetSelection = "Continuous"
)

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
	// RollbackFailed devices: offered their previous release after the
	// abort, and reported that the rollback failed.
	// +optional
	RollbackFailed int64 `json:"rollbackFailed,omitempty"`
	// Canceled devices: offered, then told to stop by the abort before
	// they started installing.
	// +optional
	Canceled int64 `json:"canceled,omitempty"`
	// Skipped devices: the rollout can never act on them (for example the
	// release is below their security floor, or they already run a newer
	// version); they leave the success denominator. Reasons are counted in
	// fleet.skipped.
	// +optional
	Skipped int64 `json:"skipped,omitempty"`
	// Offline devices: not offered anything and not seen for offlineAfter;
	// they leave the success denominator until they check in again.
	// +optional
	Offline int64 `json:"offline,omitempty"`

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
	// Conflicts counts devices this rollout would have offered its release
	// to while another rollout acted on them (an update in progress there,
	// or a newer version offered).
	// +optional
	Conflicts int64 `json:"conflicts,omitempty"`
	// ObservedWave is the highest open wave (status.currentWave) the
	// counters account for. A wave's counters mean nothing to the
	// controller until ObservedWave reaches it.
	// +optional
	ObservedWave int32 `json:"observedWave,omitempty"`
	// ReportedAt is when the counters were computed. The OTA server
	// refreshes it at least every heartbeat interval even when no counter
	// changed, so a stale value means the server is not reporting.
	// +optional
	ReportedAt *metav1.Time `json:"reportedAt,omitempty"`
	// Skipped counts skipped devices by reason.
	// +listType=map
	// +listMapKey=reason
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Skipped []ReasonCount `json:"skipped,omitempty"`
}

// ReasonCount is how many devices share a reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
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

// The waves rule sits at the root to see status. A spec update keeps the
// stored status, so oldSelf.status is what the controller last wrote; a
// status update cannot change spec, so it always passes.

// Rollout delivers a FirmwareRelease to a device fleet in canary waves. Once
// it started, its waves are fixed (devices were ranked into them); only a
// wave's pause may change.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || oldSelf.spec.waves.all(i, w, i < size(self.spec.waves) && self.spec.waves[i].name == w.name && self.spec.waves[i].devices == w.devices)",message="waves cannot be changed once the rollout started (only a wave's pause may); create a new Rollout"
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
