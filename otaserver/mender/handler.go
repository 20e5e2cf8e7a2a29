package mender

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// APIPrefix starts every path of the Mender device API.
const APIPrefix = "/api/devices/"

// Paths served (mender-client builds them from ServerURL).
const (
	pathAuth      = "/api/devices/v1/authentication/auth_requests"
	pathNextV2    = "/api/devices/v2/deployments/device/deployments/next"
	pathNextV1    = "/api/devices/v1/deployments/device/deployments/next"
	pathDeploy    = "/api/devices/v1/deployments/device/deployments/{id}/"
	pathInventory = "/api/devices/v1/inventory/device/attributes"
	pathDownload  = "/api/devices/v1/deployments/device/artifacts/{token}"
)

// MaxBodyBytes bounds request bodies: a deployment log of a failed update
// (mender-client keeps the last 10000 lines; 1 MiB holds a long tail of
// them), inventories of a few hundred attributes.
const MaxBodyBytes = 1 << 20

// KEMPrefix starts the device-store "KEM" of Mender devices, followed by
// the key kind: they have no otaflow key-encapsulation key, and the native
// API refuses them.
const KEMPrefix = "mender/"

// boot is the constant boot of Mender check-ins: the API says nothing of
// boots, so a revert is never inferred from a version alone.
const boot = "mender"

// Config wires a Handler.
type Config struct {
	Core *otaserver.Server
	Auth Authenticator
	Keys *TokenKeys
	// ExternalURL is the base of download links (https://ota.example.com);
	// empty derives it from each request's scheme and Host.
	ExternalURL string
	// TokenTTL is how long a device token is valid (default 1h); the
	// client authenticates again when it expires.
	TokenTTL time.Duration
	// LinkTTL is how long a download link is valid (default 24h). A
	// download resumed after it ends fails, and the deployment with it.
	LinkTTL time.Duration
	// Fallback serves every path outside APIPrefix (the native API).
	Fallback http.Handler
}

// Handler serves the Mender device API and hands other paths to
// Config.Fallback.
type Handler struct {
	cfg   Config
	core  *otaserver.Server
	store devicestore.Store
	log   logr.Logger
	mux   *http.ServeMux
}

// New builds a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Core == nil || cfg.Auth == nil || cfg.Keys == nil || cfg.Fallback == nil {
		return nil, errors.New("mender: Core, Auth, Keys and Fallback are required")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 24 * time.Hour
	}
	h := &Handler{cfg: cfg, core: cfg.Core, store: cfg.Core.Store(), log: cfg.Core.Log().WithName("mender"), mux: http.NewServeMux()}
	in := func(pattern, route string, f http.HandlerFunc) {
		h.mux.Handle(pattern, cfg.Core.Instrument("mender-"+route, MaxBodyBytes, f))
	}
	in("POST "+pathAuth, "auth", h.serveAuth)
	in("POST "+pathNextV2, "next", h.serveNext(true))
	in("POST "+pathNextV1, "next", h.serveNext(false))
	in("GET "+pathNextV1, "next", h.serveNext(false))
	in("PUT "+pathDeploy+"status", "status", h.serveStatus)
	in("PUT "+pathDeploy+"log", "log", h.serveLog)
	in("PUT "+pathInventory, "inventory", h.serveInventory)
	in("PATCH "+pathInventory, "inventory", h.serveInventory)
	in("GET "+pathDownload, "download", h.serveDownload)
	in("HEAD "+pathDownload, "download", h.serveDownload)
	// Everything else under the prefix is 404, never 405: mender-client
	// falls back to another variant of a request only on 404.
	h.mux.HandleFunc(APIPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "no such resource")
	})
	return h, nil
}

// ServeHTTP routes Mender paths and hands the rest to the fallback.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, APIPrefix) {
		h.cfg.Fallback.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// apiError is Mender's error body.
type apiError struct {
	Error string `json:"error"`
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func retrySeconds(d time.Duration) string {
	return strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10)
}

// fail answers a store or server error: 503 with Retry-After while the
// store is unavailable, else 500. mender-client retries both.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, devicestore.ErrDeviceDeleted) {
		// Deleted (kubectl delete device) while the request was in flight.
		writeErr(w, http.StatusUnauthorized, "the device was decommissioned; authenticate again")
		return
	}
	if errors.Is(err, devicestore.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		h.log.V(1).Info("device store unavailable", "op", what, "err", err.Error())
		w.Header().Set("Retry-After", retrySeconds(otaserver.StoreRetryAfter()))
		writeErr(w, http.StatusServiceUnavailable, "the device store is unavailable; retry later")
		return
	}
	h.log.Error(err, "Mender API failure", "op", what, "path", r.URL.Path)
	writeErr(w, http.StatusInternalServerError, "internal error; retry later")
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, http.StatusRequestEntityTooLarge, "request body too large")
			return nil, false
		}
		writeErr(w, http.StatusBadRequest, "cannot read the request body")
		return nil, false
	}
	return b, true
}

// parsed authenticates a device request and parses its body; ok false
// means it answered.
func parsed[T any](h *Handler, w http.ResponseWriter, r *http.Request, parse func([]byte) (T, error)) (devicestore.Device, T, bool) {
	var zero T
	d, ok := h.device(w, r)
	if !ok {
		return d, zero, false
	}
	body, ok := readBody(w, r)
	if !ok {
		return d, zero, false
	}
	v, err := parse(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return d, zero, false
	}
	return d, v, true
}

// deploymentOf finds the device's record for the path's deployment id;
// ok false means it answered (404 for an id that is not one of the
// device's deployments).
func (h *Handler) deploymentOf(w http.ResponseWriter, r *http.Request, d devicestore.Device) (*devicestore.Record, Kind, string, bool) {
	id := r.PathValue("id")
	rec, kind, err := h.deployment(r.Context(), d.ID, id)
	if errors.Is(err, devicestore.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "no such deployment for this device")
		return nil, "", id, false
	}
	if err != nil {
		h.fail(w, r, "read records", err)
		return nil, "", id, false
	}
	return rec, kind, id, true
}

// unauthorized answers 401: mender-client then authenticates again.
func (h *Handler) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="otaflow"`)
	writeErr(w, http.StatusUnauthorized, msg)
}

// device authenticates a device token and returns the device; limited
// applies the device's rate limit.
func (h *Handler) device(w http.ResponseWriter, r *http.Request) (devicestore.Device, bool) {
	if wait, blocked := h.core.AuthFailureBlocked(r); blocked {
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeErr(w, http.StatusTooManyRequests, "too many failed authentications from this address")
		return devicestore.Device{}, false
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		h.core.AuthFailed(r)
		h.unauthorized(w, "missing or malformed bearer token")
		return devicestore.Device{}, false
	}
	id, tenant, err := h.cfg.Keys.VerifyDevice(tok, h.core.Now)
	if err != nil {
		// Expired tokens are the common case and no attack: not counted.
		h.log.V(1).Info("device token refused", "err", err.Error())
		h.unauthorized(w, "invalid or expired token; authenticate again")
		return devicestore.Device{}, false
	}
	if wait, ok := h.core.AllowDevice(id); !ok {
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeErr(w, http.StatusTooManyRequests, "too many requests from this device")
		return devicestore.Device{}, false
	}
	d, err := h.store.Device(r.Context(), id)
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		// Deleted since the token was issued: authenticating again
		// registers it anew, if its enrollment still admits it.
		h.unauthorized(w, "the device is not registered; authenticate again")
		return d, false
	case err != nil:
		h.fail(w, r, "read device", err)
		return d, false
	case !strings.HasPrefix(d.KEM, KEMPrefix) || d.Namespace != tenant:
		h.unauthorized(w, "the token is not for a Mender device of its tenant")
		return d, false
	}
	return d, true
}

// bearer takes the token of "Bearer <token>" (scheme in any case).
func bearer(h string) (string, bool) {
	s, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(s, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != "" && len(tok) <= 4096
}

// base is the external base URL for links.
func (h *Handler) base(r *http.Request) string {
	if u := strings.TrimRight(h.cfg.ExternalURL, "/"); u != "" {
		return u
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// Deliverable says whether a release reaches a mender-client that reports
// deviceType: a Mender artifact whose header is recorded and names the
// device type. A raw, SWUpdate or RAUC image, or an artifact for other
// device types, lets the rollout go of the device (skipped); a Mender
// release whose header is not recorded yet waits.
func Deliverable(deviceType string) func(rel *catalog.Release) (string, bool) {
	return func(rel *catalog.Release) (string, bool) {
		if _, ok := rel.MenderReady(); ok {
			for _, t := range rel.Artifact.Mender.DeviceTypes {
				if t == deviceType {
					return "", true
				}
			}
			return "skipped: the Mender artifact " + rel.Artifact.Mender.Name + " is not compatible with device type " + deviceType + " that mender-client reports", false
		}
		if rel.Format != "Mender" {
			return "skipped: the release is not a Mender artifact (spec.format " + string(rel.Format) + "), which mender-client cannot install", false
		}
		return "", false
	}
}

// recordKind is the deployment a record stands for now.
func recordKind(r *devicestore.Record) Kind {
	if r.RollbackRelease != "" {
		return KindRollback
	}
	return KindInstall
}

// deployment finds the device's record whose current deployment has the
// id (ids are 128-bit hashes: no two records share one).
func (h *Handler) deployment(ctx context.Context, deviceID, id string) (*devicestore.Record, Kind, error) {
	recs, err := h.store.Records(ctx, deviceID)
	if err != nil {
		return nil, "", err
	}
	for i := range recs {
		k := recordKind(&recs[i])
		if DeploymentID(recs[i].RolloutUID, k) == id {
			return &recs[i], k, nil
		}
	}
	return nil, "", devicestore.ErrNotFound
}
