package otaserver

import (
	"errors"
	"net/http"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
)

// blob serves GET/HEAD /v1/blobs/{digest} to devices holding an assignment
// to it. Range, If-Range and If-None-Match are handled by
// http.ServeContent against the strong ETag "<digest>"; the content never
// changes, so resumed downloads are always consistent. With
// BlobRedirectTTL set, a GET is redirected to the object store instead.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := deviceFrom(ctx)
	digest := r.PathValue("digest")
	if !blobstore.ValidDigest(digest) {
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, "blob name must be 64 lowercase hex characters")
		return
	}
	// A wrapped key exists exactly when the device was assigned the blob.
	if !s.grants.has(d.ID, digest) {
		if _, err := s.store.WrappedKey(ctx, d.ID, digest); err != nil {
			if errors.Is(err, devicestore.ErrNotFound) {
				writeError(w, http.StatusForbidden, protov1.CodeNotAssigned, "this device holds no assignment to the blob")
				return
			}
			s.internal(w, r, "check assignment", err)
			return
		}
		s.grants.add(d.ID, digest)
	}
	if s.presign != nil && r.Method == http.MethodGet {
		s.redirectBlob(w, r, digest)
		return
	}
	b, err := s.cfg.Blobs.Open(ctx, digest)
	if errors.Is(err, blobstore.ErrNotFound) {
		writeError(w, http.StatusNotFound, protov1.CodeNotFound, "blob not found")
		return
	}
	if err != nil {
		s.internal(w, r, "open blob", err)
		return
	}
	defer b.Close()
	// Large images on slow links outlive the server-wide write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.BlobWriteTimeout))
	h := w.Header()
	h.Set("ETag", `"`+digest+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", b.Info().ModTime, b)
}

// redirectBlob sends an authorized device to a short-lived presigned URL of
// the object store (a CDN may sit in front of it), so the bytes do not pass
// through the OTA server. The device repeats the request, Range and If-Range
// included, at the object store; a resumed download asks the OTA server
// again and gets a fresh URL, so the TTL only needs to cover one request.
// The blob is not looked up first: it exists whenever a device holds an
// assignment to it. HEAD is answered here, as the URL is signed for GET.
func (s *Server) redirectBlob(w http.ResponseWriter, r *http.Request, digest string) {
	u, err := s.presign.PresignGet(r.Context(), digest, s.cfg.BlobRedirectTTL)
	if err != nil {
		s.internal(w, r, "presign blob", err)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Location", u.String())
	w.WriteHeader(http.StatusTemporaryRedirect)
}
