package otaserver

import (
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
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

// BlobWriteTimeout is the write deadline of a download.
func (s *Server) BlobWriteTimeout() time.Duration { return s.cfg.BlobWriteTimeout }

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
