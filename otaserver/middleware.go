package otaserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
)

type ctxKey struct{}

// deviceFrom returns the authenticated device of the request.
func deviceFrom(ctx context.Context) devicestore.Device {
	d, _ := ctx.Value(ctxKey{}).(devicestore.Device)
	return d
}

// tokenSize is the size of a device bearer token before base64url.
const tokenSize = 32

// bearerToken extracts a well-formed device token from the request.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != tokenSize {
		return "", false
	}
	return tok, true
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// authenticated resolves the bearer token to a device (only token hashes
// are stored, so the lookup is by hash) and, when limited, applies the
// device's rate limit.
func (s *Server) authenticated(limited bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow"`)
			writeError(w, http.StatusUnauthorized, protov1.CodeUnauthenticated, "missing or malformed bearer token")
			return
		}
		d, err := s.store.DeviceByToken(r.Context(), hashToken(tok))
		if errors.Is(err, devicestore.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, protov1.CodeUnauthenticated, "unknown or revoked token; enroll again")
			return
		}
		if err != nil {
			s.internal(w, r, "authenticate", err)
			return
		}
		if limited {
			if wait, ok := s.limits.allow(d.ID); !ok {
				writeRetry(w, wait, protov1.CodeRateLimited, "too many requests from this device")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, d)))
	})
}

// allow refuses other methods with a JSON 405.
func allow(next http.Handler, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeError(w, http.StatusMethodNotAllowed, protov1.CodeMethod, r.Method+" is not allowed here")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status and counts body bytes.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the connection's sendfile path for blob bodies
// (http.ServeContent copies an *os.File-backed blob into the writer);
// without it every download is copied through a user-space buffer.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	rf, ok := s.ResponseWriter.(io.ReaderFrom)
	if !ok {
		rf = writerOnly{s.ResponseWriter}
	}
	n, err := rf.ReadFrom(src)
	s.bytes += n
	return n, err
}

// writerOnly copies with io.Copy's buffer when the writer cannot ReadFrom.
type writerOnly struct{ io.Writer }

func (w writerOnly) ReadFrom(src io.Reader) (int64, error) { return io.Copy(w.Writer, src) }

// Unwrap lets http.ResponseController reach the connection (write deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts requests by route and status, and bounds request bodies.
func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return s.instrumented(route, MaxBodyBytes, next)
}

// instrumented counts the route's requests by status (and blob bytes),
// times them unless the route is a download, and bounds request bodies to
// maxBody bytes.
func (s *Server) instrumented(route string, maxBody int64, next http.Handler) http.Handler {
	timed := !downloadRoutes[route]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		code := strconv.Itoa(rec.status)
		s.cfg.Metrics.Requests.WithLabelValues(route, code).Inc()
		if timed {
			s.cfg.Metrics.RequestTime.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
		}
		if route == "blob" {
			s.cfg.Metrics.BlobBytes.Add(float64(rec.bytes))
		}
	})
}

// internal logs err (never tokens or keys) and answers 500.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, protov1.CodeUnavailable, "request timed out; retry later")
		return
	}
	if errors.Is(err, devicestore.ErrDeviceDeleted) {
		// Decommissioned while this request was in flight: as if its
		// token had failed a moment earlier.
		w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, protov1.CodeUnauthenticated, "unknown or revoked token; enroll again")
		return
	}
	if errors.Is(err, devicestore.ErrUnavailable) {
		// The database is down or restarting: nothing was stored, and the
		// same request will work later. Every replica sees the same, so
		// the device is told when to come back rather than retrying now.
		s.cfg.Log.V(1).Info("device store unavailable", "op", what, "err", err.Error())
		w.Header().Set("Retry-After", retrySeconds(storeRetryAfter))
		writeError(w, http.StatusServiceUnavailable, protov1.CodeUnavailable, "the device store is unavailable; retry later")
		return
	}
	s.cfg.Log.Error(err, "device API failure", "op", what, "path", r.URL.Path, "device", deviceFrom(r.Context()).ID)
	writeError(w, http.StatusInternalServerError, protov1.CodeInternal, "internal error; retry later")
}

// storeRetryAfter is what devices are told to wait while the device store
// is unavailable: long enough to let a database restart or fail over, short
// enough that a rollout barely notices.
const storeRetryAfter = 15 * time.Second
