package ddi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Grant is what a DDI Authorization header admits on a controller's path.
type Grant struct {
	// Namespace is the tenant; Enrollment the DeviceEnrollment whose
	// limits (quota, expiry, allowlist) a registration counts against.
	Namespace, Enrollment string
	MaxDevices            int64
	// DeviceType and Labels are given to a device registered through it.
	DeviceType string
	Labels     map[string]string
	// Gateway: the tenant's GatewayToken (any controllerId), not the
	// device's own TargetToken.
	Gateway bool
	// RegisterRefused, when not "", says why no new controller may be
	// registered through it now (expired, suspended, allowlist, quota
	// settings gone); registered ones are still served.
	RegisterRefused string
}

// Authenticator checks an Authorization header for a controller's path.
// It returns an error wrapping ErrUnauthenticated for a missing, garbled,
// unknown or misplaced token (answered 401); any other error is answered
// 404 (a controllerId that cannot exist).
type Authenticator interface {
	AuthenticateDDI(header, tenant, controllerID string, now time.Time) (Grant, error)
}

// ErrUnauthenticated: the header proves nothing for this path.
var ErrUnauthenticated = errors.New("ddi: not authenticated")

// KEMs of DDI devices in the device store: they have no public key, and
// the native API refuses them (another "key").
const (
	KEMTarget  = "hawkbit-ddi/target"
	KEMGateway = "hawkbit-ddi/gateway"
)

// boot is the constant boot of DDI check-ins: DDI says nothing of boots,
// so a revert is never inferred from a version alone (docs/hawkbit-ddi.md).
const boot = "ddi"

// MaxBodyBytes bounds DDI request bodies: SWUpdate flushes install logs
// as feedback details (up to 48 lines of 2 KiB).
const MaxBodyBytes = 256 << 10

// Config wires a Handler.
type Config struct {
	Core *otaserver.Server
	Auth Authenticator
	// ExternalURL is the base of the hrefs in answers (https://ota.example.com);
	// empty derives it from each request's scheme and Host.
	ExternalURL string
	// PollInterval is config.polling.sleep with nothing to do (default 5m);
	// ActivePollInterval while an action is open (default 30s), since
	// clients see a cancel only when they poll.
	PollInterval, ActivePollInterval time.Duration
	// AttributesRefresh is how often a device is asked for its attributes
	// (configData) again (default 1h). A device whose version is unknown
	// is asked at every poll.
	AttributesRefresh time.Duration
	// Deliverable says whether a release reaches DDI clients (default
	// DeliverableRelease).
	Deliverable func(rel *catalog.Release) (reason string, ok bool)
	// Fallback serves every path that is not a DDI one (the native API).
	Fallback http.Handler
}

// Handler serves the DDI API and hands other paths to Config.Fallback.
type Handler struct {
	cfg   Config
	core  *otaserver.Server
	store devicestore.Store
	log   logr.Logger
	attrs *attrMemory
	// route handlers, instrumented
	root, configData, deployment, feedback, cancel, cancelFeedback, artifact http.Handler
}

// New builds a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Core == nil || cfg.Auth == nil || cfg.Fallback == nil {
		return nil, errors.New("ddi: Core, Auth and Fallback are required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Minute
	}
	if cfg.ActivePollInterval <= 0 {
		cfg.ActivePollInterval = 30 * time.Second
	}
	if cfg.AttributesRefresh <= 0 {
		cfg.AttributesRefresh = time.Hour
	}
	if cfg.Deliverable == nil {
		cfg.Deliverable = DeliverableRelease
	}
	h := &Handler{cfg: cfg, core: cfg.Core, store: cfg.Core.Store(), log: cfg.Core.Log().WithName("ddi"), attrs: newAttrMemory(1 << 20)}
	in := func(route string, f func(http.ResponseWriter, *http.Request, path), methods ...string) http.Handler {
		return cfg.Core.Instrument("ddi-"+route, MaxBodyBytes, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !allowed(w, r, methods) {
				return
			}
			f(w, r, pathOf(r))
		}))
	}
	h.root = in("root", h.serveRoot, http.MethodGet)
	h.configData = in("configdata", h.serveConfigData, http.MethodPut)
	h.deployment = in("deployment", h.serveDeployment, http.MethodGet)
	h.feedback = in("feedback", h.serveFeedback, http.MethodPost)
	h.cancel = in("cancel", h.serveCancel, http.MethodGet)
	h.cancelFeedback = in("cancelfeedback", h.serveCancelFeedback, http.MethodPost)
	h.artifact = in("artifact", h.serveArtifact, http.MethodGet, http.MethodHead)
	return h, nil
}

// DeliverableRelease: DDI clients install SWUpdate and RAUC files, whose
// plaintext hashes and file name the release pipeline recorded; a raw
// image never reaches them (the rollout lets go of the device), and a
// release whose hashes are not recorded yet waits.
func DeliverableRelease(rel *catalog.Release) (string, bool) {
	if _, ok := rel.DDIReady(); ok {
		return "", true
	}
	if !rel.Format.DDI() {
		return "skipped: the release is a raw image (spec.format " + string(rel.Format) + "), which hawkBit DDI clients cannot install", false
	}
	return "", false
}

// path is a parsed DDI path: /{tenant}/controller/v1/{controllerId}/rest…
type path struct {
	tenant, controller string
	rest               []string
}

func pathOf(r *http.Request) path {
	p, _ := parsePath(r.URL.Path)
	return p
}

// parsePath splits a DDI path; repeated slashes collapse (a client URL
// with a trailing slash yields "//tenant/…", and a redirect would turn
// its POSTs into GETs).
func parsePath(p string) (path, bool) {
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	if len(segs) < 4 || segs[1] != "controller" || segs[2] != "v1" {
		return path{}, false
	}
	return path{tenant: segs[0], controller: segs[3], rest: segs[4:]}, true
}

// ServeHTTP routes DDI paths and hands the rest to the fallback.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePath(r.URL.Path)
	if !ok {
		h.cfg.Fallback.ServeHTTP(w, r)
		return
	}
	var next http.Handler
	switch rest := p.rest; {
	case len(rest) == 0:
		next = h.root
	case len(rest) == 1 && rest[0] == "configData":
		next = h.configData
	case len(rest) == 2 && rest[0] == "deploymentBase":
		next = h.deployment
	case len(rest) == 3 && rest[0] == "deploymentBase" && rest[2] == "feedback":
		next = h.feedback
	case len(rest) == 2 && rest[0] == "cancelAction":
		next = h.cancel
	case len(rest) == 3 && rest[0] == "cancelAction" && rest[2] == "feedback":
		next = h.cancelFeedback
	case len(rest) == 4 && rest[0] == "softwaremodules" && rest[2] == "artifacts":
		next = h.artifact
	default:
		writeErr(w, http.StatusNotFound, "ddi.notFound", "no such DDI resource")
		return
	}
	next.ServeHTTP(w, r)
}

func allowed(w http.ResponseWriter, r *http.Request, methods []string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeErr(w, http.StatusMethodNotAllowed, "ddi.methodNotAllowed", "method not allowed")
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Error{ErrorCode: code, Message: msg})
}

// fail answers a store or server error: 503 with Retry-After while the
// store is unavailable (the clients retry at their next poll), else 500.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, devicestore.ErrDeviceDeleted) {
		// Deleted (kubectl delete device) while the request was in flight.
		writeErr(w, http.StatusUnauthorized, "ddi.unauthenticated", "the controller was decommissioned")
		return
	}
	if errors.Is(err, devicestore.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		h.log.V(1).Info("device store unavailable", "op", what, "err", err.Error())
		w.Header().Set("Retry-After", retrySeconds(otaserver.StoreRetryAfter()))
		writeErr(w, http.StatusServiceUnavailable, "ddi.unavailable", "the device store is unavailable; retry later")
		return
	}
	h.log.Error(err, "DDI failure", "op", what, "path", r.URL.Path)
	writeErr(w, http.StatusInternalServerError, "ddi.internal", "internal error; retry later")
}

func retrySeconds(d time.Duration) string {
	return strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10)
}

// device authenticates the request for its path and returns the device.
// register creates an unknown controllerId within the grant's limits (the
// base poll does, as hawkBit's); limited applies the device's rate limit.
func (h *Handler) device(w http.ResponseWriter, r *http.Request, p path, register, limited bool) (devicestore.Device, Grant, bool) {
	if wait, blocked := h.core.AuthFailureBlocked(r); blocked {
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeErr(w, http.StatusTooManyRequests, "ddi.rateLimited", "too many failed authentications from this address")
		return devicestore.Device{}, Grant{}, false
	}
	now := h.core.Now()
	g, err := h.cfg.Auth.AuthenticateDDI(r.Header.Get("Authorization"), p.tenant, p.controller, now)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		h.core.AuthFailed(r)
		w.Header().Set("WWW-Authenticate", `TargetToken realm="otaflow"`)
		writeErr(w, http.StatusUnauthorized, "ddi.unauthenticated", "missing, unknown or misplaced TargetToken or GatewayToken")
		return devicestore.Device{}, g, false
	case err != nil:
		writeErr(w, http.StatusNotFound, "ddi.unknownController", err.Error())
		return devicestore.Device{}, g, false
	}
	if limited {
		if wait, ok := h.core.AllowDevice(p.controller); !ok {
			w.Header().Set("Retry-After", retrySeconds(wait))
			writeErr(w, http.StatusTooManyRequests, "ddi.rateLimited", "too many requests from this controller")
			return devicestore.Device{}, g, false
		}
	}
	ctx := r.Context()
	d, err := h.store.Device(ctx, p.controller)
	if errors.Is(err, devicestore.ErrNotFound) && register {
		if g.RegisterRefused != "" {
			writeErr(w, http.StatusForbidden, "ddi.forbidden", g.RegisterRefused)
			return d, g, false
		}
		d, err = h.register(ctx, p, g, now)
	}
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		writeErr(w, http.StatusNotFound, "ddi.unknownController", "no such controller; poll the base resource first")
		return d, g, false
	case errors.Is(err, devicestore.ErrQuotaExceeded):
		h.core.Metrics().Enrollments.WithLabelValues("quota").Inc()
		writeErr(w, http.StatusForbidden, "ddi.quota", "the tenant's enrollment has registered its maximum number of devices")
		return d, g, false
	case errors.Is(err, devicestore.ErrTenantMismatch), errors.Is(err, devicestore.ErrKeyMismatch):
		writeErr(w, http.StatusForbidden, "ddi.forbidden", "this controllerId is registered in another tenant or as a native otaflow device")
		return d, g, false
	case err != nil:
		h.fail(w, r, "read device", err)
		return d, g, false
	}
	switch {
	case d.Namespace != p.tenant || (d.KEM != KEMTarget && d.KEM != KEMGateway):
		writeErr(w, http.StatusForbidden, "ddi.forbidden", "this controllerId is registered in another tenant or as a native otaflow device")
		return d, g, false
	case g.Gateway && d.KEM != KEMGateway:
		// A gateway token never acts for a device that has its own token.
		h.core.AuthFailed(r)
		w.Header().Set("WWW-Authenticate", `TargetToken realm="otaflow"`)
		writeErr(w, http.StatusUnauthorized, "ddi.unauthenticated", "this controller authenticates with its own TargetToken")
		return d, g, false
	}
	return d, g, true
}

// register creates the controller as a device of the grant's tenant,
// within its enrollment's quota. Its token hash is random: DDI devices
// authenticate with the tenant's DDI tokens, never with a native bearer
// token, and the column is unique.
func (h *Handler) register(ctx context.Context, p path, g Grant, now time.Time) (devicestore.Device, error) {
	th := make([]byte, 32)
	if _, err := rand.Read(th); err != nil {
		return devicestore.Device{}, err
	}
	kem := KEMTarget
	if g.Gateway {
		kem = KEMGateway
	}
	d, created, err := h.store.EnrollWithin(ctx, devicestore.Device{
		ID: p.controller, Type: g.DeviceType, Labels: g.Labels, KEM: kem, PublicKey: []byte{}, TokenHash: th,
		EnrolledAt: now, LastSeen: now, Namespace: g.Namespace, Enrollment: g.Enrollment,
	}, g.MaxDevices)
	if err == nil && created {
		h.core.Metrics().Enrollments.WithLabelValues("new").Inc()
		h.log.V(1).Info("controller registered", "device", d.ID, "tenant", d.Namespace, "gateway", g.Gateway)
	}
	return d, err
}

// base is the controller's base URL for hrefs.
func (h *Handler) base(r *http.Request, p path) string {
	u := strings.TrimRight(h.cfg.ExternalURL, "/")
	if u == "" {
		scheme := "https"
		if r.TLS == nil {
			scheme = "http"
		}
		u = scheme + "://" + r.Host
	}
	return u + "/" + p.tenant + "/controller/v1/" + p.controller
}

func (h *Handler) serveRoot(w http.ResponseWriter, r *http.Request, p path) {
	d, _, ok := h.device(w, r, p, true, true)
	if !ok {
		return
	}
	base := h.base(r, p)
	now := h.core.Now()
	root := Root{Links: map[string]Link{}}
	sleep := h.cfg.PollInterval
	// Asked once per refresh, even while the version is unknown: a client
	// that PUTs without a version must not be asked at every poll
	// (SWUpdate answers a configData link at once and polls again).
	if !h.attrs.fresh(d.ID, now, h.cfg.AttributesRefresh) {
		root.Links["configData"] = Link{Href: base + "/configData"}
	}
	// Without a version the rules cannot rank the device against a
	// release: wait for its attributes.
	if d.Version != "" {
		dec, err := h.core.Decide(r.Context(), d, otaserver.DeviceCheckIn{
			Version: d.Version, SecurityFloor: d.SecurityFloor, Boot: boot, Deliverable: h.cfg.Deliverable,
		})
		if err != nil {
			h.fail(w, r, "check-in", err)
			return
		}
		if name, id, ok := actionLink(dec); ok {
			root.Links[name] = Link{Href: base + "/" + name + "/" + idString(id)}
			sleep = h.cfg.ActivePollInterval
			h.core.Metrics().CheckIns.WithLabelValues("ddi-" + name).Inc()
		} else {
			if dec.Retry > 0 {
				sleep = min(sleep, dec.Retry)
			}
			h.core.Metrics().CheckIns.WithLabelValues("ddi-none").Inc()
		}
	}
	root.Config.Polling.Sleep = FormatSleep(sleep)
	writeJSON(w, root)
}

// actionLink is the root's action link for a decision: the cancel of an
// update the device has not acknowledged first (both clients handle a
// cancel before a deployment), else the deployment the rules offer or
// resend, else an update in progress (SWUpdate reports the outcome after
// its reboot only while the root still links the action).
func actionLink(dec otaserver.Decision) (name string, id uint32, ok bool) {
	for _, dr := range dec.Records {
		if rec := dr.Record; rec != nil && rec.State == rollout.StateCanceled && rec.Reason == rollout.ReasonAborted && rec.RollbackRelease == "" {
			return "cancelAction", ActionID(rec.RolloutUID, KindInstall), true
		}
	}
	switch dec.Action {
	case rollout.Offer, rollout.Resend:
		return "deploymentBase", ActionID(dec.Rollout.UID, KindInstall), true
	case rollout.Rollback:
		return "deploymentBase", ActionID(dec.Rollout.UID, KindRollback), true
	case rollout.Cancel:
		return "cancelAction", ActionID(dec.Rollout.UID, KindInstall), true
	}
	for _, dr := range dec.Records {
		if rec := dr.Record; rec != nil && rec.RollbackRelease == "" && rec.State.InProgress() && !rec.State.Cancelable() {
			return "deploymentBase", ActionID(rec.RolloutUID, KindInstall), true
		}
	}
	return "", 0, false
}

// action finds the device's record for the path's action id and the
// release the action installs.
func (h *Handler) action(w http.ResponseWriter, r *http.Request, d devicestore.Device, idStr string) (*devicestore.Record, Kind, uint32, *catalog.Release, bool) {
	id, err := parseActionID(idStr)
	if err != nil {
		writeErr(w, http.StatusNotFound, "ddi.unknownAction", err.Error())
		return nil, "", 0, nil, false
	}
	recs, err := h.store.Records(r.Context(), d.ID)
	if err != nil {
		h.fail(w, r, "read records", err)
		return nil, "", 0, nil, false
	}
	rec, kind, ok := actionOf(recs, id)
	if !ok {
		writeErr(w, http.StatusNotFound, "ddi.unknownAction", "no such action for this controller")
		return nil, "", 0, nil, false
	}
	return rec, kind, id, h.core.RecordRelease(d, rec), true
}

func (h *Handler) serveDeployment(w http.ResponseWriter, r *http.Request, p path) {
	d, _, ok := h.device(w, r, p, false, true)
	if !ok {
		return
	}
	_, _, id, rel, ok := h.action(w, r, d, p.rest[1])
	if !ok {
		return
	}
	if rel == nil {
		writeErr(w, http.StatusNotFound, "ddi.unknownAction", "the action's release is gone")
		return
	}
	if _, ok := h.cfg.Deliverable(rel); !ok {
		writeErr(w, http.StatusNotFound, "ddi.unknownAction", "the action's release cannot be delivered over DDI")
		return
	}
	href := h.base(r, p) + "/softwaremodules/" + idString(id) + "/artifacts/" + rel.Artifact.Filename
	a := rel.Artifact
	writeJSON(w, DeploymentBase{ID: idString(id), Deployment: Deployment{
		Download: "attempt", Update: "attempt",
		Chunks: []Chunk{{Part: "os", Name: rel.Name, Version: rel.Version, Artifacts: []Artifact{{
			Filename: a.Filename, Size: a.Size,
			Hashes: Hashes{SHA1: a.PlainSHA1, MD5: a.PlainMD5, SHA256: a.PlainSHA256},
			Links:  map[string]Link{"download": {Href: href}, "download-http": {Href: href}},
		}}}},
	}})
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, http.StatusRequestEntityTooLarge, "ddi.tooLarge", "request body too large")
			return nil, false
		}
		writeErr(w, http.StatusBadRequest, "ddi.badRequest", "cannot read the request body")
		return nil, false
	}
	return b, true
}

// feedbackFor reads a feedback POST: the device, its body, and the action
// of the path.
func (h *Handler) feedbackFor(w http.ResponseWriter, r *http.Request, p path) (d devicestore.Device, f Feedback, rec *devicestore.Record, kind Kind, id uint32, ok bool) {
	if d, _, ok = h.device(w, r, p, false, true); !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	f, err := ParseFeedback(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "ddi.badRequest", err.Error())
		return d, f, nil, "", 0, false
	}
	rec, kind, id, _, ok = h.action(w, r, d, p.rest[1])
	return d, f, rec, kind, id, ok
}

func (h *Handler) serveFeedback(w http.ResponseWriter, r *http.Request, p path) {
	d, f, rec, kind, id, ok := h.feedbackFor(w, r, p)
	if !ok {
		return
	}
	m := MapDeployment(f)
	ctx := r.Context()
	rid := "ddi." + idString(id) + "."
	var err2 error
	running := ""
	switch {
	case m.Effect == Ignore:
	case kind == KindRollback && m.Effect == Succeed:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+"rolledback", rollout.StateRolledBack, "")
		running = rec.PreviousVersion
	case kind == KindRollback && m.State == rollout.StateFailed:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+"failed", rollout.StateFailed, m.Reason)
	case kind == KindRollback:
		// A rollback listens to its outcome only.
	case m.Effect == Succeed:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+"succeeded", rollout.StateSucceeded, "")
		running = rec.Version
	default:
		_, err2 = h.core.Report(ctx, d.ID, rec.RolloutUID, rid+string(m.State), m.State, m.Reason)
	}
	if err2 != nil && !otaserver.ReportSettled(err2) {
		h.fail(w, r, "store feedback", err2)
		return
	}
	if err2 == nil && m.Effect != Ignore {
		h.core.Metrics().Reports.WithLabelValues("ddi-" + f.Status.Execution).Inc()
	}
	if running != "" && err2 == nil {
		// The client installed the action's release (SWUpdate says so
		// after its reboot, rauc-hawkbit-updater once RAUC installed it):
		// it runs that version now, which the rules turn into success.
		if _, err := h.core.Decide(ctx, d, otaserver.DeviceCheckIn{Version: running, SecurityFloor: d.SecurityFloor, Boot: boot, Deliverable: h.cfg.Deliverable}); err != nil {
			h.fail(w, r, "record outcome", err)
			return
		}
	}
	h.log.V(1).Info("feedback", "device", d.ID, "action", id, "execution", f.Status.Execution, "result", f.Status.Result.Finished, "err", errString(err2))
	w.WriteHeader(http.StatusOK)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (h *Handler) serveCancel(w http.ResponseWriter, r *http.Request, p path) {
	d, _, ok := h.device(w, r, p, false, true)
	if !ok {
		return
	}
	rec, kind, id, _, ok := h.action(w, r, d, p.rest[1])
	if !ok {
		return
	}
	if kind != KindInstall || rec.State != rollout.StateCanceled {
		writeErr(w, http.StatusNotFound, "ddi.unknownAction", "the action is not canceled")
		return
	}
	var c CancelAction
	c.ID = idString(id)
	c.CancelAction.StopID = idString(id)
	writeJSON(w, c)
}

func (h *Handler) serveCancelFeedback(w http.ResponseWriter, r *http.Request, p path) {
	d, f, rec, _, id, ok := h.feedbackFor(w, r, p)
	if !ok {
		return
	}
	m := MapCancel(f)
	rid := "ddi." + idString(id) + ".cancel-"
	var err2 error
	switch m.Effect {
	case AckCancel:
		_, err2 = h.core.ReportWith(r.Context(), d.ID, rec.RolloutUID, rid+"ack", func(cur rollout.Record) (rollout.Record, bool, error) {
			// Refused (not stored, still answered 200) unless there is a
			// cancel to acknowledge: a stray acknowledgement must not use up
			// the report ID of a later real one.
			if cur.State != rollout.StateCanceled || cur.Reason != rollout.ReasonAborted {
				return cur, false, fmt.Errorf("%w: no cancel to acknowledge", rollout.ErrTransition)
			}
			cur.Reason = rollout.ReasonCancelAcknowledged
			return cur, false, nil
		})
	case RejectCancel:
		_, err2 = h.core.ReportWith(r.Context(), d.ID, rec.RolloutUID, rid+"reject", func(cur rollout.Record) (rollout.Record, bool, error) {
			next, changed := rollout.CancelRejected(cur)
			if !changed {
				return cur, false, fmt.Errorf("%w: no cancel to reject", rollout.ErrTransition)
			}
			return next, false, nil
		})
	}
	if err2 != nil && !otaserver.ReportSettled(err2) {
		h.fail(w, r, "store cancel feedback", err2)
		return
	}
	h.log.V(1).Info("cancel feedback", "device", d.ID, "action", id, "execution", f.Status.Execution, "result", f.Status.Result.Finished, "err", errString(err2))
	w.WriteHeader(http.StatusOK)
}

// attrMemory remembers when this replica last received each device's
// attributes. It is per replica: a device polling another replica is asked
// once more there (one extra PUT per replica and refresh interval).
type attrMemory struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
}

func newAttrMemory(max int) *attrMemory {
	return &attrMemory{max: max, seen: map[string]time.Time{}}
}

func (a *attrMemory) fresh(id string, now time.Time, ttl time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.seen[id]
	return ok && now.Sub(t) < ttl
}

func (a *attrMemory) mark(id string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) >= a.max {
		// Full: start over; each device is asked once more.
		clear(a.seen)
	}
	a.seen[id] = now
}
