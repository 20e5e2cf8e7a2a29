package ddi

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Kind is what an action of a device's record in a rollout does.
type Kind string

// Action kinds.
const (
	KindInstall  Kind = "install"  // the rollout's release
	KindRollback Kind = "rollback" // the previous release, after an abort
)

// ActionID is the DDI action id of a rollout's install or rollback action.
// It is derived, not stored: SHA-256 of the rollout UID and the kind, cut to
// a positive int32 (SWUpdate reads ids as int). Ids only need to tell a
// device's own actions apart, and a device has a few records; a clash
// between two of them is refused when rendered (see actionOf), never
// served as the wrong action.
func ActionID(rolloutUID string, kind Kind) uint32 {
	h := sha256.Sum256([]byte("otaflow-ddi-action/v1\x00" + rolloutUID + "\x00" + string(kind)))
	id := binary.BigEndian.Uint32(h[:4]) & 0x7fffffff
	if id == 0 {
		id = 1
	}
	return id
}

func idString(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// recordKind is the action a record stands for now.
func recordKind(r *devicestore.Record) Kind {
	if r.RollbackRelease != "" {
		return KindRollback
	}
	return KindInstall
}

// actionOf finds the device's record whose current action has the id; ok
// is false when none has, or when two records share it (a hash clash: the
// device is offered neither rather than a wrong one).
func actionOf(recs []devicestore.Record, id uint32) (rec *devicestore.Record, kind Kind, ok bool) {
	for i := range recs {
		k := recordKind(&recs[i])
		if ActionID(recs[i].RolloutUID, k) != id {
			continue
		}
		if rec != nil {
			return nil, "", false
		}
		rec, kind = &recs[i], k
	}
	return rec, kind, rec != nil
}

// Effect is what a feedback does to the device's record.
type Effect int

// Effects of a feedback.
const (
	// Ignore acknowledges the feedback and changes nothing.
	Ignore Effect = iota
	// ReportState reports State (with Reason) by the rollout rules.
	ReportState
	// Succeed reports success: the device runs the action's release.
	Succeed
	// AckCancel records that the device stopped after a cancel.
	AckCancel
	// RejectCancel puts a canceled record back to installing: the device
	// could not stop (rollout.CancelRejected).
	RejectCancel
)

// Mapping is a feedback's effect.
type Mapping struct {
	Effect Effect
	State  rollout.State
	Reason string
}

// maxReason bounds the reason taken from a client's details.
const maxReason = 512

// MapDeployment maps a deploymentBase feedback onto the rollout states
// (docs/hawkbit-ddi.md has the table). proceeding only says the client
// works on the update: SWUpdate sends it before its download, and both
// clients can still stop when told to cancel, so it is downloading; a
// client that can no longer stop rejects the cancel (MapCancel).
func MapDeployment(f Feedback) Mapping {
	switch f.Status.Execution {
	case ExecClosed:
		if f.Status.Result.Finished == ResultFailure {
			return Mapping{Effect: ReportState, State: rollout.StateFailed, Reason: reason(f, "the client reported a failure")}
		}
		return Mapping{Effect: Succeed}
	case ExecCanceled:
		return Mapping{Effect: ReportState, State: rollout.StateFailed, Reason: reason(f, "the client canceled the update")}
	case ExecDownload:
		return Mapping{Effect: ReportState, State: rollout.StateDownloading}
	case ExecDownloaded:
		return Mapping{Effect: ReportState, State: rollout.StateDownloaded}
	case ExecProceeding, ExecScheduled, ExecResumed:
		return Mapping{Effect: ReportState, State: rollout.StateDownloading}
	}
	// rejected: hawkBit keeps the action open (a warning); so does otaflow,
	// and the device's timeout still applies.
	return Mapping{Effect: Ignore}
}

// MapCancel maps a cancelAction feedback.
func MapCancel(f Feedback) Mapping {
	switch f.Status.Execution {
	case ExecClosed:
		if f.Status.Result.Finished == ResultFailure {
			return Mapping{Effect: RejectCancel}
		}
		return Mapping{Effect: AckCancel}
	case ExecCanceled:
		return Mapping{Effect: AckCancel}
	case ExecRejected:
		return Mapping{Effect: RejectCancel}
	}
	return Mapping{Effect: Ignore}
}

// reason is "ddi: " and the client's details, printable and bounded.
func reason(f Feedback, fallback string) string {
	var b []byte
	for _, d := range f.Status.Details {
		if len(b) > 0 {
			b = append(b, "; "...)
		}
		b = append(b, d...)
	}
	s := string(b)
	if s == "" {
		s = fallback
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	s = "ddi: " + string(out)
	if len(s) > maxReason {
		// Cut on a rune boundary: reasons land in status as UTF-8.
		s = strings.ToValidUTF8(s[:maxReason], "")
	}
	return s
}
