// Command bench runs otaflow's performance measures (make bench): load
// drivers against the OTA server's device API over loopback, Go
// micro-benchmarks, the reporter against a real API server and a
// simulated fleet through a rollout. Every ratio is measured against a
// baseline in the same run; each figure is the median of several runs
// after a warm-up. It writes docs/benchmarks.md from the results.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// config holds every scale flag; the defaults are what make bench uses.
type config struct {
	Only       string
	WorkDir    string
	Out        string
	Devices    int
	Workers    int
	Runs       int
	Warmup     time.Duration
	Duration   time.Duration
	BlobMiB    int
	RangeKiB   int
	BlobConns  int
	P5Small    int
	P5Large    int
	P5Window   time.Duration
	P7Devices  int
	P7Timeout  time.Duration
	BinDir     string
	P8Devices  int
	P9Small    int
	P9Large    int
	P10Devices int
	P10Conns   int
	P10Servers int
	P11Devices int
	Profile    time.Duration
	ReportOnly bool
	Merge      bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.StringVar(&c.Only, "only", "s0,p1,p2,p3,p4,p5,p6,p7,p8,p9,p10,p11,p11m,p12", "comma-separated measures to run, any case (p1 also gives s0 and p6, p10 also p10r)")
	flag.StringVar(&c.WorkDir, "work-dir", "bin/bench", "scratch directory (stores, blobs, profiles, logs)")
	flag.StringVar(&c.Out, "out", "docs/benchmarks.md", "report to write")
	flag.IntVar(&c.Devices, "devices", 1_000_000, "enrolled devices for P1/P6")
	flag.IntVar(&c.Workers, "clients", 256, "concurrent keep-alive clients for P1 and P8")
	flag.IntVar(&c.Runs, "runs", 3, "runs per measure; the median is reported")
	flag.DurationVar(&c.Warmup, "warmup", 2*time.Second, "warm-up before each measured window (excluded)")
	flag.DurationVar(&c.Duration, "duration", 8*time.Second, "measured window of each load run")
	flag.IntVar(&c.BlobMiB, "blob-mib", 64, "P2 blob size")
	flag.IntVar(&c.RangeKiB, "range-kib", 1024, "P2 Range request size")
	flag.IntVar(&c.BlobConns, "blob-clients", 8, "P2 concurrent downloads")
	flag.IntVar(&c.P5Small, "p5-small", 10_000, "P5 small fleet")
	flag.IntVar(&c.P5Large, "p5-large", 100_000, "P5 large fleet")
	flag.DurationVar(&c.P5Window, "p5-window", 30*time.Second, "P5 counting window per fleet (scaled to a minute)")
	flag.IntVar(&c.P7Devices, "p7-devices", 100_000, "P7 simulated devices")
	flag.DurationVar(&c.P7Timeout, "p7-timeout", 12*time.Minute, "P7 give-up time")
	flag.StringVar(&c.BinDir, "bin-dir", "bin", "where make build put manager, otaserver and fleetsim (P7)")
	flag.IntVar(&c.P8Devices, "p8-devices", 4096, "P8 devices with an offer, reporting")
	flag.IntVar(&c.P9Small, "p9-small", 10_000, "P9 small fleet")
	flag.IntVar(&c.P9Large, "p9-large", 1_000_000, "P9 large fleet")
	flag.IntVar(&c.P10Devices, "p10-devices", 100_000, "P10/P10r enrolled devices (seeded into both SQLite and PostgreSQL)")
	flag.IntVar(&c.P10Conns, "p10-pool-conns", 0, "P10/P10r: PostgreSQL connections per server child (the DSN's pool_max_conns; 0: pgxpool's default, as a DSN without it)")
	flag.IntVar(&c.P10Servers, "p10-servers", 3, "P10r: OTA server children sharing the PostgreSQL database")
	flag.IntVar(&c.P11Devices, "p11-devices", 100_000, "P11 DDI devices (P11m Mender devices), and as many native devices, in one SQLite store")
	flag.DurationVar(&c.Profile, "profile", 6*time.Second, "CPU profile length for P1, P8, P10 and P11 (0: none)")
	flag.BoolVar(&c.ReportOnly, "report-only", false, "only rewrite the report from the saved results")
	flag.BoolVar(&c.Merge, "merge", false, "replace only the rows of the --only steps in the saved results of an earlier run (each such row says when and how it was re-measured), then rewrite the report")
	flag.Parse()

	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return err
	}
	resPath := filepath.Join(c.WorkDir, "results.json")
	res := &Results{}
	if c.ReportOnly {
		if err := readJSON(resPath, res); err != nil {
			return err
		}
		return writeReport(c.Out, res)
	}
	if c.Merge {
		if err := readJSON(resPath, res); err != nil {
			return fmt.Errorf("--merge: %w", err)
		}
		res.merging = fmt.Sprintf("Re-measured %s by a later run (%s), not in the run above. ", time.Now().UTC().Format("2006-01-02 15:04 UTC"), strings.Join(os.Args[1:], " "))
		if later := "; rows re-measured later: " + strings.Join(os.Args[1:], " "); !strings.Contains(res.Args, later) {
			res.Args += later
		}
	} else {
		res.Started = time.Now().UTC()
		res.Machine = machineInfo()
		res.Args = strings.Join(os.Args[1:], " ")
	}
	only := strings.Split(strings.ToLower(c.Only), ",")
	want := func(id string) bool { return slices.Contains(only, id) }
	steps := []struct {
		id string
		fn func(context.Context, config, *Results) error
	}{
		{"p3", runP3}, {"p4", runP4}, {"p2", runP2}, {"p8", runP8},
		{"p1", runP1}, // also S0 (seeding) and P6 (RSS under the P1 load)
		{"p5", runP5}, {"p7", runP7}, {"p9", runP9},
		{"p10", runP10},   // also P10r (replicas on the same database)
		{"p11", runP11},   // DDI base polls vs native update checks
		{"p11m", runP11m}, // Mender deployments/next polls vs native update checks
		{"p12", runP12},   // listing every device through the device API group
	}
	for _, st := range steps {
		if !want(st.id) && !(st.id == "p1" && (want("s0") || want("p6"))) && !(st.id == "p10" && want("p10r")) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "== %s\n", strings.ToUpper(st.id))
		if err := st.fn(ctx, c, res); err != nil {
			fmt.Fprintf(os.Stderr, "%s failed: %v\n", st.id, err)
			res.add(Row{ID: strings.ToUpper(st.id), Result: "not run", Notes: "error: " + err.Error()})
		}
		fmt.Fprintf(os.Stderr, "   %s took %s\n", st.id, time.Since(t0).Round(time.Second))
		_ = writeJSON(resPath, res)
	}
	if !c.Merge {
		res.Elapsed = time.Since(res.Started).Round(time.Second).String()
		res.GOMAXPROCS = runtime.GOMAXPROCS(0)
	}
	if err := writeJSON(resPath, res); err != nil {
		return err
	}
	return writeReport(c.Out, res)
}
