package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
)

func TestReadyChecks(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	for _, tc := range []struct {
		name   string
		checks readyChecks
		code   int
		body   []string
	}{
		{"all pass", readyChecks{"store": ok, "catalog": ok}, 200, []string{"[+]catalog ok", "[+]store ok"}},
		{"store down", readyChecks{"store": down, "catalog": ok}, 503, []string{"[+]catalog ok", "[-]store failed"}},
		{"catalog not synced", readyChecks{"store": ok, "catalog": down}, 503, []string{"[-]catalog failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.checks.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d", rec.Code, tc.code)
			}
			for _, want := range tc.body {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("body %q lacks %q", rec.Body.String(), want)
				}
			}
			if strings.Contains(rec.Body.String(), "refused") {
				t.Errorf("unauthenticated probe answer shows the error: %q", rec.Body.String())
			}
		})
	}
}

// startOps serves opsServers on free ports and returns their addresses.
func startOps(t *testing.T, o options, ready readyChecks) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	// An API server nobody listens on: requests without a token must be
	// refused without asking it.
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	servers, err := opsServers(gctx, g, o, cfg, prometheus.NewRegistry(), ready)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range servers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		g.Go(func() error {
			var err error
			if s.TLSConfig != nil {
				err = s.ServeTLS(ln, "", "")
			} else {
				err = s.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
	}
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Close()
		}
		cancel()
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	})
	return addrs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test endpoint
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOpsServers(t *testing.T) {
	ready := readyChecks{"store": func(context.Context) error { return nil }}
	t.Run("secure metrics, separate probe port", func(t *testing.T) {
		addrs := startOps(t, options{metricsSecure: true, probeAddr: "127.0.0.1:0"}, ready)
		if len(addrs) != 2 {
			t.Fatalf("%d servers, want metrics and probes", len(addrs))
		}
		if code, _ := get(t, "https://"+addrs[0]+"/metrics"); code != http.StatusUnauthorized {
			t.Errorf("/metrics without a token: %d, want 401", code)
		}
		if code, _ := get(t, "https://"+addrs[0]+"/readyz"); code != http.StatusNotFound {
			t.Errorf("/readyz on the metrics port: %d, want 404 (probes have their own port)", code)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, "http://"+addrs[1]+p); code != 200 {
				t.Errorf("%s without a token: %d %s, want 200 (kubelet sends no token)", p, code, body)
			}
		}
	})
	t.Run("secure metrics, probes on the same port", func(t *testing.T) {
		addrs := startOps(t, options{metricsSecure: true}, ready)
		if code, _ := get(t, "https://"+addrs[0]+"/metrics"); code != http.StatusUnauthorized {
			t.Errorf("/metrics without a token: %d, want 401", code)
		}
		if code, _ := get(t, "https://"+addrs[0]+"/readyz"); code != 200 {
			t.Errorf("/readyz without a token: %d, want 200", code)
		}
	})
	t.Run("plain HTTP for local use", func(t *testing.T) {
		addrs := startOps(t, options{metricsSecure: false}, ready)
		if code, _ := get(t, "http://"+addrs[0]+"/metrics"); code != 200 {
			t.Errorf("/metrics: %d", code)
		}
		if code, _ := get(t, "http://"+addrs[0]+"/readyz"); code != 200 {
			t.Errorf("/readyz: %d", code)
		}
	})
}
