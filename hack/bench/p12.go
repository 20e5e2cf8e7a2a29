package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/otaserver/deviceapi"
)

// p12Namespace is the serve child's cluster namespace: the seeded devices
// have no tenant, so the device API shows them there.
const p12Namespace = "otaflow-system"

// p12PageSize is kubectl's default --chunk-size.
const p12PageSize = 500

// deviceListHandler answers GET /devices?limit=&continue= with a page of
// the device API group's list, JSON-encoded as the API server encodes it.
func deviceListHandler(cfg deviceapi.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.ParseInt(r.URL.Query().Get("limit"), 10, 64)
		l, err := deviceapi.ListPage(r.Context(), cfg, p12Namespace, &metainternalversion.ListOptions{Limit: limit, Continue: r.URL.Query().Get("continue")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l)
	})
}

// runP12 walks every device of a million-device store page by page
// through the device API group's list, as `kubectl get devices` does
// (chunks of 500), and compares the server child's peak RSS after the walk
// with its peak RSS before it (store open, device index loaded): listing
// must hold one page, not the fleet.
func runP12(ctx context.Context, c config, res *Results) error {
	n := c.Devices
	dir := filepath.Join(c.WorkDir, "p12")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 1<<20, 1)
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	if err := writeJSON(filepath.Join(dir, "fixture.json"), fx); err != nil {
		return err
	}
	db := filepath.Join(dir, "devices.db")
	took, err := seed(ctx, db, "p12-", n)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	res.raw("P12 seeding %d devices (bulk load): %s", n, took.Round(100*time.Millisecond))
	ch, err := startChild(dir, "otaserver-devices", "--mode=ota", "--fixture="+filepath.Join(dir, "fixture.json"), "--db="+db,
		fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB), "--device-list")
	if err != nil {
		return err
	}
	defer ch.Stop()
	// Settle: the index is loaded before "ready"; a moment for the GC.
	time.Sleep(2 * time.Second)
	idleBytes, err := ch.PeakRSS()
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Minute}
	var listed, pages int
	var slowest time.Duration
	cont := ""
	start := time.Now()
	for {
		u := fmt.Sprintf("http://%s/devices?limit=%d", ch.Ops, p12PageSize)
		if cont != "" {
			u += "&continue=" + url.QueryEscape(cont)
		}
		t0 := time.Now()
		resp, err := client.Get(u)
		if err != nil {
			return fmt.Errorf("P12 page %d: %w", pages+1, err)
		}
		var l devicesv1.DeviceList
		err = json.NewDecoder(resp.Body).Decode(&l)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("P12 page %d: status %d: %v", pages+1, resp.StatusCode, err)
		}
		slowest = max(slowest, time.Since(t0))
		pages++
		listed += len(l.Items)
		if cont = l.Continue; cont == "" {
			break
		}
	}
	walk := time.Since(start)
	peakBytes, err := ch.PeakRSS()
	if err != nil {
		return err
	}
	if listed != n {
		return fmt.Errorf("P12: listed %d devices, want %d", listed, n)
	}
	budget := int64(p6ContainerMiB)
	peak, idle := peakBytes>>20, idleBytes>>20
	ratio := float64(peakBytes) / float64(idleBytes)
	res.raw("P12 walk: %d devices in %d pages of %d in %s (%.0f devices/s, slowest page %s); peak RSS before %d MiB, after %d MiB",
		listed, pages, p12PageSize, walk.Round(100*time.Millisecond), float64(listed)/walk.Seconds(), slowest.Round(time.Millisecond), idle, peak)
	res.add(Row{ID: "P12", Measure: fmt.Sprintf("OTA server peak RSS listing all %d devices through the device API group (kubectl get devices: pages of %d, limit/continue)", n, p12PageSize),
		Figure:   fmt.Sprintf("%d MiB after the walk (%d pages in %s, slowest page %s)", peak, pages, walk.Round(100*time.Millisecond), slowest.Round(time.Millisecond)),
		Baseline: fmt.Sprintf("%d MiB before it (store open, device index loaded)", idle),
		Ratio:    fmt.Sprintf("%.2f", ratio), Target: fmt.Sprintf("≤ %d MiB (P6's budget); ratio ≤ 1.2", budget),
		Result:  passIf(peak <= budget && ratio <= 1.2),
		Command: fmt.Sprintf("go run ./hack/bench --only=p12 --devices=%d", n),
		Notes: "the serve child with P1's store and the device API group's list handler (otaserver/deviceapi ListPage, JSON-encoded) on its ops address; " +
			"the walk goes through every page as a client follows metadata.continue; the aggregated API server's own request handling (delegated authentication, kube-apiserver's proxy) is not in this process's figure",
	})
	return nil
}
