package mender

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Wire types of the Mender device API as mender-client 3.x sends and
// reads them (client/auth.go, client/client_update.go,
// client/client_status.go, client/client_log.go and
// datastore/statedata.go in mender 3.4.0).

// AuthRequest is the body of POST /authentication/auth_requests. The
// signature (X-MEN-Signature) covers the exact body bytes.
type AuthRequest struct {
	// IDData is the device identity, a JSON object encoded as a string.
	IDData      string `json:"id_data"`
	Pubkey      string `json:"pubkey"`
	TenantToken string `json:"tenant_token"`
}

// Limits of request fields.
const (
	MaxIDDataBytes  = 4096
	MaxArtifactName = 256
	MaxProvides     = 64
	maxProvideBytes = 1024
)

var errBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))
}

// ParseAuthRequest decodes and checks an auth request body: id_data a JSON
// object of at most MaxIDDataBytes, a pubkey present. The key itself is
// checked by menderkey.Parse.
func ParseAuthRequest(body []byte) (AuthRequest, error) {
	var a AuthRequest
	if err := json.Unmarshal(body, &a); err != nil {
		return a, badRequest("body is not an auth request: %v", err)
	}
	if a.IDData == "" || len(a.IDData) > MaxIDDataBytes {
		return a, badRequest("id_data must be 1 to %d bytes", MaxIDDataBytes)
	}
	var id map[string]any
	if err := json.Unmarshal([]byte(a.IDData), &id); err != nil || id == nil {
		return a, badRequest("id_data must be a JSON object")
	}
	if a.Pubkey == "" {
		return a, badRequest("pubkey is missing")
	}
	return a, nil
}

// Provides is what a device says it runs: artifact_name, device_type and
// any other artifact provides.
type Provides map[string]string

// NextV2 is the body of POST /v2/deployments/device/deployments/next.
type NextV2 struct {
	DeviceProvides   Provides `json:"device_provides"`
	UpdateControlMap bool     `json:"update_control_map"`
}

// ParseNext reads a deployments/next request of either version: v2 (POST,
// provides under device_provides), v1 POST (provides as the body) or v1
// GET (artifact_name and device_type in the query).
func ParseNext(v2 bool, method string, query url.Values, body []byte) (Provides, error) {
	var p Provides
	switch {
	case method == "GET":
		p = Provides{"artifact_name": query.Get("artifact_name"), "device_type": query.Get("device_type")}
	case v2:
		var n NextV2
		if err := json.Unmarshal(body, &n); err != nil {
			return nil, badRequest("body is not a v2 next-deployment request: %v", err)
		}
		p = n.DeviceProvides
	default:
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, badRequest("body is not a v1 next-deployment request: %v", err)
		}
	}
	if len(p) > MaxProvides {
		return nil, badRequest("at most %d provides", MaxProvides)
	}
	for k, v := range p {
		if len(k)+len(v) > maxProvideBytes || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, badRequest("provide %.40q is too long or not UTF-8", k)
		}
	}
	name := p["artifact_name"]
	if name == "" {
		return nil, badRequest("artifact_name is required")
	}
	if len(name) > MaxArtifactName {
		return nil, badRequest("artifact_name longer than %d bytes", MaxArtifactName)
	}
	if p["device_type"] == "" {
		return nil, badRequest("device_type is required")
	}
	return p, nil
}

// NextDeployment is the 200 answer of deployments/next; mender-client
// requires id, artifact_name, device_types_compatible and source.uri.
type NextDeployment struct {
	ID       string       `json:"id"`
	Artifact NextArtifact `json:"artifact"`
}

// NextArtifact describes the artifact to install.
type NextArtifact struct {
	Name        string   `json:"artifact_name"`
	DeviceTypes []string `json:"device_types_compatible"`
	Source      Source   `json:"source"`
}

// Source is where the artifact downloads from, until Expire (RFC 3339).
type Source struct {
	URI    string `json:"uri"`
	Expire string `json:"expire"`
}

// Deployment statuses mender-client reports.
const (
	StatusDownloading      = "downloading"
	StatusInstalling       = "installing"
	StatusRebooting        = "rebooting"
	StatusSuccess          = "success"
	StatusFailure          = "failure"
	StatusAlreadyInstalled = "already-installed"
	// Update control map pauses (mender-client 2.7+): the client waits.
	StatusPauseBeforeInstalling = "pause_before_installing"
	StatusPauseBeforeCommitting = "pause_before_committing"
	StatusPauseBeforeRebooting  = "pause_before_rebooting"
)

// StatusReport is the body of PUT …/deployments/{id}/status.
type StatusReport struct {
	Status   string `json:"status"`
	SubState string `json:"substate,omitempty"`
}

// ParseStatus reads a status report; an unknown status is refused.
func ParseStatus(body []byte) (StatusReport, error) {
	var s StatusReport
	if err := json.Unmarshal(body, &s); err != nil {
		return s, badRequest("body is not a status report: %v", err)
	}
	switch s.Status {
	case StatusDownloading, StatusInstalling, StatusRebooting, StatusSuccess, StatusFailure, StatusAlreadyInstalled,
		StatusPauseBeforeInstalling, StatusPauseBeforeCommitting, StatusPauseBeforeRebooting:
		return s, nil
	}
	return s, badRequest("unknown status %.40q", s.Status)
}

// LogMessage is one line of a deployment log.
type LogMessage struct {
	Timestamp string `json:"timestamp"`
	Level     string `json:"level"`
	Message   string `json:"message"`
}

// DeploymentLog is the body of PUT …/deployments/{id}/log.
type DeploymentLog struct {
	Messages []LogMessage `json:"messages"`
}

// ParseLog reads a deployment log.
func ParseLog(body []byte) (DeploymentLog, error) {
	var l DeploymentLog
	if err := json.Unmarshal(body, &l); err != nil {
		return l, badRequest("body is not a deployment log: %v", err)
	}
	if len(l.Messages) == 0 {
		return l, badRequest("the log has no messages")
	}
	return l, nil
}

// maxReason bounds a failure reason taken from a log (protocol v1's
// MaxReasonLen).
const maxReason = 512

// moduleStderr starts the lines mender-client logs, at info level, for
// what an update module or state script writes to standard error: the
// module's own account of a failure (system.cmdLogger in mender 3.4.0).
const moduleStderr = "Output (stderr) from command "

// FailureReason is what a rollout's failure log keeps of a deployment
// log: "mender: " and the last error-level messages and update module
// standard error lines (the last messages when there are none), newest
// last, printable and bounded.
func FailureReason(l DeploymentLog) string {
	var picked []string
	for _, m := range l.Messages {
		switch strings.ToLower(m.Level) {
		case "error", "fatal", "panic":
			picked = append(picked, m.Message)
		default:
			if strings.HasPrefix(m.Message, moduleStderr) {
				picked = append(picked, m.Message)
			}
		}
	}
	if len(picked) == 0 {
		picked = make([]string, 0, 3)
		for _, m := range l.Messages[max(0, len(l.Messages)-3):] {
			picked = append(picked, m.Message)
		}
	}
	// Newest last, keeping the tail when cut: the final error says most.
	s := strings.Join(picked, "; ")
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	s = string(out)
	const prefix = "mender: "
	if len(prefix)+len(s) > maxReason {
		cut := len(s) - (maxReason - len(prefix) - len("…"))
		s = "…" + strings.ToValidUTF8(s[cut:], "")
		for len(prefix)+len(s) > maxReason { // the cut may land mid-rune
			_, n := utf8.DecodeRuneInString(s[len("…"):])
			s = "…" + s[len("…")+n:]
		}
	}
	return prefix + s
}

// InventoryAttribute is one attribute of PUT/PATCH
// /inventory/device/attributes; values are strings or lists of them.
type InventoryAttribute struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// MaxInventoryAttributes bounds an inventory upload.
const MaxInventoryAttributes = 1024

// ParseInventory reads an inventory upload: each attribute's value as a
// string, or ok false for list and other values.
func ParseInventory(body []byte) (map[string]string, error) {
	var attrs []InventoryAttribute
	if err := json.Unmarshal(body, &attrs); err != nil {
		return nil, badRequest("body is not a list of inventory attributes: %v", err)
	}
	if len(attrs) > MaxInventoryAttributes {
		return nil, badRequest("at most %d inventory attributes", MaxInventoryAttributes)
	}
	out := make(map[string]string, len(attrs))
	for _, a := range attrs {
		if a.Name == "" {
			return nil, badRequest("an inventory attribute has no name")
		}
		var s string
		if json.Unmarshal(a.Value, &s) == nil {
			out[a.Name] = s
		}
	}
	return out, nil
}

// Kind is what a deployment of a device's record in a rollout installs.
type Kind string

// Deployment kinds.
const (
	KindInstall  Kind = "install"  // the rollout's release
	KindRollback Kind = "rollback" // the previous release, after an abort
)

// DeploymentID is the Mender deployment id of a rollout's install or
// rollback, derived rather than stored: the first 128 bits of SHA-256 of
// the rollout UID and the kind, in UUID form (as Mender's ids are).
func DeploymentID(rolloutUID string, kind Kind) string {
	h := sha256.Sum256([]byte("otaflow-mender-deployment/v1\x00" + rolloutUID + "\x00" + string(kind)))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
