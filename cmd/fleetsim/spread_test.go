package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
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
// and a refused connection as a transport error.
func TestResponseCounts(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	hs.Close()
	if _, err := client.Get(hs.URL); err == nil {
		t.Fatal("closed server answered")
	}
	byCode, retry, errs := c.snapshot()
	if byCode["200"] != 1 || byCode["503"] != 2 || retry["503"] != 2 || len(retry) != 1 || errs != 1 {
		t.Fatalf("byCode %v retryAfter %v errors %d", byCode, retry, errs)
	}
}
