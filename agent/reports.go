package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func newReportID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// enqueue persists a report before it is sent, so that it survives a
// restart and is retried with the same ID. A newer progress report
// replaces an unsent one of the same rollout.
func (a *Agent) enqueue(rollout string, state protov1.State, progress *int, reason string) error {
	if rollout == "" {
		return nil
	}
	if state == protov1.StateFailed {
		reason = reportReason(reason)
	}
	p := PendingReport{ID: newReportID(), Rollout: rollout, State: state, Progress: progress, Reason: reason}
	if n := len(a.state.Pending); n > 0 && state == protov1.StateDownloading {
		if last := a.state.Pending[n-1]; last.State == protov1.StateDownloading && last.Rollout == rollout && last.Progress != nil {
			a.state.Pending = a.state.Pending[:n-1]
		}
	}
	a.state.Pending = append(a.state.Pending, p)
	return a.save()
}

// flushReports sends pending reports in order. It stops at the first
// retryable failure (the rest wait for the next attempt) and returns
// errCanceled when the server said the current update was canceled.
// Reports the server will never accept (final, unknown rollout, not
// assigned, invalid transition, bad request) are dropped: retrying them
// unchanged cannot succeed.
func (a *Agent) flushReports(ctx context.Context) error {
	canceled := false
	for len(a.state.Pending) > 0 {
		p := a.state.Pending[0]
		_, err := a.authed(ctx, http.MethodPost, protov1.PathStatus, protov1.StatusReport{
			ReportID: p.ID, Rollout: p.Rollout, State: p.State, Progress: p.Progress, Reason: p.Reason,
		})
		switch {
		case err == nil:
			a.emit(Event{Kind: EventReport, State: string(p.State), Rollout: p.Rollout, Reason: p.Reason})
		case retryable(err):
			return err
		case isCode(err, http.StatusConflict, protov1.CodeCanceled):
			a.cfg.Log.Info("update canceled by the server", "rollout", p.Rollout)
			if w := a.state.Work; w != nil && w.Rollout == p.Rollout && w.Phase != PhaseInstalled {
				a.dropWork()
				canceled = true
				a.emitState(StateCanceled, p.Rollout, w.Assignment.Version, "canceled by the server")
			}
		case isCode(err, http.StatusUnauthorized, ""):
			return err
		default:
			a.cfg.Log.Info("report dropped", "rollout", p.Rollout, "state", p.State, "err", err.Error())
			// The server will never take this rollout's update further
			// (final: e.g. timed out; unknown_rollout: deleted;
			// not_assigned: nothing offered): stop working on it.
			if w := a.state.Work; w != nil && w.Rollout == p.Rollout && w.Phase != PhaseInstalled &&
				(isCode(err, http.StatusConflict, protov1.CodeFinal) || isCode(err, http.StatusNotFound, protov1.CodeUnknownRollout) || isCode(err, http.StatusNotFound, protov1.CodeNotAssigned)) {
				a.dropWork()
				a.emitState(StateIdle, "", "", "")
			}
		}
		a.state.Pending = a.state.Pending[1:]
		if len(a.state.Pending) == 0 {
			a.state.Pending = nil
		}
		if err := a.save(); err != nil {
			return err
		}
	}
	if canceled {
		return errCanceled
	}
	return nil
}

// deliver flushes with a few quick retries; used before steps that a
// cancel must be able to stop. Only errCanceled and save errors are
// returned: when the server stays unreachable the agent goes on and the
// reports wait.
func (a *Agent) deliver(ctx context.Context) error {
	b := backoffState{cfg: Backoff{Initial: 500 * time.Millisecond, Max: 5 * time.Second}}
	for attempt := 0; ; attempt++ {
		err := a.flushReports(ctx)
		if err == nil || err == errCanceled || !retryable(err) || attempt == 2 {
			if err != nil && err != errCanceled {
				a.cfg.Log.V(1).Info("reports not delivered yet", "err", err.Error())
				if retryable(err) || isCode(err, http.StatusUnauthorized, "") {
					return nil
				}
			}
			return err
		}
		t := time.NewTimer(b.next(retryAfterOf(err)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// dropWork forgets the current update and its staged bytes.
func (a *Agent) dropWork() {
	a.state.Work = nil
	if err := a.cfg.Staging.Discard(); err != nil {
		a.cfg.Log.Error(err, "discard staged image")
	}
}
