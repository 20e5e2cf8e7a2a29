package ddi

import (
	"net/http"

	"github.com/otaflow/otaflow/internal/rollout"
)

// serveArtifact streams the action's update file as plaintext, decrypted
// chunk by chunk from the encrypted blob and never written to disk, with
// Content-Length, ETag (the SHA-1, as hawkBit), Range (206) and 416 for
// resumed downloads. Only a device with the action open may download it.
func (h *Handler) serveArtifact(w http.ResponseWriter, r *http.Request, p path) {
	d, _, ok := h.device(w, r, p, false, false)
	if !ok {
		return
	}
	rec, kind, _, rel, ok := h.action(w, r, d, p.rest[1])
	if !ok {
		return
	}
	open := rec.State.InProgress()
	if kind == KindRollback {
		open = rec.State != rollout.StateRolledBack && rec.State != rollout.StateRollbackFailed && rec.State != rollout.StateSkipped
	}
	if !open || rel == nil {
		writeErr(w, http.StatusForbidden, "ddi.forbidden", "the action is not open for this controller")
		return
	}
	if _, ok := h.cfg.Deliverable(rel); !ok || p.rest[3] != rel.Artifact.Filename {
		writeErr(w, http.StatusNotFound, "ddi.notFound", "no such artifact in this action")
		return
	}
	// An authentication failure mid-stream ends the response early, and
	// the client's hash check refuses what it got.
	if err := h.core.ServePlaintext(w, r, rel, rel.Artifact.Filename, rel.Artifact.PlainSHA1); err != nil {
		h.fail(w, r, "open artifact", err)
	}
}
