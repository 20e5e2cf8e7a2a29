package ddi_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/ddi"
)

// TestInstallFlow walks SWUpdate's sequence: registration on the first
// poll, attributes, the deployment, the plaintext download (whole, HEAD,
// resumed, past the end), progress, and success after the reboot.
func TestInstallFlow(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0001"
	root := h.poll(id)
	if _, ok := root.Links["configData"]; !ok || len(root.Links) != 1 {
		t.Fatalf("first poll: links %v, want configData only (the version is unknown)", root.Links)
	}
	if root.Config.Polling.Sleep != "00:05:00" {
		t.Fatalf("sleep %q", root.Config.Polling.Sleep)
	}
	d, err := h.store.Device(context.Background(), id)
	if err != nil || d.Namespace != tenant || d.Type != "sensor-v1" || d.KEM != ddi.KEMTarget || d.Labels["region"] != "eu" {
		t.Fatalf("registered device %+v, %v", d, err)
	}
	h.identify(id, "1.0.0")
	root = h.poll(id)
	dep, ok := root.Links["deploymentBase"]
	if !ok || len(root.Links) != 1 {
		t.Fatalf("after identify: links %v, want deploymentBase only (attributes just received)", root.Links)
	}
	if !strings.HasPrefix(dep.Href, h.srv.URL+base(id)+"/deploymentBase/") || strings.Contains(dep.Href, "?") {
		t.Fatalf("deploymentBase href %q", dep.Href)
	}
	if root.Config.Polling.Sleep != "00:00:30" {
		t.Fatalf("sleep with an open action %q", root.Config.Polling.Sleep)
	}
	if rec := h.record(id); rec.State != rollout.StateOffered || rec.Version != "2.0.0" || rec.PreviousVersion != "1.0.0" {
		t.Fatalf("record %+v", rec)
	}
	aid := lastSegment(dep.Href)
	if n, err := strconv.Atoi(aid); err != nil || n <= 0 {
		t.Fatalf("action id %q is not a positive decimal", aid)
	}

	r := h.do(http.MethodGet, dep.Href, target(id), "")
	var db ddi.DeploymentBase
	r.json(t, &db)
	if r.status != 200 || db.ID != aid || db.Deployment.Download != "attempt" || db.Deployment.Update != "attempt" || len(db.Deployment.Chunks) != 1 {
		t.Fatalf("deploymentBase %d %s", r.status, r.body)
	}
	ch := db.Deployment.Chunks[0]
	sum := sha1.Sum(h.image)
	a := ch.Artifacts[0]
	if len(ch.Artifacts) != 1 || ch.Version != "2.0.0" || ch.Name != "fw-2" || a.Filename != "fw-2-2.0.0.swu" || a.Size != int64(len(h.image)) ||
		a.Hashes.SHA1 != hex.EncodeToString(sum[:]) || a.Hashes.MD5 == "" || a.Hashes.SHA256 != h.release.Status.Artifact.PlainSHA256 {
		t.Fatalf("chunk %+v", ch)
	}
	href := a.Links["download"].Href
	if href == "" || a.Links["download-http"].Href != href {
		t.Fatalf("artifact links %v", a.Links)
	}

	r = h.do(http.MethodHead, href, target(id), "")
	if r.status != 200 || r.header.Get("Content-Length") != strconv.Itoa(len(h.image)) || r.header.Get("ETag") != `"`+a.Hashes.SHA1+`"` {
		t.Fatalf("HEAD: %d %v", r.status, r.header)
	}
	r = h.do(http.MethodGet, href, target(id), "")
	if r.status != 200 || string(r.body) != string(h.image) {
		t.Fatalf("GET: %d, %d bytes", r.status, len(r.body))
	}
	// Resumes (SWUpdate and rauc-hawkbit-updater: Range: bytes=N-) across
	// envelope chunk boundaries, RAUC streaming's first probe, the end.
	for _, off := range []int{1, 65535, 65536, 65537, 200_000, len(h.image) - 1} {
		r = h.do(http.MethodGet, href, target(id), "", "Range", "bytes="+strconv.Itoa(off)+"-")
		if r.status != 206 || string(r.body) != string(h.image[off:]) ||
			r.header.Get("Content-Range") != "bytes "+strconv.Itoa(off)+"-"+strconv.Itoa(len(h.image)-1)+"/"+strconv.Itoa(len(h.image)) {
			t.Fatalf("Range from %d: %d %v, %d bytes", off, r.status, r.header, len(r.body))
		}
	}
	r = h.do(http.MethodGet, href, target(id), "", "Range", "bytes=0-3")
	if r.status != 206 || r.header.Get("Content-Range") != "bytes 0-3/"+strconv.Itoa(len(h.image)) || string(r.body) != string(h.image[:4]) {
		t.Fatalf("Range 0-3: %d %v", r.status, r.header)
	}
	r = h.do(http.MethodGet, href, target(id), "", "Range", "bytes="+strconv.Itoa(len(h.image))+"-")
	if r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("Range past the end: %d, want 416 (rauc-hawkbit-updater: complete)", r.status)
	}
	if r := h.do(http.MethodGet, strings.Replace(href, "fw-2-2.0.0.swu", "other.swu", 1), target(id), ""); r.status != 404 {
		t.Fatalf("another file name: %d", r.status)
	}

	fb := dep.Href + "/feedback"
	for range 2 { // a retried feedback is answered alike
		if r := h.do(http.MethodPost, fb, target(id), swuFeedback(aid, "proceeding", "none", "Installing Update Chunk Artifacts.")); r.status != 200 {
			t.Fatalf("feedback proceeding: %d %s", r.status, r.body)
		}
	}
	if rec := h.record(id); rec.State != rollout.StateDownloading {
		t.Fatalf("after proceeding: %s", rec.State)
	}
	// While installed and awaiting its reboot, SWUpdate needs the action
	// linked to send its outcome after the reboot.
	if root := h.poll(id); root.Links["deploymentBase"].Href != dep.Href {
		t.Fatalf("in progress: links %v", root.Links)
	}
	for range 2 {
		if r := h.do(http.MethodPost, fb, target(id), swuFeedback(aid, "closed", "success", "Update succeeded")); r.status != 200 {
			t.Fatalf("feedback closed/success: %d %s", r.status, r.body)
		}
	}
	if rec := h.record(id); rec.State != rollout.StateSucceeded {
		t.Fatalf("after closed/success: %s (%s)", rec.State, rec.Reason)
	}
	if d, _ := h.store.Device(context.Background(), id); d.Version != "2.0.0" {
		t.Fatalf("running version %q after success", d.Version)
	}
	if root := h.poll(id); len(root.Links) != 0 {
		t.Fatalf("after success: links %v", root.Links)
	}
	if r := h.do(http.MethodGet, href, target(id), ""); r.status != http.StatusForbidden {
		t.Fatalf("download after the action closed: %d", r.status)
	}
	c, err := h.store.Counts(context.Background(), string(h.rollout.UID), h.core.Now().Add(-3600e9))
	if err != nil || c.Waves[0].States[rollout.StateSucceeded] != 1 {
		t.Fatalf("counts %+v %v", c, err)
	}
}

// TestAttributesWithoutVersion: a client whose attributes carry no usable
// version is not asked again at every poll (SWUpdate would PUT and poll
// in a loop), and no rule runs for it.
func TestAttributesWithoutVersion(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0007"
	h.poll(id)
	body := `{"data":{"hw":"imx8","version":"` + strings.Repeat("9", 200) + `"}}`
	if r := h.do(http.MethodPut, base(id)+"/configData", target(id), body); r.status != 200 {
		t.Fatalf("configData: %d %s", r.status, r.body)
	}
	if root := h.poll(id); len(root.Links) != 0 {
		t.Fatalf("links %v after attributes without a usable version", root.Links)
	}
	if d, _ := h.store.Device(context.Background(), id); d.Version != "" {
		t.Fatalf("version %q stored", d.Version)
	}
	if _, err := h.store.Record(context.Background(), string(h.rollout.UID), id); err == nil {
		t.Fatal("a record was written for a device without a version")
	}
	// Too many label attributes: the labels stay as they were.
	var b strings.Builder
	b.WriteString(`{"data":{"version":"1.0.0"`)
	for i := range 40 {
		fmt.Fprintf(&b, `,"label.k%d":"v"`, i)
	}
	b.WriteString(`}}`)
	if r := h.do(http.MethodPut, base(id)+"/configData", target(id), b.String()); r.status != 200 {
		t.Fatalf("configData: %d %s", r.status, r.body)
	}
	if d, _ := h.store.Device(context.Background(), id); len(d.Labels) != 1 || d.Version != "1.0.0" {
		t.Fatalf("labels %v version %q after 40 label attributes", d.Labels, d.Version)
	}
}

// TestInstallFailure: a failed install fails the device with the client's
// reason, as a native device's report would.
func TestInstallFailure(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0002"
	dep, aid := h.offered(id)
	r := h.do(http.MethodPost, dep+"/feedback", target(id), rhuFeedback(aid, "closed", "failure", "Failed to install software bundle."))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	rec := h.record(id)
	if rec.State != rollout.StateFailed || rec.Reason != "ddi: Failed to install software bundle." {
		t.Fatalf("record %+v", rec)
	}
	fails, _ := h.store.RecentFailures(context.Background(), string(h.rollout.UID), 10)
	if len(fails) != 1 || fails[0].DeviceID != id {
		t.Fatalf("failure log %+v", fails)
	}
	// A late success after the failure changes nothing and is still 200.
	if r := h.do(http.MethodPost, dep+"/feedback", target(id), rhuFeedback(aid, "closed", "success", "x")); r.status != 200 || h.record(id).State != rollout.StateFailed {
		t.Fatalf("late success: %d, %s", r.status, h.record(id).State)
	}
}

// TestCancel: an abort cancels a device that has not started; SWUpdate
// acknowledges; the download is refused from then on.
func TestCancel(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0003"
	_, aid := h.offered(id)
	// A stray acknowledgement before any cancel changes nothing and does
	// not use up the real one.
	stray := `{ "id": ` + aid + `, "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "cancellation acknowledged." ] } }`
	if r := h.do(http.MethodPost, h.srv.URL+base(id)+"/cancelAction/"+aid+"/feedback", target(id), stray); r.status != 200 {
		t.Fatalf("stray cancel feedback: %d %s", r.status, r.body)
	}
	if rec := h.record(id); rec.State != rollout.StateOffered {
		t.Fatalf("after a stray acknowledgement: %+v", rec)
	}
	h.rollout.Spec.Abort = true
	h.rebuild()
	root := h.poll(id)
	cancel, ok := root.Links["cancelAction"]
	if !ok || len(root.Links) != 1 || lastSegment(cancel.Href) != aid {
		t.Fatalf("after abort: links %v", root.Links)
	}
	if rec := h.record(id); rec.State != rollout.StateCanceled {
		t.Fatalf("record %s", rec.State)
	}
	var c ddi.CancelAction
	r := h.do(http.MethodGet, cancel.Href, target(id), "")
	r.json(t, &c)
	if r.status != 200 || c.ID != aid || c.CancelAction.StopID != aid {
		t.Fatalf("cancelAction %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodGet, h.srv.URL+base(id)+"/softwaremodules/"+aid+"/artifacts/fw-2-2.0.0.swu", target(id), ""); r.status != http.StatusForbidden {
		t.Fatalf("download after cancel: %d", r.status)
	}
	// Still linked until acknowledged.
	if root := h.poll(id); root.Links["cancelAction"].Href != cancel.Href {
		t.Fatalf("unacknowledged cancel not linked: %v", root.Links)
	}
	ack := `{ "id": ` + aid + `, "time": "20261202T083000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "cancellation acknowledged." ] } }`
	if r := h.do(http.MethodPost, cancel.Href+"/feedback", target(id), ack); r.status != 200 {
		t.Fatalf("cancel feedback %d %s", r.status, r.body)
	}
	if rec := h.record(id); rec.State != rollout.StateCanceled || rec.Reason != rollout.ReasonCancelAcknowledged {
		t.Fatalf("after ack %+v", rec)
	}
	if root := h.poll(id); len(root.Links) != 0 {
		t.Fatalf("after ack: links %v", root.Links)
	}
}

// TestLateCancel: SWUpdate installed (awaiting its reboot) when the abort
// came, and acknowledges the cancel; after the reboot it runs the release,
// which counts as success, not as canceled.
func TestLateCancel(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0006"
	dep, aid := h.offered(id)
	h.do(http.MethodPost, dep+"/feedback", target(id), swuFeedback(aid, "proceeding", "none", "All Chunks Installed."))
	h.rollout.Spec.Abort = true
	h.rebuild()
	cancel := h.poll(id).Links["cancelAction"].Href
	if cancel == "" {
		t.Fatal("no cancel after the abort")
	}
	h.do(http.MethodPost, cancel+"/feedback", target(id), swuFeedback(aid, "closed", "success", "cancellation acknowledged."))
	if rec := h.record(id); rec.State != rollout.StateCanceled {
		t.Fatalf("after ack: %+v", rec)
	}
	h.identify(id, "2.0.0") // rebooted into the release
	if root := h.poll(id); len(root.Links) != 0 {
		t.Fatalf("links %v", root.Links)
	}
	if rec := h.record(id); rec.State != rollout.StateSucceeded {
		t.Fatalf("running the release after a late cancel: %+v", rec)
	}
}

// TestCancelRejected: rauc-hawkbit-updater refuses a cancel once RAUC
// installs; the device goes back to installing and its outcome counts.
func TestCancelRejected(t *testing.T) {
	h := newHarness(t)
	const id = "rauc-0001"
	dep, aid := h.offered(id)
	h.rollout.Spec.Abort = true
	h.rebuild()
	cancel := h.poll(id).Links["cancelAction"].Href
	if r := h.do(http.MethodPost, cancel+"/feedback", target(id), rhuFeedback(aid, "rejected", "success", "Cancelation impossible, installation in progress")); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if rec := h.record(id); rec.State != rollout.StateInstalling {
		t.Fatalf("after rejected cancel: %+v", rec)
	}
	// The aborted rollout waits for its outcome, and keeps the action
	// linked so the client can report it.
	if root := h.poll(id); root.Links["deploymentBase"].Href != dep || len(root.Links) != 1 {
		t.Fatalf("installing after a rejected cancel: links %v", root.Links)
	}
	if r := h.do(http.MethodPost, dep+"/feedback", target(id), rhuFeedback(aid, "closed", "success", "Software bundle installed successfully.")); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if rec := h.record(id); rec.State != rollout.StateSucceeded {
		t.Fatalf("after success: %+v", rec)
	}
}

// TestRollback: after an abort with rollbackOnAbort, a device that took
// the release gets a new action for the previous release.
func TestRollback(t *testing.T) {
	h := newHarness(t)
	const id = "sw-0004"
	dep, aid := h.offered(id)
	h.do(http.MethodPost, dep+"/feedback", target(id), swuFeedback(aid, "closed", "success"))
	if rec := h.record(id); rec.State != rollout.StateSucceeded {
		t.Fatalf("%+v", rec)
	}
	yes := true
	h.rollout.Spec.Abort, h.rollout.Spec.RollbackOnAbort = true, &yes
	h.rollout.Status.Phase, h.rollout.Status.RollbackRequested = "Aborted", true
	h.rebuild()
	root := h.poll(id)
	rb := root.Links["deploymentBase"].Href
	if rb == "" || lastSegment(rb) == aid {
		t.Fatalf("rollback: links %v (install action %s)", root.Links, aid)
	}
	var db ddi.DeploymentBase
	h.do(http.MethodGet, rb, target(id), "").json(t, &db)
	if db.Deployment.Chunks[0].Version != "1.0.0" || db.Deployment.Chunks[0].Artifacts[0].Filename != "fw-1-1.0.0.swu" {
		t.Fatalf("rollback deployment %+v", db)
	}
	r := h.do(http.MethodGet, db.Deployment.Chunks[0].Artifacts[0].Links["download"].Href, target(id), "")
	if r.status != 200 || string(r.body) != "old firmware image" {
		t.Fatalf("rollback download %d %q", r.status, r.body)
	}
	h.do(http.MethodPost, rb+"/feedback", target(id), swuFeedback(lastSegment(rb), "closed", "success"))
	if rec := h.record(id); rec.State != rollout.StateRolledBack {
		t.Fatalf("after rollback success %+v", rec)
	}
	if d, _ := h.store.Device(context.Background(), id); d.Version != "1.0.0" {
		t.Fatalf("version %q", d.Version)
	}
}

// TestRawReleaseSkipped: a raw image never reaches a DDI client; the
// rollout lets go of the device with the reason, so its wave does not
// wait for it.
func TestRawReleaseSkipped(t *testing.T) {
	h := newHarness(t)
	h.release = h.makeRelease("fw-2", "2.0.0", "Raw", h.image)
	h.rebuild()
	const id = "sw-0005"
	h.poll(id)
	h.identify(id, "1.0.0")
	if root := h.poll(id); len(root.Links) != 0 {
		t.Fatalf("links %v", root.Links)
	}
	rec := h.record(id)
	if rec.State != rollout.StateSkipped || !strings.Contains(rec.Reason, "raw image") {
		t.Fatalf("record %+v", rec)
	}
}

// TestAuthErrors: every way a request is refused, and what it is answered.
func TestAuthErrors(t *testing.T) {
	h := newHarness(t)
	h.poll("sw-a")
	h.identify("sw-a", "1.0.0")
	dep := h.poll("sw-a").Links["deploymentBase"].Href
	// A native device with an ID a DDI controller then claims.
	if err := enrollNative(h, "native-1"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"no header", "GET", base("sw-a"), "", 401},
		{"bearer scheme", "GET", base("sw-a"), "Bearer tt-sw-a", 401},
		{"unknown token", "GET", base("sw-a"), "TargetToken nope", 401},
		{"token of another controller", "GET", base("sw-b"), "TargetToken tt-sw-a", 401},
		{"scheme is case-insensitive", "GET", base("sw-a"), "targettoken tt-sw-a", 200},
		{"gateway token when not enabled", "GET", base("sw-a"), "GatewayToken gw-fleet", 401},
		{"other tenant", "GET", "/other/controller/v1/sw-a", target("sw-a"), 401},
		{"a native device's ID", "GET", base("native-1"), target("native-1"), 403},
		{"unknown controller on a sub-resource", "GET", base("sw-new") + "/deploymentBase/1", target("sw-new"), 404},
		{"unknown action", "GET", base("sw-a") + "/deploymentBase/12345", target("sw-a"), 404},
		{"action id not a number", "GET", base("sw-a") + "/deploymentBase/x1", target("sw-a"), 404},
		{"another controller's action", "GET", strings.Replace(dep, "sw-a", "sw-b", 1), target("sw-b"), 404},
		{"wrong method", "POST", base("sw-a"), target("sw-a"), 405},
		{"unknown resource", "GET", base("sw-a") + "/installedBase/1", target("sw-a"), 404},
		{"malformed feedback", "POST", dep + "/feedback", target("sw-a"), 400},
		{"feedback over the body limit", "POST", dep + "/feedback", target("sw-a"), 413},
		{"trailing slash client URL", "GET", "/" + base("sw-a") + "/", target("sw-a"), 200},
		{"native API still served", "GET", "/v1/info", "", 200},
	}
	h.poll("sw-b")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = `{"status":{"execution":"finished"}}`
			}
			if c.want == http.StatusRequestEntityTooLarge {
				body = `{"status":{"execution":"proceeding","details":["` + strings.Repeat("x", ddi.MaxBodyBytes) + `"]}}`
			}
			if r := h.do(c.method, c.path, c.auth, body); r.status != c.want {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, r.status, r.body, c.want)
			}
		})
	}
	t.Run("gateway", func(t *testing.T) {
		h.auth.mu.Lock()
		h.auth.gateway = true
		h.auth.mu.Unlock()
		if r := h.do("GET", base("gw-1"), "GatewayToken gw-fleet", ""); r.status != 200 {
			t.Fatalf("gateway registration: %d %s", r.status, r.body)
		}
		if d, _ := h.store.Device(context.Background(), "gw-1"); d.KEM != ddi.KEMGateway {
			t.Fatalf("KEM %q", d.KEM)
		}
		if r := h.do("GET", base("sw-a"), "GatewayToken gw-fleet", ""); r.status != 401 {
			t.Fatalf("gateway token on a target-token device: %d", r.status)
		}
	})
	t.Run("quota", func(t *testing.T) {
		h.auth.mu.Lock()
		h.auth.max = 1
		h.auth.mu.Unlock()
		if r := h.do("GET", base("sw-c"), target("sw-c"), ""); r.status != 403 {
			t.Fatalf("over quota: %d %s", r.status, r.body)
		}
		if r := h.do("GET", base("sw-a"), target("sw-a"), ""); r.status != 200 {
			t.Fatalf("a registered device over quota: %d", r.status)
		}
	})
	t.Run("credential refuses", func(t *testing.T) {
		h.auth.mu.Lock()
		h.auth.refuse = "bootstrap token expired"
		h.auth.mu.Unlock()
		if r := h.do("GET", base("sw-new2"), target("sw-new2"), ""); r.status != 403 || !strings.Contains(string(r.body), "expired") {
			t.Fatalf("registration: %d %s", r.status, r.body)
		}
		if r := h.do("GET", base("sw-a"), target("sw-a"), ""); r.status != 200 {
			t.Fatalf("a registered device: %d %s", r.status, r.body)
		}
	})
}
