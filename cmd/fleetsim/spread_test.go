package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFleetsimSpreadsOverServers: with a comma-separated --server list,
// device i talks to URL i mod n only, and the summary counts the answers.
// Two counting proxies stand for two replicas of one server.
func TestFleetsimSpreadsOverServers(t *testing.T) {
	target, assignPEM, vendorPEM := testServer(t, false)
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	// Each proxy counts the requests it forwards.
	var requests [2]atomic.Int64
	var urls [2]string
	for i := range urls {
		proxy := httputil.NewSingleHostReverseProxy(u)
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			requests[i].Add(1)
			proxy.ServeHTTP(w, req)
		}))
		t.Cleanup(hs.Close)
		urls[i] = hs.URL
	}
	dir := t.TempDir()
	ak, vk, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "v.pem"), filepath.Join(dir, "summary.json")
	_ = os.WriteFile(ak, assignPEM, 0o600)
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--server", urls[0] + "," + urls[1], "--bootstrap-token", bootTok,
		"--assignment-key", ak, "--vendor-key", vk, "--devices", "4", "--poll-interval", "100ms",
		"--duration", "2s", "--progress", "none", "--summary-json", out,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for i := range requests {
		if requests[i].Load() == 0 {
			t.Fatalf("replica %d got no request", i)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.ByVersion["2.0.0"] != 4 {
		t.Fatalf("byVersion %v", sum.ByVersion)
	}
	if sum.Responses["200"] == 0 {
		t.Fatalf("responses %v", sum.Responses)
	}
	if !strings.Contains(stdout.String(), "responses") {
		t.Fatalf("table lacks responses:\n%s", stdout.String())
	}
}

// TestResponseCounts: answers are counted by code, Retry-After separately,
// and a refused connection or a request that timed out without an answer
// as a transport error; a request canceled by the fleet stopping is not.
func TestResponseCounts(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if r.URL.Path == "/down" {
			w.Header().Set("Retry-After", "15")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	c := newResponseCounts()
	client := &http.Client{Transport: c.counting(http.DefaultTransport)}
	for _, p := range []string{"/", "/down", "/down"} {
		resp, err := client.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	slow := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/slow", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("slow answer arrived")
		}
	}
	tctx, cancelT := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelT()
	slow(tctx) // the agent's request timeout: no answer
	cctx, cancelC := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancelC)
	slow(cctx) // a device gone, or the fleet stopping on a signal
	fleet, stopFleet := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stopFleet()
	c.fleet = fleet
	slow(fleet) // the fleet stopping after --duration
	c.fleet = nil
	hs.Close()
	if _, err := client.Get(hs.URL); err == nil {
		t.Fatal("closed server answered")
	}
	byCode, retry, errs := c.snapshot()
	if byCode["200"] != 1 || byCode["503"] != 2 || retry["503"] != 2 || len(retry) != 1 || errs != 2 {
		t.Fatalf("byCode %v retryAfter %v errors %d", byCode, retry, errs)
	}
}

// TestFleetsimConcurrencyBoundsConnections: however many devices are due
// at once, at most --concurrency of them talk to a server at a time, each
// over one connection (two while a download reports progress), and the
// whole fleet still updates. (A goroutine and a connection per device
// would open one per device here.)
func TestFleetsimConcurrencyBoundsConnections(t *testing.T) {
	target, assignPEM, vendorPEM := testServer(t, false)
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var inFlight, maxInFlight, open, maxOpen, dialed atomic.Int64
	raise := func(m *atomic.Int64, v int64) {
		for old := m.Load(); v > old && !m.CompareAndSwap(old, v); old = m.Load() {
		}
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raise(&maxInFlight, inFlight.Add(1))
		defer inFlight.Add(-1)
		proxy.ServeHTTP(w, req)
	}))
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			dialed.Add(1)
			raise(&maxOpen, open.Add(1))
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	hs.Start()
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	ak, vk, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "v.pem"), filepath.Join(dir, "summary.json")
	_ = os.WriteFile(ak, assignPEM, 0o600)
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	const devices, concurrency = 24, 3
	var stdout, stderr bytes.Buffer
	code := run([]string{"--server", hs.URL, "--bootstrap-token", bootTok,
		"--assignment-key", ak, "--vendor-key", vk, "--devices", strconv.Itoa(devices), "--concurrency", strconv.Itoa(concurrency),
		"--poll-interval", "100ms", "--duration", "8s", "--progress", "none", "--summary-json", out,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if m := maxInFlight.Load(); m > 2*concurrency {
		t.Fatalf("%d requests in flight at once, want at most %d", m, 2*concurrency)
	}
	if m := maxOpen.Load(); m > 2*concurrency {
		t.Fatalf("%d connections open at once (%d dialed), want at most %d", m, dialed.Load(), 2*concurrency)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.ByVersion["2.0.0"] != devices || sum.TransportErrors != 0 {
		t.Fatalf("byVersion %v, transport errors %d (max in flight %d)\n%s", sum.ByVersion, sum.TransportErrors, maxInFlight.Load(), stdout.String())
	}
}
