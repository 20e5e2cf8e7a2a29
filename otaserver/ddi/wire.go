package ddi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The DDI resources the two clients use, as hawkBit renders them
// (hawkbit-ddi-api DdiControllerBase, DdiDeploymentBase, DdiCancel). Ids
// are decimal strings: rauc-hawkbit-updater reads them as JSON strings,
// SWUpdate converts them with json_object_get_int (so they fit an int32).

// Link is a HAL link.
type Link struct {
	Href string `json:"href"`
}

// Polling is config.polling.
type Polling struct {
	// Sleep is HH:MM:SS (SWUpdate parses it with strptime("%H:%M:%S")).
	Sleep string `json:"sleep"`
}

// RootConfig is the base resource's config.
type RootConfig struct {
	Polling Polling `json:"polling"`
}

// Root is the controller base resource (GET /{tenant}/controller/v1/{id}).
type Root struct {
	Config RootConfig      `json:"config"`
	Links  map[string]Link `json:"_links"`
}

// Hashes of an artifact; sha1 is mandatory for both clients.
type Hashes struct {
	SHA1   string `json:"sha1"`
	MD5    string `json:"md5"`
	SHA256 string `json:"sha256"`
}

// Artifact is one file of a chunk.
type Artifact struct {
	Filename string          `json:"filename"`
	Hashes   Hashes          `json:"hashes"`
	Size     int64           `json:"size"`
	Links    map[string]Link `json:"_links"`
}

// Chunk is a software module.
type Chunk struct {
	Part      string     `json:"part"`
	Version   string     `json:"version"`
	Name      string     `json:"name"`
	Artifacts []Artifact `json:"artifacts"`
}

// Deployment says what to do: download and update are "attempt" (never
// "skip": SWUpdate reports a skipped update as closed/success).
type Deployment struct {
	Download string  `json:"download"`
	Update   string  `json:"update"`
	Chunks   []Chunk `json:"chunks"`
}

// DeploymentBase is GET …/deploymentBase/{actionId}.
type DeploymentBase struct {
	ID         string     `json:"id"`
	Deployment Deployment `json:"deployment"`
}

// CancelAction is GET …/cancelAction/{actionId}.
type CancelAction struct {
	ID           string `json:"id"`
	CancelAction struct {
		StopID string `json:"stopId"`
	} `json:"cancelAction"`
}

// Error is hawkBit's error body.
type Error struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// Feedback executions and results (hawkBit DdiStatus, DdiResult).
const (
	ExecClosed     = "closed"
	ExecProceeding = "proceeding"
	ExecCanceled   = "canceled"
	ExecScheduled  = "scheduled"
	ExecRejected   = "rejected"
	ExecResumed    = "resumed"
	ExecDownloaded = "downloaded"
	ExecDownload   = "download"

	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultNone    = "none"
)

// Feedback is an action feedback as the clients send it. Unknown fields
// are ignored, as hawkBit does; the clients' own "id" (a number from
// SWUpdate, a string from rauc-hawkbit-updater) and "time" (not ISO 8601)
// are not read: the action is the one in the path.
type Feedback struct {
	Status struct {
		Execution string `json:"execution"`
		Result    struct {
			Finished string `json:"finished"`
		} `json:"result"`
		Code    *int     `json:"code,omitempty"`
		Details []string `json:"details"`
	} `json:"status"`
}

// ConfigData is a configData PUT: attributes of the device.
type ConfigData struct {
	Data map[string]string `json:"data"`
	// Mode is merge (default), replace or remove.
	Mode string `json:"mode"`
}

var (
	execs   = map[string]bool{ExecClosed: true, ExecProceeding: true, ExecCanceled: true, ExecScheduled: true, ExecRejected: true, ExecResumed: true, ExecDownloaded: true, ExecDownload: true}
	results = map[string]bool{ResultSuccess: true, ResultFailure: true, ResultNone: true}
)

// sanitize blanks control characters: SWUpdate builds its JSON with
// printf and escapes only quotes and newlines, so a tab from an install
// log would otherwise make a feedback body invalid and the client would
// retry it forever.
func sanitize(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' {
			if out == nil {
				out = bytes.Clone(b)
			}
			out[i] = ' '
		}
	}
	if out == nil {
		return b
	}
	return out
}

// ParseFeedback decodes and checks a feedback body.
func ParseFeedback(b []byte) (Feedback, error) {
	var f Feedback
	if err := json.Unmarshal(sanitize(b), &f); err != nil {
		return f, fmt.Errorf("feedback is not valid JSON: %w", err)
	}
	if !execs[f.Status.Execution] {
		return f, fmt.Errorf("status.execution %q is not one of closed, proceeding, canceled, scheduled, rejected, resumed, downloaded, download", f.Status.Execution)
	}
	if f.Status.Result.Finished == "" {
		f.Status.Result.Finished = ResultNone
	}
	if !results[f.Status.Result.Finished] {
		return f, fmt.Errorf("status.result.finished %q is not one of success, failure, none", f.Status.Result.Finished)
	}
	return f, nil
}

// ParseConfigData decodes and checks a configData body.
func ParseConfigData(b []byte) (ConfigData, error) {
	var c ConfigData
	if err := json.Unmarshal(sanitize(b), &c); err != nil {
		return c, fmt.Errorf("configData is not valid JSON: %w", err)
	}
	switch c.Mode {
	case "":
		c.Mode = "merge"
	case "merge", "replace", "remove":
	default:
		return c, fmt.Errorf("mode %q is not one of merge, replace, remove", c.Mode)
	}
	return c, nil
}

// maxSleep is the longest sleep SWUpdate can parse (%H is at most 23).
const maxSleep = 23*time.Hour + 59*time.Minute + 59*time.Second

// FormatSleep renders a polling interval as HH:MM:SS, at least one second
// (SWUpdate reads 0 as its default, 45 s) and at most 23:59:59.
func FormatSleep(d time.Duration) string {
	d = min(max(d, time.Second), maxSleep)
	s := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// errActionID refuses an action id that is not one this server renders.
var errActionID = errors.New("action id is not a positive decimal int32")

// parseActionID reads an action id of a path.
func parseActionID(s string) (uint32, error) {
	if s == "" || len(s) > 10 || strings.TrimLeft(s, "0123456789") != "" || s[0] == '0' {
		return 0, errActionID
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || n == 0 {
		return 0, errActionID
	}
	return uint32(n), nil
}
