package ddi_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/ddi"
)

// Every request of these tests and every answer is held to the contract
// of the API that serves it: the paths the DDI front takes to
// docs/ddi-openapi.yaml, the others (the native API it falls back to) to
// docs/openapi.yaml. The checkers fail the test at cleanup.

// invalidOnPurpose names the tests that send requests the contracts call
// invalid on purpose through helpers that cannot mark them one by one. The
// checkers exempt their requests only while the server refuses them (4xx);
// every answer is still validated. A new test marks each such request with
// contract.Exempt (and contract.Forward) instead.
var invalidOnPurpose = map[string]string{
	"TestAuthErrors": "missing, garbled, unknown and misplaced tokens, a tenant and controllerIds that are not registered, an action id that is not a number, a malformed feedback, a wrong method, an unknown resource",
}

// ddiPath says whether the DDI front takes a path
// (/{tenant}/controller/v1/{controllerId}[/…]), and the path as it reads
// it: repeated slashes collapsed, no trailing slash.
func ddiPath(p string) (string, bool) {
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	if len(segs) < 4 || segs[1] != "controller" || segs[2] != "v1" {
		return p, false
	}
	return "/" + strings.Join(segs, "/"), true
}

func canonicalDDIPath(p string) string {
	c, _ := ddiPath(p)
	return c
}

// checked wraps the server's handler in the two contract checkers.
func checked(t *testing.T, next http.Handler) http.Handler {
	t.Helper()
	d := contract.ForSpec(t, contract.DocPath("ddi-openapi.yaml"))
	d.BodyLimit = ddi.MaxBodyBytes
	d.Canonical = canonicalDDIPath
	native := contract.For(t)
	native.BodyLimit = otaserver.MaxBodyBytes
	test, _, _ := strings.Cut(t.Name(), "/")
	if why, ok := invalidOnPurpose[test]; ok {
		d.InvalidOnPurpose(test + ": " + why)
		native.InvalidOnPurpose(test + ": " + why)
	}
	dh, nh := d.Handler(next), native.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ddiPath(r.URL.Path); ok {
			dh.ServeHTTP(w, r)
			return
		}
		nh.ServeHTTP(w, r)
	})
}

// exchangeLog records the method, DDI path and status of each exchange.
type exchangeLog struct {
	mu   sync.Mutex
	seen []string // "GET /fleet/controller/v1/x → 200"
	next http.Handler
}

func (l *exchangeLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	l.next.ServeHTTP(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	l.mu.Lock()
	l.seen = append(l.seen, r.Method+" "+canonicalDDIPath(r.URL.Path)+" "+http.StatusText(sw.status))
	l.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// operation is one operation of the DDI contract.
type operation struct {
	method, path string
	re           *regexp.Regexp
}

func ddiOperations(t *testing.T) []operation {
	t.Helper()
	spec, err := contract.LoadOnce(contract.DocPath("ddi-openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ops []operation
	for _, p := range spec.Doc.Paths.InMatchingOrder() {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if strings.HasPrefix(s, "{") {
				segs[i] = `[^/]+`
			} else {
				segs[i] = regexp.QuoteMeta(s)
			}
		}
		re := regexp.MustCompile("^" + strings.Join(segs, "/") + "$")
		for _, m := range slices.Sorted(maps.Keys(spec.Doc.Paths.Value(p).Operations())) {
			ops = append(ops, operation{method: m, path: p, re: re})
		}
	}
	return ops
}

// TestContractOperations: the contract lists exactly the operations the
// front serves (another method is answered 405 with the contract's
// methods in Allow), and a walk through SWUpdate's and
// rauc-hawkbit-updater's sequences succeeds on every one of them, each
// exchange validated.
func TestContractOperations(t *testing.T) {
	h := newHarness(t)
	front, err := ddi.New(ddi.Config{Core: h.core, Auth: h.auth, Fallback: h.core.Handler(), PollInterval: 5 * time.Minute, ActivePollInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := &exchangeLog{next: front}
	h.srv = httptest.NewServer(checked(t, log))
	t.Cleanup(h.srv.Close)

	// Install: registration, attributes, offer, download, feedback.
	const id = "sw-0100"
	h.poll(id)
	h.identify(id, "1.0.0")
	dep := h.poll(id).Links["deploymentBase"].Href
	aid := lastSegment(dep)
	var db ddi.DeploymentBase
	h.do(http.MethodGet, dep, target(id), "").json(t, &db)
	href := db.Deployment.Chunks[0].Artifacts[0].Links["download"].Href
	h.do(http.MethodHead, href, target(id), "")
	h.do(http.MethodGet, href, target(id), "", "Range", "bytes=0-3")
	h.do(http.MethodGet, href, target(id), "")
	h.do(http.MethodPost, dep+"/feedback", target(id), rhuFeedback(aid, "downloaded", "success", "File checksum OK."))
	// Cancel: a second device, offered, then the rollout aborted.
	const other = "sw-0101"
	h.poll(other)
	h.identify(other, "1.0.0")
	h.poll(other)
	h.rollout.Spec.Abort = true
	h.rebuild()
	cancel := h.poll(other).Links["cancelAction"].Href
	if cancel == "" {
		t.Fatal("no cancelAction link after the abort")
	}
	h.do(http.MethodGet, cancel, target(other), "")
	h.do(http.MethodPost, cancel+"/feedback", target(other), swuFeedback(lastSegment(cancel), "closed", "success", "cancellation acknowledged."))

	ops := ddiOperations(t)
	log.mu.Lock()
	seen := slices.Clone(log.seen)
	log.mu.Unlock()
	for _, op := range ops {
		ok := false
		for _, s := range seen {
			method, rest, _ := strings.Cut(s, " ")
			p, status, _ := strings.Cut(rest, " ")
			if strings.EqualFold(method, op.method) && op.re.MatchString(p) && (status == "OK" || status == "Partial Content") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("%s %s: no successful exchange (saw %v)", op.method, op.path, seen)
		}
	}

	// Another method on each path: 405, Allow = the contract's methods.
	client := &http.Client{Transport: contract.Forward(nil)}
	ctx := contract.Exempt(context.Background(), "a method the path does not have")
	concrete := map[string]string{} // contract path → a real one
	for _, s := range seen {
		_, rest, _ := strings.Cut(s, " ")
		p, _, _ := strings.Cut(rest, " ")
		for _, op := range ops {
			if op.re.MatchString(p) {
				concrete[op.path] = p
			}
		}
	}
	for tmpl, p := range concrete {
		var want []string
		for _, op := range ops {
			if op.path == tmpl {
				want = append(want, strings.ToUpper(op.method))
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, h.srv.URL+p, nil)
		req.Header.Set("Authorization", target(strings.Split(p, "/")[4]))
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := strings.Split(res.Header.Get("Allow"), ", ")
		slices.Sort(got)
		slices.Sort(want)
		if res.StatusCode != http.StatusMethodNotAllowed || !slices.Equal(got, want) {
			t.Errorf("DELETE %s: %d, Allow %v; the contract has %v", tmpl, res.StatusCode, got, want)
		}
	}
	if len(concrete) != len(slices.CompactFunc(slices.Clone(ops), func(a, b operation) bool { return a.path == b.path })) {
		t.Errorf("paths exercised %v, contract operations %v", concrete, ops)
	}
}

// TestContractRefusesDrift: the DDI contract is strict where the clients
// are: answers and requests that SWUpdate or rauc-hawkbit-updater would
// choke on, or that the front never sends, are violations; the clients'
// own bodies are not.
func TestContractRefusesDrift(t *testing.T) {
	spec, err := contract.LoadOnce(contract.DocPath("ddi-openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		b    = "/fleet/controller/v1/sw-1"
		link = "http://ota.test" + b
		tok  = "TargetToken tt-sw-1"
		hash = `"sha1":"2fd4e1c67a2d28fced849ee1bb76e7391b93eb12","md5":"9e107d9d372bb6826bd81d3542a419d6","sha256":"d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"`
	)
	dep := func(id, update, href string) string {
		return `{"id":` + id + `,"deployment":{"download":"attempt","update":"` + update + `","chunks":[{"part":"os","version":"2.0.0","name":"fw-2","artifacts":[{"filename":"fw.swu","size":3,"hashes":{` + hash + `},"_links":{"download":{"href":"` + href + `"},"download-http":{"href":"` + href + `"}}}]}]}}`
	}
	art := link + "/softwaremodules/7/artifacts/fw.swu"
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		header                         map[string]string
		answer                         string
		want                           string // "" when valid
		exempt                         bool   // invalid on purpose
	}{
		{name: "root", method: "GET", path: b, auth: tok, status: 200, answer: `{"config":{"polling":{"sleep":"00:05:00"}},"_links":{"configData":{"href":"` + link + `/configData"}}}`},
		{name: "root, sleep in seconds", method: "GET", path: b, auth: tok, status: 200, answer: `{"config":{"polling":{"sleep":"300"}},"_links":{}}`, want: "sleep"},
		{name: "root without config", method: "GET", path: b, auth: tok, status: 200, answer: `{"_links":{}}`, want: "config"},
		{name: "root, deployment and cancel", method: "GET", path: b, auth: tok, status: 200,
			answer: `{"config":{"polling":{"sleep":"00:00:30"}},"_links":{"deploymentBase":{"href":"` + link + `/deploymentBase/7"},"cancelAction":{"href":"` + link + `/cancelAction/7"}}}`, want: "_links"},
		{name: "cancel link with a query", method: "GET", path: b, auth: tok, status: 200,
			answer: `{"config":{"polling":{"sleep":"00:00:30"}},"_links":{"cancelAction":{"href":"` + link + `/cancelAction/7?c=1"}}}`, want: "cancelAction"},
		{name: "installedBase link", method: "GET", path: b, auth: tok, status: 200,
			answer: `{"config":{"polling":{"sleep":"00:00:30"}},"_links":{"installedBase":{"href":"` + link + `/installedBase/7"}}}`, want: "installedBase"},
		{name: "deployment", method: "GET", path: b + "/deploymentBase/7", auth: tok, status: 200, answer: dep(`"7"`, "attempt", art)},
		{name: "deployment, numeric id", method: "GET", path: b + "/deploymentBase/7", auth: tok, status: 200, answer: dep(`7`, "attempt", art), want: "id"},
		{name: "deployment, skip", method: "GET", path: b + "/deploymentBase/7", auth: tok, status: 200, answer: dep(`"7"`, "skip", art), want: "update"},
		{name: "deployment, download link elsewhere", method: "GET", path: b + "/deploymentBase/7", auth: tok, status: 200, answer: dep(`"7"`, "attempt", "https://s3.test/bucket/fw.swu"), want: "href"},
		{name: "cancel", method: "GET", path: b + "/cancelAction/7", auth: tok, status: 200, answer: `{"id":"7","cancelAction":{"stopId":"7"}}`},
		{name: "cancel, id too large for an int32", method: "GET", path: b + "/cancelAction/7", auth: tok, status: 200, answer: `{"id":"21474836470","cancelAction":{"stopId":"7"}}`, want: "id"},
		{name: "SWUpdate feedback", method: "POST", path: b + "/deploymentBase/7/feedback", auth: tok, status: 200,
			body: swuFeedback("7", "proceeding", "none", "Installing Update Chunk Artifacts.")},
		{name: "rauc-hawkbit-updater feedback", method: "POST", path: b + "/deploymentBase/7/feedback", auth: "targettoken tt-sw-1", status: 200,
			body: rhuFeedback("7", "closed", "success", "Software bundle installed successfully.")},
		{name: "hawkBit feedback", method: "POST", path: b + "/cancelAction/7/feedback", auth: "GatewayToken gw-fleet", status: 200,
			body: `{"timestamp":1764664200000,"status":{"execution":"canceled","result":{"finished":"success"},"code":0}}`},
		{name: "feedback answered 204", method: "POST", path: b + "/deploymentBase/7/feedback", auth: tok, status: 204,
			body: rhuFeedback("7", "closed", "success", "ok"), want: "status 204"},
		{name: "unknown execution", method: "POST", path: b + "/deploymentBase/7/feedback", auth: tok, status: 200,
			body: `{"status":{"execution":"finished","result":{"finished":"success"}}}`, want: "execution"},
		{name: "bearer token", method: "POST", path: b + "/deploymentBase/7/feedback", auth: "Bearer tt-sw-1", status: 200,
			body: rhuFeedback("7", "closed", "success", "ok"), want: "Authorization"},
		{name: "SWUpdate attributes", method: "PUT", path: b + "/configData", auth: tok, status: 200,
			body: `{ "id": "", "time": "20261202T083000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "" ] }, "data" : {  "version": "1.0.0" } }`},
		{name: "attributes not strings", method: "PUT", path: b + "/configData", auth: tok, status: 200, body: `{"data":{"version":1}}`, want: "version"},
		{name: "error body", method: "GET", path: b + "/deploymentBase/8", auth: tok, status: 404, answer: `{"errorCode":"ddi.unknownAction","message":"no such action"}`},
		{name: "native error body", method: "GET", path: b + "/deploymentBase/8", auth: tok, status: 404, answer: `{"code":"not_found","message":"no such action"}`, want: "errorCode"},
		{name: "429 without Retry-After", method: "GET", path: b, auth: tok, status: 429, answer: `{"errorCode":"ddi.rateLimited","message":"slow down"}`, want: "Retry-After"},
		{name: "503", method: "GET", path: b, auth: tok, status: 503, header: map[string]string{"Retry-After": "5"}, answer: `{"errorCode":"ddi.unavailable","message":"later"}`},
		{name: "artifact", method: "GET", path: b + "/softwaremodules/7/artifacts/fw.swu", auth: tok, status: 206,
			header: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": "bytes 0-3/10", "ETag": `"2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"`, "Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}, answer: "abcd"},
		{name: "artifact, SHA-256 ETag", method: "GET", path: b + "/softwaremodules/7/artifacts/fw.swu", auth: tok, status: 200,
			header: map[string]string{"Content-Type": "application/octet-stream", "ETag": `"d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"`, "Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}, answer: "abcd", want: "ETag"},
		{name: "unknown resource", method: "GET", path: b + "/installedBase/7", auth: tok, status: 404, answer: `{"errorCode":"ddi.notFound","message":"no such DDI resource"}`, exempt: true},
		{name: "wrong method", method: "DELETE", path: b, auth: tok, status: 405, header: map[string]string{"Allow": "GET"}, answer: `{"errorCode":"ddi.notFound","message":"method not allowed"}`, want: "errorCode", exempt: true},
		{name: "unknown resource answered 200", method: "GET", path: b + "/installedBase/7", auth: tok, status: 200, answer: `{}`, want: "did not refuse", exempt: true},
		{name: "trailing slash", method: "GET", path: "/" + b + "/", auth: tok, status: 200, answer: `{"config":{"polling":{"sleep":"00:05:00"}},"_links":{}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := contract.New(spec)
			ch.Canonical = canonicalDDIPath
			fake := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if c.answer != "" {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Cache-Control", "no-store")
				}
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.answer))
			})
			var body *strings.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(c.method, c.path, body)
			if c.exempt {
				req = req.WithContext(contract.Exempt(req.Context(), c.name))
			}
			req.Header.Set("Authorization", c.auth)
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			ch.Handler(fake).ServeHTTP(httptest.NewRecorder(), req)
			v := ch.Violations()
			if ch.Exchanges() != 1 {
				t.Fatalf("%d exchanges checked", ch.Exchanges())
			}
			switch {
			case c.want == "" && len(v) > 0:
				t.Fatalf("valid exchange refused: %s", contract.Report(v, "docs/ddi-openapi.yaml"))
			case c.want != "" && !strings.Contains(contract.Report(v, ""), c.want):
				t.Fatalf("want a violation naming %q, got: %s", c.want, contract.Report(v, ""))
			}
		})
	}
}
