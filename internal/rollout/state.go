package rollout

import (
	"errors"
	"fmt"
)

// State is a device's state in one rollout.
type State string

// Device states (the diagram is in docs/rollouts.md). An offered device
// moves forward through offered … confirmed and ends in one of the final
// states. Confirmed means the device reported success; it counts as
// succeeded only once it checks in running the new version.
const (
	StateOffered     State = "offered"
	StateDownloading State = "downloading"
	StateDownloaded  State = "downloaded"
	StateInstalling  State = "installing"
	StateInstalled   State = "installed"
	StateConfirmed   State = "confirmed"

	StateSucceeded State = "succeeded"
	// StateCurrent: the device already ran the release when its wave
	// opened. Counted as succeeded, never as offered.
	StateCurrent State = "current"
	StateFailed  State = "failed"
	// StateTimedOut: offered and not finished within deviceTimeout. Final
	// for the thresholds, but a device that later checks in running the
	// release is succeeded after all.
	StateTimedOut State = "timedOut"
	StateCanceled State = "canceled"
	// StateSkipped: the rollout can never act on the device (Record.Reason
	// says why). It let go of the device, which leaves the wave's success
	// denominator; another rollout may take it.
	StateSkipped        State = "skipped"
	StateRolledBack     State = "rolledback"
	StateRollbackFailed State = "rollbackFailed"
)

// Reasons recorded on device records.
const (
	ReasonReverted       = "reverted by device"
	ReasonTimedOut       = "timed out"
	ReasonAborted        = "rollout aborted"
	ReasonAlreadyCurrent = "already running the release"
	// ReasonCancelAcknowledged: canceled, and the device said it stopped
	// (hawkBit DDI clients acknowledge a cancel; native agents do not).
	ReasonCancelAcknowledged = "rollout aborted; the device acknowledged the cancel"
	// Skip reasons: why a rollout let go of a device.
	ReasonSkipBelowFloor = "skipped: the release's securityVersion is below the device's security floor"
	ReasonSkipNotNewer   = "skipped: the device runs the same or a newer version"
	ReasonSkipBadVersion = "skipped: the device's version is not a semantic version"
	ReasonNoRollback     = "skipped: rollback: no Ready release with the previous version for this device type"
	ReasonRollbackFloor  = "skipped: rollback: the previous release is below the device's security floor"
	ReasonFloorRose      = "the device's security floor rose above the release while it was offered"
)

// InProgressStates are counted as inProgress and time out.
var InProgressStates = []State{StateOffered, StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateConfirmed}

// FinalStates end the device's part in the rollout.
var FinalStates = []State{StateSucceeded, StateCurrent, StateFailed, StateTimedOut, StateCanceled, StateSkipped, StateRolledBack, StateRollbackFailed}

// AllStates lists every state.
var AllStates = append(append([]State{}, InProgressStates...), FinalStates...)

// progress orders the in-progress states.
var progress = map[State]int{
	StateOffered: 0, StateDownloading: 1, StateDownloaded: 2,
	StateInstalling: 3, StateInstalled: 4, StateConfirmed: 5,
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, inProgress := progress[s]
	return inProgress || s.Final()
}

// InProgress reports whether the device is still working on the release.
func (s State) InProgress() bool { _, ok := progress[s]; return ok }

// Final reports whether the device is done with the release (a rollback
// after an abort aside).
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateCurrent, StateFailed, StateTimedOut, StateCanceled, StateSkipped, StateRolledBack, StateRollbackFailed:
		return true
	}
	return false
}

// Cancelable reports whether an abort still stops the device: it has not
// started installing.
func (s State) Cancelable() bool {
	return s == StateOffered || s == StateDownloading || s == StateDownloaded
}

// TookRelease reports whether the device installed the release through
// this rollout, so a rollback applies to it.
func (s State) TookRelease() bool {
	return s == StateInstalled || s == StateConfirmed || s == StateSucceeded
}

// Offered reports whether the state follows a real offer (not a device
// found already current, and not a skipped one).
func (s State) Offered() bool { return s != StateCurrent && s != StateSkipped }

// Reportable lists what a device may report.
var Reportable = []State{StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateSucceeded, StateFailed, StateRolledBack}

var (
	// ErrFinal refuses a report for a record that is already final.
	ErrFinal = errors.New("the device's update in this rollout is already final")
	// ErrCanceled refuses a report for a canceled update: the device must stop.
	ErrCanceled = errors.New("the update was canceled; stop and discard it")
	// ErrTransition refuses a report that goes backwards or is not reportable.
	ErrTransition = errors.New("invalid state transition")
)

// Record is a device's record in one rollout, as the rules see it.
type Record struct {
	State           State
	Wave            int
	Version         string // the offered release's version
	PreviousVersion string // what the device ran when offered
	// RollbackOffered: the device was offered its previous release after
	// the abort.
	RollbackOffered bool
	// OfferBoot is the boot the device was in when offered, "" when unknown.
	OfferBoot string
	Reason    string
}

// ApplyReport returns the record after the device reports reported, and
// whether the report is a failure worth logging. A rollback in progress
// only listens to rolledback and failed; a timed-out device may still say
// it failed (its reason is better than "timed out"), and its other
// reports are acknowledged without effect: only running the release at a
// check-in turns it into a success.
func ApplyReport(cur Record, reported State, reason string) (next Record, failure bool, err error) {
	next = cur
	if cur.RollbackOffered {
		switch {
		case cur.State == StateRolledBack || cur.State == StateRollbackFailed:
			return cur, false, ErrFinal
		case reported == StateRolledBack:
			next.State, next.Reason = StateRolledBack, ""
		case reported == StateFailed:
			next.State, next.Reason = StateRollbackFailed, "rollback: "+reason
			return next, true, nil
		}
		return next, false, nil
	}
	switch {
	case cur.State == StateCanceled:
		return cur, false, ErrCanceled
	case cur.State == StateTimedOut:
		if reported == StateFailed {
			next.State, next.Reason = StateFailed, reason
		}
		return next, false, nil
	case cur.State.Final():
		return cur, false, ErrFinal
	}
	switch reported {
	case StateFailed:
		next.State, next.Reason = StateFailed, reason
		return next, true, nil
	case StateSucceeded:
		reported = StateConfirmed
	case StateRolledBack:
		return cur, false, fmt.Errorf("%w: no rollback was offered", ErrTransition)
	}
	to, ok := progress[reported]
	if !ok || reported == StateOffered {
		return cur, false, fmt.Errorf("%w: %q is not a reportable state", ErrTransition, reported)
	}
	if to < progress[cur.State] {
		return cur, false, fmt.Errorf("%w: %s after %s", ErrTransition, reported, cur.State)
	}
	next.State = reported
	return next, false, nil
}

// CancelRejected returns the record after the device refuses a cancel
// because it already installs (rauc-hawkbit-updater does once RAUC runs):
// canceled by the abort → installing, so the rollout waits for the outcome
// as for any device past the point of cancel, and a rollback on abort
// still reaches it. Any other record is left alone (changed false).
func CancelRejected(cur Record) (next Record, changed bool) {
	if cur.RollbackOffered || cur.State != StateCanceled || cur.Reason != ReasonAborted {
		return cur, false
	}
	next = cur
	next.State, next.Reason = StateInstalling, ""
	return next, true
}

// Observe applies what a check-in's running version (and boot, "" when the
// device does not send it) says about a record: confirmed, timed out or
// canceled, and running the new version → succeeded; installed or confirmed and back
// on the previous version after a reboot → failed (reverted); offered a
// rollback and running the previous version → rolled back. changed is
// false when the record stays as it is.
//
// A device cannot have reverted without rebooting, so a check-in on the
// previous version from the boot the offer was made in is not a revert: it
// was sent before the install and arrived late.
func Observe(r Record, running, boot string) (next Record, changed bool) {
	next = r
	if running == "" {
		return r, false
	}
	if r.RollbackOffered {
		if r.State != StateRolledBack && r.State != StateRollbackFailed && running == r.PreviousVersion {
			next.State, next.Reason = StateRolledBack, ""
			return next, true
		}
		return r, false
	}
	sameBoot := boot != "" && boot == r.OfferBoot
	switch r.State {
	case StateConfirmed, StateTimedOut:
		if running == r.Version && r.Version != r.PreviousVersion {
			next.State, next.Reason = StateSucceeded, ""
			return next, true
		}
		if r.State == StateConfirmed && running == r.PreviousVersion && !sameBoot {
			next.State, next.Reason = StateFailed, ReasonReverted
			return next, true
		}
	case StateCanceled:
		// Canceled too late: the device installed the release before the
		// cancel reached it (a hawkBit DDI client acknowledges a cancel
		// while its install awaits the reboot). It runs the release, so it
		// counts as having taken it, and a rollback on abort reaches it.
		if running == r.Version && r.Version != r.PreviousVersion {
			next.State, next.Reason = StateSucceeded, ""
			return next, true
		}
	case StateInstalled:
		if running == r.PreviousVersion && running != r.Version && !sameBoot {
			next.State, next.Reason = StateFailed, ReasonReverted
			return next, true
		}
	}
	return r, false
}
