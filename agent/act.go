package agent

import (
	"context"
	"fmt"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// act handles a 200 answer of GET /v1/update.
func (a *Agent) act(ctx context.Context, c *checked) error {
	if c.err != nil {
		// The answer does not parse, so it names no rollout it could be
		// reported against: count it, log it, and ask again later.
		r, _ := AsRefusal(c.err)
		a.emit(Event{Kind: EventRefusal, Code: r.Code, Reason: r.Error()})
		return c.err
	}
	if c.Action == protov1.ActionCancel {
		w := a.state.Work
		if w == nil || w.Rollout != c.Rollout || w.Phase == PhaseInstalled {
			return nil
		}
		a.dropWork()
		if err := a.save(); err != nil {
			return err
		}
		a.emitState(StateCanceled, c.Rollout, w.Assignment.Version, "canceled: "+c.Reason)
		return nil
	}
	if c.Action == protov1.ActionCommit {
		return a.commit(ctx, c)
	}
	v, err := a.assignmentVerifier(ctx, c.Assignment)
	if _, ok := AsRefusal(err); ok {
		return a.fail(ctx, c.Rollout, "", err)
	} else if err != nil {
		return err
	}
	asg, err := VerifyAssignment(v, c.UpdateResponse, Expectation{
		DeviceID: a.cfg.DeviceID, KEM: a.state.KEM, Nonce: c.nonce,
		SecurityFloor: a.state.SecurityFloor, Now: a.cfg.Clock(), Skew: a.cfg.ClockSkew,
	})
	if err != nil {
		return a.fail(ctx, c.Rollout, asg.Version, err)
	}
	w := a.state.Work
	if w != nil && (w.Rollout != asg.Rollout || w.Assignment.EncryptedSHA256 != asg.EncryptedSHA256 || w.Assignment.PlainSHA256 != asg.PlainSHA256) {
		a.cfg.Log.Info("a new assignment replaces the unfinished one", "old", w.Rollout, "new", asg.Rollout)
		a.dropWork()
		w = nil
	}
	if w == nil {
		w = &Work{Rollout: asg.Rollout, Phase: PhaseDownloading, PreviousVersion: a.state.Version}
	}
	// The fresh answer carries a fresh expiry; keep it.
	w.Signed, w.Assignment = *c.Assignment, asg
	a.state.Work = w
	if err := a.save(); err != nil {
		return err
	}
	return a.process(ctx)
}

// fail refuses the current or offered update: it reports failed with the
// precise reason, forgets the work of that rollout and its staged bytes.
func (a *Agent) fail(ctx context.Context, rollout, target string, err error) error {
	r, ok := AsRefusal(err)
	if !ok {
		r = &Refusal{Code: RefuseInstall, Err: err}
	}
	a.cfg.Log.Info("update refused", "rollout", rollout, "code", r.Code, "reason", r.Error())
	a.emit(Event{Kind: EventRefusal, Code: r.Code, Reason: r.Error(), Rollout: rollout, Target: target})
	if w := a.state.Work; w != nil && w.Rollout == rollout && w.Phase != PhaseInstalled {
		a.dropWork()
	}
	if err := a.enqueue(rollout, protov1.StateFailed, nil, r.Error()); err != nil {
		return err
	}
	a.emitState(protov1.StateFailed, rollout, target, r.Error())
	if err := a.deliver(ctx); err != nil && err != errCanceled {
		return err
	}
	return r
}

// process downloads, verifies and installs the current work, then
// reboots into it.
func (a *Agent) process(ctx context.Context) error {
	w := a.state.Work
	asg := w.Assignment
	img, err := a.download(ctx, w)
	if err != nil {
		if _, ok := AsRefusal(err); ok {
			return a.fail(ctx, w.Rollout, asg.Version, err)
		}
		return err
	}
	if err := a.enqueue(w.Rollout, protov1.StateDownloaded, nil, ""); err != nil {
		return err
	}
	a.emitState(protov1.StateDownloaded, w.Rollout, asg.Version, "")
	if err := a.deliver(ctx); err != nil {
		return ignoreCanceled(err)
	}
	if err := a.enqueue(w.Rollout, protov1.StateInstalling, nil, ""); err != nil {
		return err
	}
	if err := a.deliver(ctx); err != nil {
		return ignoreCanceled(err)
	}
	if asg.SecurityVersion < a.state.SecurityFloor {
		return a.fail(ctx, w.Rollout, asg.Version, refuse(RefuseBelowFloor, "install refused: securityVersion %d is below the device's security floor %d", asg.SecurityVersion, a.state.SecurityFloor))
	}
	a.emitState(protov1.StateInstalling, w.Rollout, asg.Version, "")
	if err := a.cfg.Installer.Install(ctx, img); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return a.fail(ctx, w.Rollout, asg.Version, &Refusal{Code: RefuseInstall, Err: fmt.Errorf("install: %w", err)})
	}
	w.Phase, w.BootID = PhaseInstalled, a.cfg.BootID()
	if err := a.cfg.Staging.Discard(); err != nil {
		a.cfg.Log.Error(err, "discard staged image")
	}
	if err := a.enqueue(w.Rollout, protov1.StateInstalled, nil, ""); err != nil {
		return err
	}
	a.emitState(protov1.StateInstalled, w.Rollout, asg.Version, "")
	if err := a.deliver(ctx); err != nil {
		return ignoreCanceled(err)
	}
	a.emitState(StateRebooting, w.Rollout, asg.Version, "")
	a.rebootCalled = false
	return a.reboot(ctx)
}

func ignoreCanceled(err error) error {
	if err == errCanceled {
		return nil
	}
	return err
}
