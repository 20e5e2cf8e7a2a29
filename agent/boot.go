package agent

import (
	"context"
	"fmt"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// reboot asks the device to boot the installed image. The agent calls the
// hook once per process for an installed update; when the hook returns
// and the device keeps running, the agent waits (without checking in: a
// check on the old version would count as a revert) until a new boot.
func (a *Agent) reboot(ctx context.Context) error {
	w := a.state.Work
	if a.rebootCalled {
		return nil
	}
	a.rebootCalled = true
	w.RebootRequested = true
	if err := a.save(); err != nil {
		return err
	}
	if a.cfg.Reboot == nil {
		a.cfg.Log.Info("update installed; reboot the device to run it", "version", w.Assignment.Version)
		return nil
	}
	a.cfg.Log.Info("rebooting into the new image", "version", w.Assignment.Version)
	if err := a.cfg.Reboot(ctx); err != nil {
		a.rebootCalled = false // try again at the next step
		return fmt.Errorf("reboot hook: %w", err)
	}
	return nil
}

// afterInstall handles an installed update. Before the reboot it waits
// (waiting = true). After it, running the target version confirms the
// image and reports succeeded (rolledback for a rollback); running
// anything else means the bootloader went back to the old image, which the
// next check-in tells the server (counted as "reverted by device").
//
// Confirmation does not raise the security floor: the release's
// securityVersion is kept as the pending floor until the rollout commits
// (protov1.ActionCommit), so that the rollout can still roll the device back to
// its previous release (MCUboot's delayed rollback-counter update).
func (a *Agent) afterInstall(ctx context.Context) (waiting bool, err error) {
	w := a.state.Work
	asg := w.Assignment
	if a.cfg.BootID() == w.BootID {
		return true, a.reboot(ctx)
	}
	running, err := a.cfg.Installer.Running(ctx)
	if err != nil {
		return true, err
	}
	if running == "" {
		// The installer cannot tell: trust that the new image booted.
		running = asg.Version
	}
	if running != asg.Version {
		a.cfg.Log.Info("booted back into the previous image", "running", running, "installed", asg.Version)
		a.state.Version, a.state.Work = running, nil
		if err := a.save(); err != nil {
			return false, err
		}
		a.emitState(StateReverted, w.Rollout, asg.Version, fmt.Sprintf("booted %s after installing %s", running, asg.Version))
		return false, nil
	}
	if err := a.cfg.Installer.Confirm(ctx, running); err != nil {
		return true, fmt.Errorf("confirm %s: %w", running, err)
	}
	a.state.Version = running
	a.state.PendingFloor = 0
	if asg.SecurityVersion > a.state.SecurityFloor {
		a.state.PendingFloor = asg.SecurityVersion
	}
	a.state.Work = nil
	state := protov1.StateSucceeded
	if asg.Rollback {
		state = protov1.StateRolledBack
	}
	if err := a.enqueue(w.Rollout, state, nil, ""); err != nil {
		return false, err
	}
	a.cfg.Log.Info("update confirmed", "version", running, "securityFloor", a.state.SecurityFloor, "pendingFloor", a.state.PendingFloor)
	a.emitState(state, w.Rollout, asg.Version, "")
	return false, nil
}
