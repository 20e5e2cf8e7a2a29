package eligibility

import (
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// RolloutView is what the offer decision reads from a Rollout and its release.
type RolloutView struct {
	Phase       otav1.RolloutPhase
	CurrentWave int
	Paused      bool // spec.paused
	Abort       bool // spec.abort
	// RollbackRequested is status.rollbackRequested with spec.rollbackOnAbort.
	RollbackRequested bool
	ReleaseReady      bool
	Version           string
	SecurityVersion   int64
	// Cutoffs per wave; nil while count-wave cutoffs are not computed yet.
	Cutoffs []uint64
}

// Aborted reports whether the rollout stopped for good.
func (r RolloutView) Aborted() bool { return r.Abort || r.Phase == otav1.RolloutAborted }

// Offering reports whether the rollout may make new offers at all.
func (r RolloutView) Offering() bool {
	if !r.ReleaseReady || r.Paused || r.Abort {
		return false
	}
	switch r.Phase {
	case otav1.RolloutProgressing, otav1.RolloutPaused, otav1.RolloutSucceeded:
		return true
	}
	return false
}

// DeviceView is what a check-in says about the device.
type DeviceView struct {
	Version string
	Floor   int64
}

// RecordView is the device's record in the rollout.
type RecordView struct {
	State           State
	Wave            int
	Version         string
	PreviousVersion string
	RollbackOffered bool
	// OfferBoot is the boot the device was in when offered the release (as
	// its check-in said), "" when unknown.
	OfferBoot string
}

// RollbackTarget is the release a rollback would offer, if any exists.
type RollbackTarget struct {
	Found           bool
	SecurityVersion int64
}

// Holds reports whether the rollout keeps the device: it has unfinished
// business with it (an update in progress, or a rollback due), or it is
// not aborted and the device has no final record in it yet. Rollouts are
// asked oldest first; the first that holds the device decides for it.
func Holds(r RolloutView, rec *RecordView) bool {
	if rec == nil {
		return !r.Aborted()
	}
	if rec.State.InProgress() {
		return true
	}
	if rec.RollbackOffered {
		return rec.State != StateRolledBack
	}
	return r.Aborted() && r.RollbackRequested && rec.State.TookRelease()
}

// Action is what the server answers a check-in with.
type Action int

// Actions.
const (
	// Nothing to do now (204).
	Nothing Action = iota
	// Offer the release for the first time, in Decision.Wave.
	Offer
	// Resend the assignment of an update in progress.
	Resend
	// AlreadyCurrent records a device already running the release as
	// succeeded without an offer.
	AlreadyCurrent
	// Cancel an update that has not started installing.
	Cancel
	// Rollback offers the device its previous release.
	Rollback
)

// Decision is the answer to one check-in for the holding rollout.
type Decision struct {
	Action Action
	Wave   int
	// Reason explains Nothing (for logs and, for rollbacks, the record).
	Reason string
}

// Reasons for Nothing that are worth recording.
const (
	ReasonNoPrevious     = "rollback: no Ready release with the previous version for this device type"
	ReasonRollbackFloor  = "rollback: previous release is below the device's security floor"
	ReasonSecurityFloor  = "release is below the device's security floor"
	ReasonWaveNotOpen    = "wave not open"
	ReasonNotOffering    = "rollout not offering"
	ReasonCutoffsPending = "wave cutoffs not computed yet"
)

// Decide answers a check-in for the rollout that holds the device. rank
// is the device's Rank in the rollout; rec is nil when the device has no
// record in it yet.
func Decide(r RolloutView, d DeviceView, rank uint64, rec *RecordView, prev RollbackTarget) Decision {
	if rec != nil {
		return decideExisting(r, d, rec, prev)
	}
	if !r.Offering() {
		return Decision{Reason: ReasonNotOffering}
	}
	if r.Cutoffs == nil {
		return Decision{Reason: ReasonCutoffsPending}
	}
	wave := WaveOf(rank, r.Cutoffs)
	if wave < 0 || wave > r.CurrentWave {
		return Decision{Reason: ReasonWaveNotOpen}
	}
	if d.Version == r.Version {
		return Decision{Action: AlreadyCurrent, Wave: wave}
	}
	if r.SecurityVersion < d.Floor {
		return Decision{Reason: ReasonSecurityFloor}
	}
	return Decision{Action: Offer, Wave: wave}
}

func decideExisting(r RolloutView, d DeviceView, rec *RecordView, prev RollbackTarget) Decision {
	if !r.Aborted() {
		if rec.State.InProgress() && rec.State.Cancelable() || rec.State == StateInstalling {
			return Decision{Action: Resend, Wave: rec.Wave}
		}
		return Decision{Wave: rec.Wave}
	}
	switch {
	case rec.State.Cancelable():
		return Decision{Action: Cancel, Wave: rec.Wave}
	case !r.RollbackRequested || !rec.State.TookRelease() && !rec.RollbackOffered:
		return Decision{Wave: rec.Wave}
	case rec.State == StateRolledBack:
		return Decision{Wave: rec.Wave}
	case !prev.Found:
		return Decision{Wave: rec.Wave, Reason: ReasonNoPrevious}
	case prev.SecurityVersion < d.Floor:
		return Decision{Wave: rec.Wave, Reason: ReasonRollbackFloor}
	}
	return Decision{Action: Rollback, Wave: rec.Wave}
}
