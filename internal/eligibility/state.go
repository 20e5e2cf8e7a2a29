package eligibility

import (
	"errors"
	"fmt"
)

// State is a device's state in one rollout.
type State string

// Device states. A device moves forward through offered … confirmed and
// ends in one of the final states. Confirmed means the device reported
// success; it only counts as succeeded once it checks in running the new
// version.
const (
	StateOffered     State = "offered"
	StateDownloading State = "downloading"
	StateDownloaded  State = "downloaded"
	StateInstalling  State = "installing"
	StateInstalled   State = "installed"
	StateConfirmed   State = "confirmed"
	StateSucceeded   State = "succeeded"
	StateFailed      State = "failed"
	StateTimedOut    State = "timedOut"
	StateCanceled    State = "canceled"
	StateRolledBack  State = "rolledback"
)

// ReasonReverted is recorded when a device that installed the release
// checks in on its previous version.
const ReasonReverted = "reverted by device"

// ReasonTimedOut is recorded for offers not finished within deviceTimeout.
const ReasonTimedOut = "timed out"

// InProgressStates are counted as inProgress and time out.
var InProgressStates = []State{StateOffered, StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateConfirmed}

// AllStates lists every state.
var AllStates = append(append([]State{}, InProgressStates...), StateSucceeded, StateFailed, StateTimedOut, StateCanceled, StateRolledBack)

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

// Final reports whether nothing more happens in this rollout (except a
// rollback after an abort).
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateTimedOut, StateCanceled, StateRolledBack:
		return true
	}
	return false
}

// Cancelable reports whether an abort still stops the device: it has not
// started installing.
func (s State) Cancelable() bool {
	return s == StateOffered || s == StateDownloading || s == StateDownloaded
}

// TookRelease reports whether the device installed the release, so a
// rollback applies to it.
func (s State) TookRelease() bool {
	return s == StateInstalled || s == StateConfirmed || s == StateSucceeded
}

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

// ApplyReport returns the record's next state after a device reports
// reported. rollbackOffered says the device was offered its previous
// release; then only "rolledback" changes the state and other reports are
// acknowledged without effect (the rolled-back update is not counted again).
func ApplyReport(cur State, rollbackOffered bool, reported State) (State, error) {
	if rollbackOffered {
		if reported == StateRolledBack {
			return StateRolledBack, nil
		}
		if cur == StateRolledBack {
			return cur, ErrFinal
		}
		return cur, nil
	}
	switch {
	case cur == StateCanceled:
		return cur, ErrCanceled
	case cur.Final():
		return cur, ErrFinal
	}
	switch reported {
	case StateFailed:
		return StateFailed, nil
	case StateSucceeded:
		reported = StateConfirmed
	case StateRolledBack:
		return cur, fmt.Errorf("%w: no rollback was offered", ErrTransition)
	}
	to, ok := progress[reported]
	if !ok || reported == StateOffered {
		return cur, fmt.Errorf("%w: %q is not a reportable state", ErrTransition, reported)
	}
	if to < progress[cur] {
		return cur, fmt.Errorf("%w: %s after %s", ErrTransition, reported, cur)
	}
	return reported, nil
}

// CheckIn applies what a check-in's running version (and boot, "" when the
// device does not send it) says about a record: confirmed and running the
// new version → succeeded; installed or confirmed and back on the previous
// version after a reboot → failed (reverted); offered a rollback and running
// the previous version → rolled back. changed is false when the record
// stays as it is.
//
// A device cannot have reverted without rebooting, so a check-in on the
// previous version from the boot the offer was made in is not a revert: it
// was sent before the install and delayed (a client that timed out while
// its connection waited in the server's accept queue, a retry) and arrived
// after the device's later reports.
func CheckIn(r RecordView, running, boot string) (next State, reason string, changed bool) {
	if running == "" {
		return r.State, "", false
	}
	if r.RollbackOffered {
		if r.State != StateRolledBack && running == r.PreviousVersion {
			return StateRolledBack, "", true
		}
		return r.State, "", false
	}
	sameBoot := boot != "" && boot == r.OfferBoot
	switch r.State {
	case StateConfirmed:
		if running == r.Version {
			return StateSucceeded, "", true
		}
		if running == r.PreviousVersion && !sameBoot {
			return StateFailed, ReasonReverted, true
		}
	case StateInstalled:
		if running == r.PreviousVersion && running != r.Version && !sameBoot {
			return StateFailed, ReasonReverted, true
		}
	}
	return r.State, "", false
}
