package otaserver

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// What another device protocol's front (package otaserver/ddi) shares with
// the native device API, besides Decide, Report and ReportWith: the store,
// the per-device and per-address limits, the clock, logs and metrics. A
// front never keeps rules of its own.

// Store is the device store as handlers use it (timed into the metrics).
func (s *Server) Store() devicestore.Store { return s.store }

// Blobs is the encrypted blob store.
func (s *Server) Blobs() blobstore.Store { return s.cfg.Blobs }

// Catalog provides the current rollouts and releases.
func (s *Server) Catalog() Catalog { return s.cfg.Catalog }

// Now is the server's clock.
func (s *Server) Now() time.Time { return s.cfg.Now() }

// Log is the device API's logger.
func (s *Server) Log() logr.Logger { return s.cfg.Log }

// Metrics are the device API's metrics.
func (s *Server) Metrics() *Metrics { return s.cfg.Metrics }

// AllowDevice takes one request from the device's (or key's) rate limit;
// ok false says how long to wait.
func (s *Server) AllowDevice(key string) (wait time.Duration, ok bool) { return s.limits.allow(key) }

// AuthFailureBlocked reports whether the request's address presented too
// many unknown tokens lately (and how long it must wait).
func (s *Server) AuthFailureBlocked(r *http.Request) (wait time.Duration, blocked bool) {
	return s.enrollFails.blocked(sourceKey(r))
}

// AuthFailed counts an unknown token presented from the request's address.
func (s *Server) AuthFailed(r *http.Request) { s.enrollFails.allow(sourceKey(r)) }

// Instrument counts the route's requests by status in the device API's
// metrics and bounds request bodies to maxBody bytes.
func (s *Server) Instrument(route string, maxBody int64, next http.Handler) http.Handler {
	return s.instrumented(route, maxBody, next)
}

// StoreRetryAfter is what devices are told to wait while the device store
// is unavailable.
func StoreRetryAfter() time.Duration { return storeRetryAfter }

// ServePlaintext streams a release's image as plaintext, decrypted chunk
// by chunk from the encrypted blob and never written to disk, with
// Content-Length, the ETag given, Range (206) and 416 for resumed
// downloads (http.ServeContent). An error is returned before anything is
// written (the front answers it); once streaming, a failure ends the
// response early and the client's own checks refuse what it got.
func (s *Server) ServePlaintext(w http.ResponseWriter, r *http.Request, rel *catalog.Release, name, etag string) error {
	blob, err := s.cfg.Blobs.Open(r.Context(), rel.Artifact.EncryptedSHA256)
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	defer func() { _ = blob.Close() }()
	pr, err := envelope.NewPlaintextReader(blob, blob.Info().Size, rel.ContentKey)
	if err != nil {
		return fmt.Errorf("open plaintext: %w", err)
	}
	if t := s.cfg.BlobWriteTimeout; t > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(t))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if etag != "" {
		w.Header().Set("ETag", `"`+etag+`"`)
	}
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, name, time.Time{}, pr)
	return nil
}

// RecordRelease is the release a device's record in a rollout installs
// now: the rollout's release, or after an abort with rollback the previous
// release it records; nil when the catalog no longer has it (or another
// release took its place).
func (s *Server) RecordRelease(d devicestore.Device, rec *devicestore.Record) *catalog.Release {
	snap := s.cfg.Catalog.Snapshot()
	ro := snap.RolloutByUID(rec.RolloutUID)
	if ro == nil {
		return nil
	}
	if rec.RollbackRelease != "" {
		rel := snap.PreviousRelease(ro.Namespace, rec.PreviousVersion, d.Type)
		if rel == nil || rel.Key() != rec.RollbackRelease {
			return nil
		}
		return rel
	}
	if ro.Release == nil || ro.Release.Key() != rec.Release {
		return nil
	}
	return ro.Release
}
