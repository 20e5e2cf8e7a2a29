package agent

import (
	"context"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// commit handles a commit answer: the rollout that installed the running
// release committed, so the security floor rises to that release's
// securityVersion. The answer is verified like an install (signature,
// device, validity window, nonce, KEM, rollout), must be signed as a commit
// and for the running version. A refusal is logged and emitted but never
// reported to the rollout: a commit is not an update that can fail. Nothing
// is reported on success either; the next check-in carries the new floor,
// which is how the server learns it. A commit that does not raise the
// floor changes nothing.
func (a *Agent) commit(ctx context.Context, c *checked) error {
	v, err := a.assignmentVerifier(ctx, c.Assignment)
	if _, ok := AsRefusal(err); err != nil && !ok {
		return err
	}
	var asg assignment.Assignment
	if err == nil {
		asg, err = VerifyAssignment(v, c.UpdateResponse, Expectation{
			DeviceID: a.cfg.DeviceID, KEM: a.state.KEM, Nonce: c.nonce, Version: c.version,
			SecurityFloor: a.state.SecurityFloor, Now: a.cfg.Clock(), Skew: a.cfg.ClockSkew,
		})
	}
	if err != nil {
		r, ok := AsRefusal(err)
		if !ok {
			r = &Refusal{Code: RefuseMalformed, Err: err}
		}
		a.cfg.Log.Info("commit refused", "rollout", c.Rollout, "code", r.Code, "reason", r.Error())
		a.emit(Event{Kind: EventRefusal, Code: r.Code, Reason: r.Error(), Rollout: c.Rollout, Target: asg.Version})
		return r
	}
	if asg.SecurityVersion <= a.state.SecurityFloor {
		a.cfg.Log.V(1).Info("commit does not raise the security floor", "rollout", c.Rollout, "version", asg.Version,
			"securityVersion", asg.SecurityVersion, "securityFloor", a.state.SecurityFloor)
		return nil
	}
	floor, pending := a.state.SecurityFloor, a.state.PendingFloor
	a.state.SecurityFloor, a.state.PendingFloor = asg.SecurityVersion, 0
	// The new floor is durable before anything acts on it (the next
	// check-in reports it to the server).
	if err := a.save(); err != nil {
		a.state.SecurityFloor, a.state.PendingFloor = floor, pending
		return err
	}
	a.cfg.Log.Info("security floor committed", "rollout", c.Rollout, "version", asg.Version,
		"securityFloor", a.state.SecurityFloor, "previousFloor", floor)
	a.emit(Event{Kind: EventCommitted, Rollout: c.Rollout, Target: asg.Version, SecurityFloor: a.state.SecurityFloor})
	return nil
}
