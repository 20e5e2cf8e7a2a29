package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// Assignment keys: the device verifies assignments with the keys it
// trusts, and follows a rotation of the server's keys through the signed
// key set (GET /v1/keys): it accepts a set signed by a key it trusts and
// newer than the one it holds, then trusts exactly that set's keys
// (assignment.Trust.Update). It looks when the server announces other keys
// than it trusts (GET /v1/info, every KeyCheckInterval), when an
// enrollment answer names a key it does not trust, and at once when an
// assignment does.

// errNoKeyRotation: the server does not announce FeatureKeyRotation (or
// predates GET /v1/info), so the device keeps the keys it has.
var errNoKeyRotation = errors.New("the server does not publish a key set (no key-rotation feature)")

// keySetError is a key set the device refused, or could not read: trying
// again before the server changes it is pointless.
type keySetError struct{ err error }

func (e *keySetError) Error() string { return e.err.Error() }
func (e *keySetError) Unwrap() error { return e.err }

// loadTrust sets a.trust from the state, or seeds the state from the
// configured keys at first start and when other keys are configured. It
// reports whether the state changed.
func (a *Agent) loadTrust(p parsed) (bool, error) {
	st := &a.state
	if st.AssignmentKeys != nil && st.ProvisionedKeys == p.provisioned {
		t, err := assignment.NewTrust(*st.AssignmentKeys)
		if err != nil {
			return false, fmt.Errorf("agent: stored assignment keys: %w", err)
		}
		a.trust = t
		return false, nil
	}
	ks := p.trust.KeySet()
	if st.AssignmentKeys != nil {
		// Re-provisioned: the configured keys replace the trusted ones,
		// and the serial stays, so no older key set is accepted again.
		ks.Serial = st.AssignmentKeys.Serial
		a.cfg.Log.Info("assignment keys re-provisioned", "keys", p.trust.KeyIDs(), "serial", ks.Serial)
	}
	t, err := assignment.NewTrust(ks)
	if err != nil {
		return false, fmt.Errorf("agent: assignment keys: %w", err)
	}
	a.trust = t
	st.AssignmentKeys, st.ProvisionedKeys, st.KeysCheckedAt = &ks, p.provisioned, a.cfg.Clock()
	return true, nil
}

// TrustedKeyIDs are the IDs of the assignment keys the device trusts,
// sorted, and the serial of the key set they came from (0: as provisioned).
func (a *Agent) TrustedKeyIDs() ([]string, int64) { return a.trust.KeyIDs(), a.trust.Serial() }

// trusts reports whether the assignment key keyID is trusted.
func (a *Agent) trusts(keyID string) bool { return a.trust.Trusts(keyID) }

// keysHint notes a key ID the server named (in an enrollment answer): one
// the device does not trust makes the next step look at the server's keys.
func (a *Agent) keysHint(keyID string) {
	if assignment.IsKeyID(keyID) && !a.trusts(keyID) {
		a.keysDue = true
	}
}

// checkKeys compares the trusted keys with the server's when due and
// follows its key set when they differ. Failures are logged: a check for
// updates goes on with the keys the device has.
func (a *Agent) checkKeys(ctx context.Context) {
	now := a.cfg.Clock()
	last := a.state.KeysCheckedAt
	if !a.keysDue && !last.After(now) && now.Sub(last) < a.cfg.KeyCheckInterval {
		return
	}
	err := a.syncKeys(ctx, false)
	var kse *keySetError
	switch {
	case err == nil:
	case errors.Is(err, errNoKeyRotation):
		a.cfg.Log.V(1).Info("assignment keys not checked", "reason", err.Error())
	case errors.As(err, &kse):
		a.cfg.Log.Info("the server's assignment key set is refused; keeping the trusted keys", "err", err.Error(), "trusted", a.trust.KeyIDs(), "serial", a.trust.Serial())
	default:
		a.cfg.Log.V(1).Info("assignment keys not checked; trying again at the next step", "err", err.Error())
		return
	}
	a.keysDue = false
	a.state.KeysCheckedAt = now
	if err := a.save(); err != nil {
		a.cfg.Log.Error(err, "save the assignment key check")
	}
}

// syncKeys asks the server which keys it holds and, when they are not the
// trusted ones (or always, with force), fetches its signed key set and
// follows it. Errors: errNoKeyRotation, *keySetError, or a transport or
// API error worth retrying later.
func (a *Agent) syncKeys(ctx context.Context, force bool) error {
	info, err := a.ServerInfo(ctx)
	switch {
	case isCode(err, http.StatusNotFound, ""):
		return errNoKeyRotation
	case err != nil && retryable(err):
		return err
	case err != nil:
		return &keySetError{err} // refused, or an answer that does not parse
	case !slices.Contains(info.Features, protov1.FeatureKeyRotation):
		return errNoKeyRotation
	}
	announced := slices.Clone(info.AssignmentKeyIDs)
	slices.Sort(announced)
	if !force && slices.Equal(announced, a.trust.KeyIDs()) {
		return nil
	}
	r, err := a.call(ctx, http.MethodGet, protov1.PathKeys, nil, false)
	if err != nil {
		return fmt.Errorf("key set: %w", err)
	}
	var doc protov1.KeySetResponse
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return &keySetError{fmt.Errorf("key set: malformed answer: %w", err)}
	}
	next, err := a.trust.Update(doc)
	if err != nil {
		return &keySetError{fmt.Errorf("key set refused: %w", err)}
	}
	if next == a.trust {
		return nil
	}
	ks := next.KeySet()
	prev := a.state.AssignmentKeys
	a.state.AssignmentKeys = &ks
	// Durable before any assignment is verified with the new keys.
	if err := a.save(); err != nil {
		a.state.AssignmentKeys = prev
		return err
	}
	dropped := slices.DeleteFunc(a.trust.KeyIDs(), next.Trusts)
	a.trust = next
	a.cfg.Log.Info("assignment keys updated", "serial", next.Serial(), "keys", next.KeyIDs(), "retired", dropped)
	a.emit(Event{Kind: EventKeys, Reason: fmt.Sprintf("key set serial %d: %s", next.Serial(), strings.Join(next.KeyIDs(), ", "))})
	return nil
}

// assignmentVerifier returns the trusted key an answer's assignment names.
// When it names a key the device does not trust, the device follows the
// server's key set first; a key still unknown after that is refused with
// RefuseUntrustedKey, naming it. A failure to reach the server is returned
// as is: the answer is asked for again at the next poll, nothing is
// refused.
func (a *Agent) assignmentVerifier(ctx context.Context, s *assignment.Signed) (*assignment.Verifier, error) {
	if s == nil || !assignment.IsKeyID(s.KeyID) {
		// Not a key the device could learn: VerifyAssignment refuses it
		// (no assignment, or a bad signature).
		v, _ := a.trust.Verifier(a.trust.KeyIDs()[0])
		return v, nil
	}
	if v, ok := a.trust.Verifier(s.KeyID); ok {
		return v, nil
	}
	err := a.syncKeys(ctx, true)
	var kse *keySetError
	if err != nil && !errors.Is(err, errNoKeyRotation) && !errors.As(err, &kse) {
		return nil, err
	}
	a.keysDue, a.state.KeysCheckedAt = false, a.cfg.Clock()
	if v, ok := a.trust.Verifier(s.KeyID); ok {
		return v, nil
	}
	// Short enough for a Rollout's failure list, which keeps 256
	// characters of a reason.
	why := "and the server's key set does not list the key"
	switch {
	case errors.Is(err, assignment.ErrUntrustedKey):
		why = "and the server's key set is signed by none of them"
	case errors.Is(err, errNoKeyRotation):
		why = "and the server publishes no key set"
	case err != nil:
		why = err.Error()
	}
	return nil, &Refusal{Code: RefuseUntrustedKey, Err: fmt.Errorf("%s: assignment signed by key %s; this device trusts %s (key set serial %d), %s",
		protov1.ReasonUntrustedSigningKey, s.KeyID, shortKeyIDs(a.trust.KeyIDs()), a.trust.Serial(), why)}
}

func shortKeyIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(len(id), 16)]
	}
	return strings.Join(out, ", ")
}
