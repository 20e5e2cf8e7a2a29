package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// ParseUpdateResponse decodes the 200 body of GET /v1/update strictly:
// one JSON object with known fields only, a known action, a namespace/name
// rollout, and an assignment when the action needs one (install, rollback,
// commit). The assignment itself is only parsed after its signature
// verified (VerifyAssignment).
func ParseUpdateResponse(body []byte) (protov1.UpdateResponse, error) {
	var u protov1.UpdateResponse
	if len(body) > maxAPIBody {
		return u, refuse(RefuseMalformed, "update answer is %d bytes, limit %d", len(body), maxAPIBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		return protov1.UpdateResponse{}, refuse(RefuseMalformed, "update answer is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return protov1.UpdateResponse{}, refuse(RefuseMalformed, "update answer has data after the JSON object")
	}
	if !isNamespacedName(u.Rollout) {
		return protov1.UpdateResponse{}, refuse(RefuseMalformed, "update answer names rollout %q, not namespace/name", u.Rollout)
	}
	switch u.Action {
	case protov1.ActionInstall, protov1.ActionRollback, protov1.ActionCommit:
		if u.Assignment == nil {
			return protov1.UpdateResponse{}, refuse(RefuseMalformed, "%s answer without an assignment", u.Action)
		}
	case protov1.ActionCancel:
	default:
		return protov1.UpdateResponse{}, refuse(RefuseMalformed, "unknown action %q", u.Action)
	}
	return u, nil
}

func isNamespacedName(s string) bool {
	ns, name, ok := strings.Cut(s, "/")
	return ok && ns != "" && name != "" && !strings.Contains(name, "/") && len(s) <= 317
}

// Expectation is what the device checks an assignment against.
type Expectation struct {
	DeviceID      string
	KEM           string
	Nonce         string // the nonce sent with the check, "" if none
	Version       string // the running version the check sent; a commit must be signed for it
	SecurityFloor int64  // the committed floor; not checked for a commit
	Now           time.Time
	Skew          time.Duration
}

// VerifyAssignment checks an install, rollback or commit answer as
// protocol v1 requires, in order: the signature by the trusted key (before
// anything is parsed), strict parsing, the device ID, the validity window,
// the nonce, the security floor (not for a commit: a commit at or below
// the floor is a no-op for the caller, not a refusal), the suite and KEM,
// that the signed rollout is the answer's, and that the flags match the
// action: rollback exactly for a rollback answer, commit never for install
// or rollback (RefuseMalformed). A commit answer must carry commit: true
// and be signed for e.Version, the running version (RefuseCommit). Every
// failure is a *Refusal.
func VerifyAssignment(v *assignment.Verifier, u protov1.UpdateResponse, e Expectation) (assignment.Assignment, error) {
	if u.Assignment == nil {
		return assignment.Assignment{}, refuse(RefuseMalformed, "no assignment in the %s answer", u.Action)
	}
	a, err := v.Verify(*u.Assignment, e.DeviceID, e.Now, e.Skew)
	if err != nil {
		code := RefuseMalformed
		switch {
		case errors.Is(err, assignment.ErrBadSignature):
			code = RefuseBadSignature
		case errors.Is(err, assignment.ErrWrongDevice):
			code = RefuseWrongDevice
		case errors.Is(err, assignment.ErrExpired):
			code = RefuseExpired
		case errors.Is(err, assignment.ErrNotYetValid):
			code = RefuseNotYetValid
		}
		// A missing or duplicate "suite" field stays malformed.
		if code == RefuseMalformed && errors.Is(err, assignment.ErrUnsupportedSuite) {
			code = RefuseSuite
		}
		return assignment.Assignment{}, &Refusal{Code: code, Err: fmt.Errorf("assignment refused: %w", err)}
	}
	// The server echoes the nonce byte for byte.
	if e.Nonce != "" && a.Nonce != e.Nonce {
		return a, refuse(RefuseNonce, "assignment refused: nonce %q is not the nonce this check sent", a.Nonce)
	}
	if u.Action != protov1.ActionCommit && a.SecurityVersion < e.SecurityFloor {
		return a, refuse(RefuseBelowFloor, "assignment refused: securityVersion %d is below the device's security floor %d", a.SecurityVersion, e.SecurityFloor)
	}
	if a.Suite != envelope.Suite {
		return a, refuse(RefuseSuite, "assignment refused: suite %q, want %q", a.Suite, envelope.Suite)
	}
	if e.KEM != "" && a.KEM != e.KEM {
		return a, refuse(RefuseKEM, "assignment refused: key wrapped for %s, the device key is %s", a.KEM, e.KEM)
	}
	if a.Rollout != u.Rollout {
		return a, refuse(RefuseRolloutMismatch, "assignment refused: signed for rollout %q, answer names %q", a.Rollout, u.Rollout)
	}
	if u.Action == protov1.ActionCommit {
		if !a.Commit {
			return a, refuse(RefuseCommit, "commit refused: the assignment is not signed as a commit (rollback=%t)", a.Rollback)
		}
		if a.Version != e.Version {
			return a, refuse(RefuseCommit, "commit refused: signed for version %q, the device runs %q", a.Version, e.Version)
		}
		return a, nil
	}
	if a.Commit {
		return a, refuse(RefuseMalformed, "assignment refused: action %q with commit=true", u.Action)
	}
	if a.Rollback != (u.Action == protov1.ActionRollback) {
		return a, refuse(RefuseMalformed, "assignment refused: action %q with rollback=%t", u.Action, a.Rollback)
	}
	return a, nil
}
