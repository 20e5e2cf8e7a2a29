package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

const p1Prefix = "dev-"

// p6ContainerMiB is the container memory limit the P1 server child runs
// under (its Go soft limit is derived from it as cmd/otaserver does).
const p6ContainerMiB = 512

// runP1 seeds the store (S0), then drives update checks with real bearer
// tokens against the OTA server child and the bare 204 child (P1), the
// same at a paced realistic rate (P1b), and reads the OTA child's peak
// RSS (P6).
func runP1(ctx context.Context, c config, res *Results) error {
	dir := filepath.Join(c.WorkDir, "p1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_, err := makeFixture(dir, 1<<20, 1)
	if err != nil {
		return err
	}
	db := filepath.Join(dir, "devices.db")
	took, err := seed(ctx, db, p1Prefix, c.Devices)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	rate := float64(c.Devices) / took.Seconds()
	res.add(Row{ID: "S0", Measure: fmt.Sprintf("seed %d devices into the SQLite store (bulk loader)", c.Devices),
		Figure: fmt.Sprintf("%s (%.0f devices/s)", took.Round(100*time.Millisecond), rate),
		Target: "minutes, not hours", Result: passIf(took < 10*time.Minute),
		Command: fmt.Sprintf("go run ./hack/bench --only=s0 --devices=%d", c.Devices),
		Notes:   "sqlite.Store.BulkEnroll, 50,000 devices per transaction, synchronous=FULL"})

	// The P1n child gets its own copy: a store is opened by one process.
	dbCopy := filepath.Join(dir, "devices-noindex.db")
	if err := copyFile(db, dbCopy); err != nil {
		return err
	}
	ota, err := startChild(dir, "otaserver", "--mode=ota", "--fixture="+filepath.Join(dir, "fixture.json"), "--db="+db,
		fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB))
	if err != nil {
		return err
	}
	defer ota.Stop()
	bare, err := startChild(dir, "bare", "--mode=bare")
	if err != nil {
		return err
	}
	defer bare.Stop()
	client := newClient(c.Workers)
	build := func(addr string) func(int, *rand.Rand) (*http.Request, error) {
		url := "http://" + addr + "/v1/update?version=" + runningVer + "&securityFloor=1"
		return func(_ int, rng *rand.Rand) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+deviceToken(p1Prefix, rng.IntN(c.Devices)))
			return req, nil
		}
	}
	spec := func(addr string) loadSpec {
		return loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: build(addr)}
	}
	var otaRPS, bareRPS, otaP50, otaP99, bareP50, bareP99 []float64
	for i := range c.Runs {
		b := runLoad(ctx, client, spec(bare.Addr))
		o := runLoad(ctx, client, spec(ota.Addr))
		if o.Errors > 0 || o.Statuses[http.StatusOK]+o.Statuses[http.StatusNoContent] != o.Requests {
			return fmt.Errorf("P1 run %d: OTA answers %v, %d errors", i+1, o.Statuses, o.Errors)
		}
		res.raw("P1 run %d: ota %.0f req/s p50 %s p99 %s (statuses %v); bare %.0f req/s p50 %s p99 %s", i+1,
			o.RPS, o.P50, o.P99, o.Statuses, b.RPS, b.P50, b.P99)
		otaRPS, bareRPS = append(otaRPS, o.RPS), append(bareRPS, b.RPS)
		otaP50, otaP99 = append(otaP50, ms(o.P50)), append(otaP99, ms(o.P99))
		bareP50, bareP99 = append(bareP50, ms(b.P50)), append(bareP99, ms(b.P99))
	}
	ratio := median(otaRPS) / median(bareRPS)
	p99 := median(otaP99)
	res.add(Row{ID: "P1", Measure: fmt.Sprintf("authenticated update checks/s, %d enrolled devices, %d keep-alive clients (closed loop)", c.Devices, c.Workers),
		Figure:   fmt.Sprintf("%.0f req/s, p50 %.2f ms, p99 %.2f ms", median(otaRPS), median(otaP50), p99),
		Baseline: fmt.Sprintf("bare net/http 204: %.0f req/s, p50 %.2f ms, p99 %.2f ms", median(bareRPS), median(bareP50), median(bareP99)),
		Ratio:    fmt.Sprintf("%.2f", ratio), Target: "ratio ≥ 0.4, p99 ≤ 10 ms", Result: passIf(ratio >= 0.4 && p99 <= 10),
		Command: fmt.Sprintf("go run ./hack/bench --only=p1 --devices=%d --clients=%d --runs=%d --duration=%s", c.Devices, c.Workers, c.Runs, c.Duration),
		Notes: "server in a child process (same handler and http.Server limits as cmd/otaserver, plain HTTP, catalog from a fixture: one rollout selecting half the fleet, wave 0 = 1% open, so ~0.5% of devices get an offer, the rest 204); " +
			"each request a random device's real bearer token; closed loop, so mean latency = clients / throughput"})

	// P1n: the same closed loop with the device index off, to show what
	// it changes (device and records read from SQLite per check-in).
	noIdx, err := startChild(dir, "otaserver-noindex", "--mode=ota", "--fixture="+filepath.Join(dir, "fixture.json"), "--db="+dbCopy,
		"--no-device-index", fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB))
	if err != nil {
		return err
	}
	var nRPS, nP99 []float64
	for i := range c.Runs {
		n := runLoad(ctx, client, spec(noIdx.Addr))
		res.raw("P1n run %d: ota without the device index %.0f req/s p50 %s p99 %s", i+1, n.RPS, n.P50, n.P99)
		nRPS, nP99 = append(nRPS, n.RPS), append(nP99, ms(n.P99))
	}
	_ = noIdx.Stop()
	res.add(Row{ID: "P1n", Measure: "P1 with the device index off (sqlite.Options.DisableDeviceIndex: device by token hash and the device's records read from SQLite on every check-in)",
		Figure:   fmt.Sprintf("%.0f req/s, p99 %.2f ms", median(nRPS), median(nP99)),
		Baseline: fmt.Sprintf("bare net/http 204 (P1 runs): %.0f req/s", median(bareRPS)),
		Ratio:    fmt.Sprintf("%.2f", median(nRPS)/median(bareRPS)), Result: "info",
		Command: fmt.Sprintf("go run ./hack/bench --only=p1 --devices=%d --clients=%d --runs=%d --duration=%s", c.Devices, c.Workers, c.Runs, c.Duration),
		Notes:   "the store as it was before the index; a copy of the seeded file (one process per database file)"})

	// P1b: the same clients, paced to what the fleet sends in production:
	// every device polling every 5 minutes.
	pacedRate := float64(c.Devices) / 300
	pace := time.Duration(float64(c.Workers) / pacedRate * float64(time.Second))
	var pp50, pp99, prps []float64
	for i := range c.Runs {
		s := spec(ota.Addr)
		s.Pace = pace
		o := runLoad(ctx, client, s)
		res.raw("P1b run %d: ota paced %.0f req/s p50 %s p99 %s", i+1, o.RPS, o.P50, o.P99)
		pp50, pp99, prps = append(pp50, ms(o.P50)), append(pp99, ms(o.P99)), append(prps, o.RPS)
	}
	res.add(Row{ID: "P1b", Measure: fmt.Sprintf("update-check latency at the fleet's real rate (%d devices polling every 5 min = %.0f req/s), %d clients", c.Devices, pacedRate, c.Workers),
		Figure: fmt.Sprintf("%.0f req/s, p50 %.2f ms, p99 %.2f ms", median(prps), median(pp50), median(pp99)),
		Target: "p99 ≤ 10 ms", Result: passIf(median(pp99) <= 10),
		Command: fmt.Sprintf("go run ./hack/bench --only=p1 --devices=%d --clients=%d", c.Devices, c.Workers)})

	rss, err := ota.PeakRSS()
	if err != nil {
		return err
	}
	res.add(Row{ID: "P6", Measure: fmt.Sprintf("OTA server peak RSS (VmHWM), %d enrolled devices, during P1/P1b load", c.Devices),
		Figure: fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), Target: "≤ 512 MiB", Result: passIf(rss <= 512<<20),
		Command: fmt.Sprintf("go run ./hack/bench --only=p6 --devices=%d", c.Devices),
		Notes:   "read from /proc/<pid>/status of the server child after all P1 runs"})

	if c.Profile > 0 {
		prof := filepath.Join(dir, "p1-cpu.pprof")
		if err := profileDuring(ctx, client, ota, spec(ota.Addr), c.Profile, prof); err != nil {
			return err
		}
		res.Profiles = append(res.Profiles, Profile{Name: "P1 update checks, CPU (server child)", File: prof, Top: pprofTop(prof)})
		alloc := filepath.Join(dir, "p1-allocs.pprof")
		if err := fetch("http://"+ota.Ops+"/debug/pprof/allocs", alloc); err == nil {
			res.Profiles = append(res.Profiles, Profile{Name: "P1 allocations (alloc_space, server child, whole run)", File: alloc, Top: pprofTop(alloc, "-sample_index=alloc_space")})
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// profileDuring fetches a CPU profile of the child while load runs
// (an extra run, not counted in the figures).
func profileDuring(ctx context.Context, client *http.Client, ch *child, spec loadSpec, d time.Duration, file string) error {
	spec.Warmup, spec.Duration = 500*time.Millisecond, d+time.Second
	done := make(chan struct{})
	go func() { runLoad(ctx, client, spec); close(done) }()
	time.Sleep(500 * time.Millisecond)
	err := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ch.Ops, int(d.Seconds())), file)
	<-done
	return err
}

func fetch(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
