package mender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// RunningVersion is the otaflow version of what a mender-client reports
// running: the version of the usable Mender release of the device's
// namespace whose artifact has that name and fits the device's type; an
// artifact name that is itself a semantic version, as it is; any other
// name (a factory image, or "<name>_INCONSISTENT" after a failed update
// without rollback) UnreleasedVersion of it, which the rules rank below
// every release, so that the device is offered one as Mender would.
func RunningVersion(snap *catalog.Snapshot, d devicestore.Device, artifactName string) string {
	if v, ok := snap.MenderVersion(d.Namespace, artifactName, d.Type); ok {
		return v
	}
	if protov1.ValidateVersion(artifactName) == nil && rollout.ParseVersion(artifactName).Valid() {
		return artifactName
	}
	return UnreleasedVersion(artifactName)
}

// UnreleasedPrefix starts the version of a device running an artifact no
// release knows: 0.0.0-unreleased, below every release.
const UnreleasedPrefix = "0.0.0-unreleased"

// UnreleasedVersion is the semantic version of an artifact name no
// release has: 0.0.0-unreleased, with the name as build metadata (which
// precedence ignores) so that it still shows: "sensor-2.0.0" →
// "0.0.0-unreleased+sensor-2.0.0". Characters metadata cannot hold become
// '-', and the whole is at most protov1.MaxVersionLen bytes.
func UnreleasedVersion(artifactName string) string {
	room := protov1.MaxVersionLen - len(UnreleasedPrefix) - 1
	b := make([]byte, 0, min(len(artifactName), room))
	for i := 0; i < len(artifactName) && len(b) < room; i++ {
		c := artifactName[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case c == '.' && len(b) > 0 && b[len(b)-1] != '.' && i+1 < len(artifactName) && len(b)+1 < room:
			// A dot separates identifiers, none of which may be empty.
		default:
			c = '-'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return UnreleasedPrefix
	}
	return UnreleasedPrefix + "+" + string(b)
}

// serveNext answers deployments/next (v2 POST, v1 POST, v1 GET): 204, or
// the deployment the rules offer, resend or roll back to, with a
// short-lived download link.
func (h *Handler) serveNext(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, ok := h.device(w, r)
		if !ok {
			return
		}
		var body []byte
		if r.Method != http.MethodGet {
			if body, ok = readBody(w, r); !ok {
				return
			}
		}
		p, err := ParseNext(v2, r.Method, r.URL.Query(), body)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		ctx := r.Context()
		version := RunningVersion(h.core.Catalog().Snapshot(), d, p["artifact_name"])
		dec, err := h.core.Decide(ctx, d, otaserver.DeviceCheckIn{
			Version: version, SecurityFloor: d.SecurityFloor, Boot: boot, Deliverable: Deliverable(p["device_type"]),
		})
		if err != nil {
			h.fail(w, r, "check-in", err)
			return
		}
		kind := KindInstall
		switch dec.Action {
		case rollout.Offer, rollout.Resend:
		case rollout.Rollback:
			kind = KindRollback
		case rollout.Commit:
			// mender-client keeps no security floor: the server keeps it
			// for the device, so no release below it is offered again.
			if rel := dec.Release; rel != nil && rel.SecurityVersion > d.SecurityFloor {
				if err := h.store.SetRunning(ctx, d.ID, version, rel.SecurityVersion, h.core.Now()); err != nil {
					h.fail(w, r, "record security floor", err)
					return
				}
			}
			h.answerNothing(w, "mender-commit", 0)
			return
		default:
			// Nothing, or a cancel: Mender has no cancel in next; the
			// client learns of an abort from its next status report (409).
			h.answerNothing(w, "mender-none", dec.Retry)
			return
		}
		rel := dec.Release
		if reason, ok := Deliverable(p["device_type"])(rel); !ok {
			// A rollback's previous release (or a resend after the device
			// reported another type) may be no artifact the client can
			// install: no deployment then.
			h.log.Info("release not deliverable to mender-client", "device", d.ID, "release", rel.Key(), "kind", kind, "reason", reason)
			h.answerNothing(w, "mender-undeliverable", 0)
			return
		}
		id := DeploymentID(dec.Rollout.UID, kind)
		now := h.core.Now()
		expires := now.Add(h.cfg.LinkTTL)
		link, err := h.cfg.Keys.IssueLink(Link{DeviceID: d.ID, Deployment: id, Blob: rel.Artifact.EncryptedSHA256, Expires: expires}, now)
		if err != nil {
			h.fail(w, r, "issue download link", err)
			return
		}
		h.core.Metrics().CheckIns.WithLabelValues("mender-" + string(kind)).Inc()
		writeJSON(w, NextDeployment{ID: id, Artifact: NextArtifact{
			Name: rel.Artifact.Mender.Name, DeviceTypes: rel.Artifact.Mender.DeviceTypes,
			Source: Source{URI: h.base(r) + "/api/devices/v1/deployments/device/artifacts/" + link, Expire: expires.UTC().Format(time.RFC3339)},
		}})
	}
}

func (h *Handler) answerNothing(w http.ResponseWriter, label string, retry time.Duration) {
	h.core.Metrics().CheckIns.WithLabelValues(label).Inc()
	if retry > 0 {
		// An offer rate limit: mender-client polls at its own interval,
		// so this is a hint only.
		w.Header().Set("Retry-After", retrySeconds(retry))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// failurePending is the reason of a failure whose deployment log has not
// arrived yet (mender-client sends the log right after the status); the
// log's last errors replace it, and only then is the failure logged in
// the rollout's failure log.
const failurePending = "mender: the client reported a failure; its deployment log has not arrived"

// serveStatus applies a status report. An aborted rollout answers 409, on
// which mender-client stops the deployment; everything else is 204 once
// stored or when the rules refuse it (a duplicate, a report after a final
// state), since the client retries a refused report and the record is
// right as it is.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	d, st, ok := parsed(h, w, r, ParseStatus)
	if !ok {
		return
	}
	rec, kind, id, ok := h.deploymentOf(w, r, d)
	if !ok {
		return
	}
	ctx := r.Context()
	var err error
	if kind == KindInstall && rec.State.Cancelable() {
		if rec, err = h.cancelIfAborted(ctx, d, rec); err != nil {
			h.fail(w, r, "check-in", err)
			return
		}
	}
	done := st.Status == StatusSuccess || st.Status == StatusAlreadyInstalled
	if kind == KindInstall && rec.State == rollout.StateCanceled {
		h.aborted(w, r, d, rec, done)
		return
	}
	rid := "mender." + id + "."
	var err2 error
	running := ""
	switch {
	case st.Status == StatusPauseBeforeInstalling, st.Status == StatusPauseBeforeCommitting, st.Status == StatusPauseBeforeRebooting:
	case kind == KindRollback && done:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+"rolledback", rollout.StateRolledBack, "")
		running = rec.PreviousVersion
	case kind == KindRollback && st.Status == StatusFailure:
		_, err2 = h.reportFailure(r, d, rec, rid)
	case kind == KindRollback:
		// A rollback listens to its outcome only.
	case done:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+"succeeded", rollout.StateSucceeded, "")
		running = rec.Version
	case st.Status == StatusFailure:
		_, err2 = h.reportFailure(r, d, rec, rid)
	default:
		state := map[string]rollout.State{
			StatusDownloading: rollout.StateDownloading,
			StatusInstalling:  rollout.StateInstalling,
			StatusRebooting:   rollout.StateInstalled,
		}[st.Status]
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+st.Status, state, "")
	}
	if err2 != nil && !otaserver.ReportSettled(err2) {
		h.fail(w, r, "store status", err2)
		return
	}
	if err2 == nil {
		h.core.Metrics().Reports.WithLabelValues("mender-" + st.Status).Inc()
	}
	if running != "" {
		// The client committed the deployment: it runs that release now,
		// which the rules record as success.
		if _, err := h.core.Decide(ctx, d, otaserver.DeviceCheckIn{Version: running, SecurityFloor: d.SecurityFloor, Boot: boot}); err != nil {
			h.fail(w, r, "record outcome", err)
			return
		}
	}
	h.log.V(1).Info("status", "device", d.ID, "deployment", id, "status", st.Status, "err", errString(err2))
	w.WriteHeader(http.StatusNoContent)
}

// cancelIfAborted lets the rules cancel a deployment whose rollout was
// aborted: mender-client asks for no deployment while it runs one, so it
// learns of the abort only from the answer to a status report. It is a
// check-in that considers the deployment's rollout alone; it returns the
// record as it is after it.
func (h *Handler) cancelIfAborted(ctx context.Context, d devicestore.Device, rec *devicestore.Record) (*devicestore.Record, error) {
	ro := h.core.Catalog().Snapshot().RolloutByUID(rec.RolloutUID)
	if ro == nil || ro.Release == nil || !ro.View.Aborted() {
		return rec, nil
	}
	only := ro.Release.Key()
	dec, err := h.core.Decide(ctx, d, otaserver.DeviceCheckIn{
		Version: d.Version, SecurityFloor: d.SecurityFloor, Boot: boot,
		Deliverable: func(rel *catalog.Release) (string, bool) { return "", rel.Key() == only },
	})
	if err != nil {
		return nil, err
	}
	for _, dr := range dec.Records {
		if dr.Rollout.UID == rec.RolloutUID && dr.Record != nil {
			return dr.Record, nil
		}
	}
	return rec, nil
}

// reportFailure records a failure pending its deployment log: not yet in
// the failure log, which gets the log's errors (serveLog).
func (h *Handler) reportFailure(r *http.Request, d devicestore.Device, rec *devicestore.Record, rid string) (devicestore.Record, error) {
	return h.core.ReportWith(r.Context(), d.ID, rec.RolloutUID, rid+"failed", func(cur rollout.Record) (rollout.Record, bool, error) {
		next, _, err := rollout.ApplyReport(cur, rollout.StateFailed, failurePending)
		return next, false, err
	})
}

// aborted answers a status report for an aborted deployment with 409 and
// records that the device was told (its cancel acknowledged). A device
// that reports success already runs the release: the rules record that
// too.
func (h *Handler) aborted(w http.ResponseWriter, r *http.Request, d devicestore.Device, rec *devicestore.Record, done bool) {
	ctx := r.Context()
	if rec.Reason == rollout.ReasonAborted {
		_, err := h.core.ReportWith(ctx, d.ID, rec.RolloutUID, "mender."+DeploymentID(rec.RolloutUID, KindInstall)+".cancel-ack", func(cur rollout.Record) (rollout.Record, bool, error) {
			if cur.State != rollout.StateCanceled || cur.Reason != rollout.ReasonAborted {
				return cur, false, fmt.Errorf("%w: no cancel to acknowledge", rollout.ErrTransition)
			}
			cur.Reason = rollout.ReasonCancelAcknowledged
			return cur, false, nil
		})
		if err != nil && !otaserver.ReportSettled(err) {
			h.fail(w, r, "acknowledge abort", err)
			return
		}
	}
	if done {
		if _, err := h.core.Decide(ctx, d, otaserver.DeviceCheckIn{Version: rec.Version, SecurityFloor: d.SecurityFloor, Boot: boot}); err != nil {
			h.fail(w, r, "record outcome", err)
			return
		}
	}
	h.core.Metrics().Reports.WithLabelValues("mender-aborted").Inc()
	writeErr(w, http.StatusConflict, "the deployment was aborted")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serveLog takes a deployment log: for a failure still waiting for it,
// its last errors become the failure's reason, logged in the rollout's
// failure log. The whole log goes to the server's log.
func (h *Handler) serveLog(w http.ResponseWriter, r *http.Request) {
	d, l, ok := parsed(h, w, r, ParseLog)
	if !ok {
		return
	}
	rec, _, id, ok := h.deploymentOf(w, r, d)
	if !ok {
		return
	}
	reason := FailureReason(l)
	_, err := h.core.ReportWith(r.Context(), d.ID, rec.RolloutUID, "mender."+id+".log", func(cur rollout.Record) (rollout.Record, bool, error) {
		if cur.Reason != failurePending {
			return cur, false, fmt.Errorf("%w: no failure waits for a log", rollout.ErrTransition)
		}
		cur.Reason = reason
		return cur, true, nil
	})
	if err != nil && !otaserver.ReportSettled(err) {
		h.fail(w, r, "store deployment log", err)
		return
	}
	h.log.Info("deployment log", "device", d.ID, "deployment", id, "lines", len(l.Messages), "reason", reason)
	w.WriteHeader(http.StatusNoContent)
}

// serveDownload streams the artifact behind a download link: plaintext
// from the encrypted blob, with Content-Length and Range (mender-client
// resumes an interrupted download with Range). The link is the only
// credential (mender-client sends none on downloads); it is valid while
// it has not expired and its deployment is open.
func (h *Handler) serveDownload(w http.ResponseWriter, r *http.Request) {
	l, err := h.cfg.Keys.VerifyLink(r.PathValue("token"), h.core.Now)
	if err != nil {
		h.log.V(1).Info("download link refused", "err", err.Error())
		writeErr(w, http.StatusForbidden, "invalid or expired download link")
		return
	}
	ctx := r.Context()
	d, err := h.store.Device(ctx, l.DeviceID)
	if errors.Is(err, devicestore.ErrNotFound) {
		writeErr(w, http.StatusForbidden, "the link's device is not registered")
		return
	}
	if err != nil {
		h.fail(w, r, "read device", err)
		return
	}
	rec, kind, err := h.deployment(ctx, d.ID, l.Deployment)
	if err != nil && !errors.Is(err, devicestore.ErrNotFound) {
		h.fail(w, r, "read records", err)
		return
	}
	var rel *catalog.Release
	if rec != nil && open(rec, kind) {
		rel = h.core.RecordRelease(d, rec)
	}
	if rel == nil || rel.Artifact.EncryptedSHA256 != l.Blob {
		writeErr(w, http.StatusForbidden, "the link's deployment is not open")
		return
	}
	name := rel.Artifact.Filename
	if name == "" {
		name = rel.Name + ".mender"
	}
	if err := h.core.ServePlaintext(w, r, rel, name, rel.Artifact.PlainSHA256); err != nil {
		h.fail(w, r, "open artifact", err)
	}
}

// open reports whether a record's deployment may still be downloaded.
func open(rec *devicestore.Record, kind Kind) bool {
	if kind == KindRollback {
		return rec.State != rollout.StateRolledBack && rec.State != rollout.StateRollbackFailed && rec.State != rollout.StateSkipped
	}
	return rec.State.InProgress()
}
