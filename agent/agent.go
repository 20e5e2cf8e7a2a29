package agent

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/vendorsig"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// Agent runs the update loop of one device. Its methods must not be called
// concurrently; Status may be called at any time.
type Agent struct {
	cfg  Config
	base string
	// trust holds the assignment keys the device trusts (state.AssignmentKeys).
	trust  *assignment.Trust
	vendor []vendorsig.Key
	// keysDue asks the next step to compare keys with the server's.
	keysDue bool
	key     *ecdh.PrivateKey
	state   State
	backoff backoffState
	// rebootCalled is set once the reboot hook ran in this process.
	rebootCalled bool

	mu     sync.Mutex
	status Status
}

// Status is a snapshot of the agent for observers.
type Status struct {
	State         string // last state (see Event)
	Reason        string // last failure or refusal
	Version       string
	SecurityFloor int64 // committed floor
	PendingFloor  int64 // floor awaiting the rollout's commit, 0 if none
	Rollout       string
}

// New validates cfg, loads the state and, on first start, generates the
// device key and saves it. It does not contact the server.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	p, err := cfg.parse()
	if err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	a := &Agent{cfg: cfg, base: p.base.String(), vendor: p.vendor, backoff: backoffState{cfg: cfg.Backoff}}
	st, err := cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	a.state = st
	changed := false
	if len(st.DeviceKey) == 0 {
		k, err := keywrap.GenerateKey(cfg.KEM)
		if err != nil {
			return nil, err
		}
		a.state.KEM, a.state.DeviceKey, a.state.Token = string(cfg.KEM), k.Bytes(), ""
		changed = true
	}
	kem, err := keywrap.ParseKEM(a.state.KEM)
	if err != nil {
		return nil, fmt.Errorf("agent: stored key: %w", err)
	}
	curve := ecdh.X25519()
	if kem == keywrap.P256 {
		curve = ecdh.P256()
	}
	if a.key, err = curve.NewPrivateKey(a.state.DeviceKey); err != nil {
		return nil, fmt.Errorf("agent: stored %s key: %w", kem, err)
	}
	if a.state.Version == "" {
		a.state.Version, changed = cfg.Version, true
	}
	if cfg.SecurityFloor > a.state.SecurityFloor {
		a.state.SecurityFloor, changed = cfg.SecurityFloor, true
	}
	if a.state.PendingFloor != 0 && a.state.PendingFloor <= a.state.SecurityFloor {
		a.state.PendingFloor, changed = 0, true
	}
	if seeded, err := a.loadTrust(p); err != nil {
		return nil, err
	} else if seeded {
		changed = true
	}
	if changed {
		if err := a.save(); err != nil {
			return nil, err
		}
	}
	a.setStatus(func(s *Status) {
		s.State, s.Version, s.SecurityFloor, s.PendingFloor = StateIdle, a.state.Version, a.state.SecurityFloor, a.state.PendingFloor
		if w := a.state.Work; w != nil {
			s.Rollout = w.Rollout
			s.State = w.Phase
			if w.Phase == PhaseInstalled {
				s.State = StateRebooting
			}
		}
	})
	return a, nil
}

// DeviceID returns the configured device ID.
func (a *Agent) DeviceID() string { return a.cfg.DeviceID }

// PublicKey returns the device's HPKE public key (raw bytes).
func (a *Agent) PublicKey() []byte { return a.key.PublicKey().Bytes() }

// State returns a copy of the persisted state, for diagnostics.
func (a *Agent) State() State { return a.state.clone() }

// Status returns the latest status snapshot. Safe for concurrent use.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

func (a *Agent) setStatus(f func(*Status)) {
	a.mu.Lock()
	f(&a.status)
	a.mu.Unlock()
}

func (a *Agent) save() error {
	if err := a.cfg.Store.Save(a.state); err != nil {
		return fmt.Errorf("agent: save state: %w", err)
	}
	return nil
}

func (a *Agent) emit(e Event) {
	if e.Version == "" {
		e.Version = a.state.Version
	}
	switch e.Kind {
	case EventState:
		a.setStatus(func(s *Status) {
			s.State, s.Rollout, s.Version = e.State, e.Rollout, a.state.Version
			s.SecurityFloor, s.PendingFloor = a.state.SecurityFloor, a.state.PendingFloor
			if e.Reason != "" || e.State == StateIdle {
				s.Reason = e.Reason
			}
		})
	case EventRefusal:
		a.setStatus(func(s *Status) { s.Reason = e.Reason })
	case EventCommitted:
		a.setStatus(func(s *Status) { s.SecurityFloor, s.PendingFloor = a.state.SecurityFloor, a.state.PendingFloor })
	}
	if a.cfg.OnEvent != nil {
		a.cfg.OnEvent(e)
	}
}

func (a *Agent) emitState(state protov1.State, rollout, target, reason string) {
	a.emit(Event{Kind: EventState, State: string(state), Rollout: rollout, Target: target, Reason: reason})
}

// Run checks for updates until ctx ends, sleeping PollInterval (with
// jitter) between checks and backing off after errors. It returns nil when
// ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	for {
		d, err := a.Step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.cfg.Log.Info("update step failed", "err", err.Error(), "retryIn", d.String())
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Step does one round: finish a pending boot confirmation, deliver pending
// reports, check for an update and act on the answer (which may download,
// install and reboot, or commit the security floor). It returns how long
// to wait before the next Step.
func (a *Agent) Step(ctx context.Context) (time.Duration, error) {
	wait, err := a.step(ctx)
	switch {
	case err == nil:
		a.backoff.reset()
		return wait, nil
	case retryable(err):
		return a.backoff.next(retryAfterOf(err)), err
	default:
		return a.pollDelay(), err
	}
}

func (a *Agent) pollDelay() time.Duration { return jitter(a.cfg.PollInterval, a.cfg.PollJitter) }

func (a *Agent) step(ctx context.Context) (time.Duration, error) {
	if w := a.state.Work; w != nil && w.Phase == PhaseInstalled {
		waiting, err := a.afterInstall(ctx)
		if err != nil || waiting {
			return a.pollDelay(), err
		}
	}
	if err := a.ensureEnrolled(ctx); err != nil {
		return 0, err
	}
	if err := a.flushReports(ctx); err != nil {
		// Reports are retried with the next step; a check may still work.
		a.cfg.Log.V(1).Info("reports not delivered", "err", err.Error())
	}
	a.checkKeys(ctx)
	u, retryAfter, err := a.check(ctx)
	if err != nil {
		return 0, err
	}
	if u == nil {
		if a.state.Work == nil {
			a.emitState(StateIdle, "", "", "")
		}
		if retryAfter > 0 {
			return jitter(retryAfter, 0.1), nil
		}
		return a.pollDelay(), nil
	}
	return a.pollDelay(), a.act(ctx, u)
}

var errCanceled = errors.New("update canceled by the server")
