package agent

import (
	"github.com/otaflow/otaflow/internal/assignment"
)

// The JSON bodies of protocol v1. They are declared here rather than
// imported from the server so that the device library stays free of the
// server's dependencies.

type enrollRequest struct {
	DeviceID       string            `json:"deviceID"`
	BootstrapToken string            `json:"bootstrapToken"`
	KEM            string            `json:"kem"`
	PublicKey      string            `json:"publicKey"`
	DeviceType     string            `json:"deviceType"`
	Labels         map[string]string `json:"labels,omitempty"`
	Version        string            `json:"version"`
	SecurityFloor  int64             `json:"securityFloor"`
}

type enrollResponse struct {
	DeviceID        string `json:"deviceID"`
	Token           string `json:"token"`
	AssignmentKeyID string `json:"assignmentKeyID"`
}

// UpdateResponse is the 200 answer of GET /v1/update.
type UpdateResponse struct {
	// Action is ActionInstall, ActionRollback, ActionCommit or ActionCancel.
	Action string `json:"action"`
	// Rollout is "namespace/name"; reports name it.
	Rollout string `json:"rollout"`
	// Assignment is set for install, rollback and commit.
	Assignment *assignment.Signed `json:"assignment,omitempty"`
	// Reason explains a cancel.
	Reason string `json:"reason,omitempty"`
}

// Update actions.
const (
	ActionInstall  = "install"
	ActionRollback = "rollback"
	ActionCancel   = "cancel"
	// ActionCommit: the rollout that installed the running release
	// committed; the signed assignment (commit: true, for the running
	// version) raises the security floor to its securityVersion. Nothing
	// is installed and nothing is reported.
	ActionCommit = "commit"
)

// Report states a device may send.
const (
	StateDownloading = "downloading"
	StateDownloaded  = "downloaded"
	StateInstalling  = "installing"
	StateInstalled   = "installed"
	StateSucceeded   = "succeeded"
	StateFailed      = "failed"
	StateRolledBack  = "rolledback"
)

type statusReport struct {
	ReportID string `json:"reportID"`
	Rollout  string `json:"rollout"`
	State    string `json:"state"`
	Progress *int   `json:"progress,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type statusResponse struct {
	State     string `json:"state,omitempty"`
	Duplicate bool   `json:"duplicate"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes the agent acts on.
const (
	codeUnauthenticated = "unauthenticated"
	codeCanceled        = "canceled"
	codeFinal           = "final"
	codeUnknownRollout  = "unknown_rollout"
	codeNotAssigned     = "not_assigned"
)
