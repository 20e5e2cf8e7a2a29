package agent

import (
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// State is everything the agent keeps across restarts. A StateStore saves
// it whole; the agent saves after every step that must survive a power cut.
type State struct {
	// KEM and DeviceKey are the device's HPKE key pair (the raw private
	// key). DirStore keeps DeviceKey in its own 0600 file.
	KEM       string `json:"kem,omitempty"`
	DeviceKey []byte `json:"-"`
	// Token is the bearer token from enrollment.
	Token string `json:"token,omitempty"`
	// Enrolled is a fingerprint of what the device enrolled with (type and
	// labels); a change re-enrolls.
	Enrolled string `json:"enrolled,omitempty"`
	// Version is the firmware version the agent last knew running.
	Version string `json:"version,omitempty"`
	// SecurityFloor is the committed anti-rollback floor: no install or
	// rollback below it is accepted, and check-ins and enrollment report
	// it. It never decreases. It rises only with a commit from the server
	// (the rollout that installed the running release committed) or a
	// higher Config.SecurityFloor at start, never at boot confirmation.
	SecurityFloor int64 `json:"securityFloor"`
	// PendingFloor is the securityVersion of the running release while it
	// is above SecurityFloor and not committed yet: set when an install or
	// rollback is confirmed after boot, cleared by the commit (or when
	// the committed floor reaches it). It is informational: nothing is
	// enforced against it, so the release can still be rolled back to the
	// previous one until the rollout commits. 0 when nothing is pending.
	PendingFloor int64 `json:"pendingFloor,omitempty"`
	// Work is the update being worked on, nil when idle.
	Work *Work `json:"work,omitempty"`
	// Pending are reports not yet acknowledged by the server, oldest first.
	// Each keeps its report ID, so a retry after a restart is idempotent.
	Pending []PendingReport `json:"pending,omitempty"`
	// AssignmentKeys are the assignment keys the device trusts and the
	// serial of the server's key set they came from (0 until it accepted
	// one). Seeded from Config.AssignmentKeyPEM; the serial never
	// decreases.
	AssignmentKeys *assignment.KeySet `json:"assignmentKeys,omitempty"`
	// ProvisionedKeys fingerprints the configured keys AssignmentKeys were
	// seeded from: other configured keys (re-provisioning) seed them again.
	ProvisionedKeys string `json:"provisionedKeys,omitempty"`
	// KeysCheckedAt is when the agent last compared its keys with the
	// server's (Config.KeyCheckInterval).
	KeysCheckedAt time.Time `json:"keysCheckedAt,omitzero"`
}

// Work phases.
const (
	PhaseDownloading = "downloading" // chunks are being verified into staging
	PhaseInstalled   = "installed"   // written; waiting for the reboot into it
)

// Work is an accepted assignment and how far the device got with it.
type Work struct {
	Rollout string `json:"rollout"`
	// Signed is the latest verified signed assignment (it carries the
	// wrapped key); Assignment is its payload as verified.
	Signed     assignment.Signed     `json:"signed"`
	Assignment assignment.Assignment `json:"assignment"`
	Phase      string                `json:"phase"`
	// Header is the blob's 58-byte header, kept from the first response:
	// it is the AAD of every chunk.
	Header []byte `json:"header,omitempty"`
	// Chunks is the number of chunks verified and durably staged; Bytes
	// their plaintext size.
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// ETag is the blob's entity tag, sent as If-Range when resuming.
	ETag string `json:"etag,omitempty"`
	// PreviousVersion is what ran when the work was accepted.
	PreviousVersion string `json:"previousVersion,omitempty"`
	// BootID is the boot during which the image was installed.
	BootID string `json:"bootID,omitempty"`
	// RebootRequested is set once the reboot hook was called.
	RebootRequested bool `json:"rebootRequested,omitempty"`
}

// PendingReport is a status report waiting to be acknowledged.
type PendingReport struct {
	ID       string        `json:"id"`
	Rollout  string        `json:"rollout"`
	State    protov1.State `json:"state"`
	Progress *int          `json:"progress,omitempty"`
	Reason   string        `json:"reason,omitempty"`
}

// StateStore persists State. Load returns a zero State (not an error) when
// nothing was saved yet. Save must be atomic: after a crash Load returns
// either the previous or the new state, never a mix.
type StateStore interface {
	Load() (State, error)
	Save(State) error
}

// clone returns a deep enough copy for a store to keep.
func (s State) clone() State {
	c := s
	c.DeviceKey = append([]byte(nil), s.DeviceKey...)
	if s.Work != nil {
		w := *s.Work
		w.Header = append([]byte(nil), s.Work.Header...)
		c.Work = &w
	}
	c.Pending = append([]PendingReport(nil), s.Pending...)
	if s.AssignmentKeys != nil {
		ks := *s.AssignmentKeys
		ks.Keys = make([]assignment.PublicKey, len(s.AssignmentKeys.Keys))
		for i, k := range s.AssignmentKeys.Keys {
			k.PublicKey = append([]byte(nil), k.PublicKey...)
			ks.Keys[i] = k
		}
		c.AssignmentKeys = &ks
	}
	return c
}
