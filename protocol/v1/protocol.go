// Package v1 is otaflow device protocol v1: the request and response bodies,
// paths, actions, states and error codes that devices and the OTA server
// exchange. It is the one home of the wire format: the OTA server, the Go
// device library (package agent) and the fleet simulator all use these
// types, and docs/openapi.yaml describes the same bodies (a contract test
// checks both against each other).
//
// The signed assignment and the wrapped content key are encoded by the
// subpackages assignment and keywrap; the image envelope by
// docs/envelope.md. Within v1 the protocol only grows: see docs/protocol.md
// ("Versioning") for what may change and how a device learns what a server
// supports (GET /v1/info).
//
// The package depends on the standard library only, so device code can
// import it.
package v1

import "github.com/otaflow/otaflow/protocol/v1/assignment"

// Name is the protocol name a server announces in Info.Protocol.
const Name = "otaflow/v1"

// Revision counts additive changes within v1. A server announces its
// revision in Info; a device never needs it to work, only to explain.
//
//	1  enroll, update, blobs, status
//	2  the commit action and the boot check-in parameter
//	3  GET /v1/info
//	4  enrollment tokens sealed to the device key; signing-key rotation
const Revision = 4

// Paths of protocol v1, relative to the server's base URL.
const (
	PathInfo   = "/v1/info"
	PathEnroll = "/v1/enroll"
	PathUpdate = "/v1/update"
	PathStatus = "/v1/status"
	// PathKeys serves the signed set of assignment keys (revision 4,
	// FeatureKeyRotation); its body is assignment.SignedKeySet.
	PathKeys = "/v1/keys"
	// PathBlobs is the prefix of blob URLs; assignments carry the full URL.
	PathBlobs = "/v1/blobs/"
)

// Query parameters of GET /v1/update.
const (
	ParamVersion       = "version"
	ParamSecurityFloor = "securityFloor"
	ParamNonce         = "nonce"
	ParamBoot          = "boot"
)

// Features a server may announce in Info.Features. A device uses a feature
// only when the server announces it; unknown features are ignored.
const (
	// FeatureCommit: the server sends ActionCommit once a rollout commits.
	FeatureCommit = "commit"
	// FeatureBoot: the server understands the boot check-in parameter.
	FeatureBoot = "boot"
	// FeatureNonce: the server echoes the nonce check-in parameter in
	// assignments.
	FeatureNonce = "nonce"
	// FeatureSealedToken: the enroll response carries the bearer token
	// sealed to the device's enrolled HPKE public key (proof of
	// possession), never in clear.
	FeatureSealedToken = "sealed-token"
	// FeatureKeyRotation: assignments name their signing key, and the
	// server publishes its signed set of assignment keys, so devices
	// follow a rotation.
	FeatureKeyRotation = "key-rotation"
)

// Info is the answer of GET /v1/info (no authentication). It lets a device
// or a tool learn what the server speaks before relying on it.
type Info struct {
	// Protocol is Name.
	Protocol string `json:"protocol"`
	// Revision is the server's Revision within v1.
	Revision int `json:"revision"`
	// Features lists the optional behaviours the server implements.
	Features []string `json:"features"`
	// AssignmentKeyIDs are the IDs of the keys the server signs
	// assignments with, current first.
	AssignmentKeyIDs []string `json:"assignmentKeyIDs"`
}

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	DeviceID       string `json:"deviceID"`
	BootstrapToken string `json:"bootstrapToken"`
	// KEM is the device key's type: keywrap.X25519 or keywrap.P256.
	KEM string `json:"kem"`
	// PublicKey is the device's HPKE public key, standard base64.
	PublicKey  string            `json:"publicKey"`
	DeviceType string            `json:"deviceType"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Version is the running firmware version.
	Version string `json:"version"`
	// SecurityFloor is the device's anti-rollback floor.
	SecurityFloor int64 `json:"securityFloor"`
}

// EnrollResponse answers an enrollment.
type EnrollResponse struct {
	DeviceID string `json:"deviceID"`
	// SealedToken is the device's bearer token sealed to the device's
	// enrolled public key (package tokenseal: tokenseal.OpenResponse opens
	// it), standard base64. Only the holder of the private key can read
	// it. The server stores only the token's hash, so it cannot be shown
	// again. Revision 4 (FeatureSealedToken).
	SealedToken string `json:"sealedToken,omitempty"`
	// LegacyToken is the bearer token in clear, as servers before revision
	// 4 sent it. A revision 4 server never sends it; a client may take it
	// only from an answer without SealedToken.
	LegacyToken string `json:"token,omitempty"`
	// AssignmentKeyID identifies the key assignments are signed with
	// (lowercase hex SHA-256); the sealed token is bound to it.
	AssignmentKeyID string `json:"assignmentKeyID"`
}

// Actions of an UpdateResponse.
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

// UpdateResponse is the 200 answer of GET /v1/update (204 means nothing to
// do).
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

// State is a device's state in one rollout as the wire carries it.
type State string

// States a device may report.
const (
	StateDownloading State = "downloading"
	StateDownloaded  State = "downloaded"
	StateInstalling  State = "installing"
	StateInstalled   State = "installed"
	StateSucceeded   State = "succeeded"
	StateFailed      State = "failed"
	StateRolledBack  State = "rolledback"
)

// Reportable lists the states a StatusReport may carry. A StatusResponse may
// carry any state of the rollout rules (e.g. "canceled" or "timedOut").
var Reportable = []State{StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateSucceeded, StateFailed, StateRolledBack}

// StatusReport is the body of POST /v1/status.
type StatusReport struct {
	// ReportID makes retries idempotent: 1–64 of [A-Za-z0-9._:-], unique
	// per device.
	ReportID string `json:"reportID"`
	// Rollout is the assignment's rollout, "namespace/name".
	Rollout string `json:"rollout"`
	// DeviceID is optional; when given it must be the caller's.
	DeviceID string `json:"deviceID,omitempty"`
	State    State  `json:"state"`
	// Progress is an optional percentage (0–100), informational.
	Progress *int `json:"progress,omitempty"`
	// Reason explains a failure (required for failed).
	Reason string `json:"reason,omitempty"`
}

// StatusResponse acknowledges a stored report.
type StatusResponse struct {
	// State is the device's state in the rollout after the report.
	State State `json:"state,omitempty"`
	// Duplicate is true when the report ID was already processed; nothing
	// changed.
	Duplicate bool `json:"duplicate"`
}

// Error is the body of every error response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes, stable across versions; devices may switch on them and must
// treat an unknown code by its HTTP status.
const (
	CodeBadRequest      = "bad_request"
	CodeMalformedJSON   = "malformed_json"
	CodeUnauthenticated = "unauthenticated"
	CodeBadBootstrap    = "bad_bootstrap_token"
	CodeForbidden       = "forbidden"
	CodeNotAssigned     = "not_assigned"
	CodeNotFound        = "not_found"
	CodeUnknownRollout  = "unknown_rollout"
	CodeKeyMismatch     = "key_mismatch"
	// CodeTenantMismatch: the device ID is enrolled through another
	// namespace's credential; a device never changes tenant.
	CodeTenantMismatch = "tenant_mismatch"
	// CodeEnrollmentQuota: the bootstrap credential enrolled its maximum
	// number of devices.
	CodeEnrollmentQuota = "enrollment_quota_exceeded"
	CodeInvalidState    = "invalid_transition"
	CodeFinal           = "final"
	CodeCanceled        = "canceled"
	CodeTooLarge        = "too_large"
	CodeContentType     = "unsupported_media_type"
	CodeRateLimited     = "rate_limited"
	CodeMethod          = "method_not_allowed"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
)
