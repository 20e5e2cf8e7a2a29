package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/postgres"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/pgtest"
)

const p10Prefix = "p10-"

// p10Batch is how many devices one BulkEnroll transaction of the
// PostgreSQL seeding carries (as seed's for SQLite).
const p10Batch = 50_000

// runP10 compares the OTA server's check-in path on the PostgreSQL store
// with the SQLite store (P10), then several OTA server children on one
// PostgreSQL database with one (P10r). The PostgreSQL server is a
// throwaway one from internal/pgtest on this machine.
func runP10(ctx context.Context, c config, res *Results) error {
	if c.P10Devices <= 0 || c.P10Conns < 0 || c.Runs <= 0 {
		return fmt.Errorf("--p10-devices=%d, --p10-pool-conns=%d, --runs=%d: want positive devices and runs, conns ≥ 0", c.P10Devices, c.P10Conns, c.Runs)
	}
	dir := filepath.Join(c.WorkDir, "p10")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := makeFixture(dir, 1<<20, 1); err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	fixture := "--fixture=" + filepath.Join(dir, "fixture.json")

	db := filepath.Join(dir, "devices.db")
	sqliteSeed, err := seed(ctx, db, p10Prefix, c.P10Devices)
	if err != nil {
		return fmt.Errorf("seed SQLite: %w", err)
	}
	pg, err := pgtest.NewServer()
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()
	dsn, err := pg.CreateDatabase(ctx, "bench_p10")
	if err != nil {
		return err
	}
	pgSeed, err := seedPostgres(ctx, dsn, p10Prefix, c.P10Devices)
	if err != nil {
		return fmt.Errorf("seed PostgreSQL: %w", err)
	}
	if err := touchAllSQLite(ctx, db, p10Prefix, c.P10Devices); err != nil {
		return fmt.Errorf("touch SQLite: %w", err)
	}
	if c.P10Conns > 0 { // pgtest's DSNs have a query already
		dsn += fmt.Sprintf("&pool_max_conns=%d", c.P10Conns)
	}
	res.raw("P10 seeding %d devices: SQLite %s (bulk load), PostgreSQL %s (bulk load, touch all, VACUUM ANALYZE)", c.P10Devices, sqliteSeed.Round(100*time.Millisecond), pgSeed.Round(100*time.Millisecond))

	pgCPU := func() (time.Duration, error) { return treeCPU(pg.PID()) }
	if err := p10Stores(ctx, c, res, dir, fixture, db, dsn, pgCPU); err != nil {
		return err
	}
	// P10 stands on its own: a P10r failure is its own row.
	if err := p10Replicas(ctx, c, res, dir, fixture, dsn, pgCPU); err != nil {
		fmt.Fprintf(os.Stderr, "p10r failed: %v\n", err)
		res.add(Row{ID: "P10r", Result: "not run", Notes: "error: " + err.Error()})
	}
	return nil
}

// seedPostgres enrolls n devices into the store dsn names (migrated at
// open) through its bulk loader, p10Batch devices per transaction.
func seedPostgres(ctx context.Context, dsn, prefix string, n int) (time.Duration, error) {
	start := time.Now()
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	now := time.Now()
	devs := make([]devicestore.Device, 0, p10Batch)
	for i := 0; i < n; i += p10Batch {
		devs = devs[:0]
		for j := i; j < min(n, i+p10Batch); j++ {
			devs = append(devs, benchDevice(prefix, j, now))
		}
		k, err := s.BulkEnroll(ctx, devs)
		if err != nil {
			return 0, err
		}
		if k != len(devs) {
			return 0, fmt.Errorf("bulk enroll inserted %d of %d", k, len(devs))
		}
	}
	if err := touchAll(ctx, s, prefix, n); err != nil {
		return 0, err
	}
	// Statistics, hint bits and the visibility map of a settled
	// database, as autovacuum leaves it some time after a large load.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	return time.Since(start), nil
}

// touchAll gives every seeded device a last-seen time of now, as a fleet
// that polls has: the stores keep check-in times in a table of their own
// (device_seen), which a freshly seeded store has empty. On PostgreSQL an
// empty device_seen also gives the planner no statistics to plan its
// lookups with until autovacuum analyzes it.
func touchAll(ctx context.Context, s devicestore.Store, prefix string, n int) error {
	const batch = 10_000
	now := time.Now()
	seen := make(map[string]time.Time, batch)
	for i := 0; i < n; i += batch {
		clear(seen)
		for j := i; j < min(n, i+batch); j++ {
			seen[deviceID(prefix, j)] = now
		}
		if err := s.Touch(ctx, seen); err != nil {
			return fmt.Errorf("touch devices %d-%d: %w", i, min(n, i+batch)-1, err)
		}
	}
	return nil
}

// touchAllSQLite is touchAll on the SQLite store in file db.
func touchAllSQLite(ctx context.Context, db, prefix string, n int) error {
	s, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		return err
	}
	if err := touchAll(ctx, s, prefix, n); err != nil {
		_ = s.Close()
		return err
	}
	return s.Close()
}

// checkinBuilder makes update checks of random seeded devices against
// the children at addrs, client w always to addrs[w % len(addrs)] (a
// connection-level balancer's spread: a keep-alive connection stays on one
// server).
func checkinBuilder(prefix string, devices int, addrs ...string) func(int, *rand.Rand) (*http.Request, error) {
	urls := make([]string, len(addrs))
	for i, a := range addrs {
		urls[i] = "http://" + a + "/v1/update?version=" + runningVer + "&securityFloor=1"
	}
	return func(w int, rng *rand.Rand) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, urls[w%len(urls)], nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+deviceToken(prefix, rng.IntN(devices)))
		return req, nil
	}
}

// checkAnswers fails a run in which any check-in was not answered 200 or
// 204: errors (503 from an exhausted pool, timeouts) are cheaper than
// answers and would flatter the throughput.
func checkAnswers(what string, r loadResult) error {
	if r.Errors > 0 || r.Statuses[http.StatusOK]+r.Statuses[http.StatusNoContent] != r.Requests {
		return fmt.Errorf("%s: answers %v, %d errors", what, r.Statuses, r.Errors)
	}
	if r.Requests == 0 {
		return fmt.Errorf("%s: no request answered", what)
	}
	return nil
}

// bracketed runs base, other, base, other, …, base (runs of other, one
// more of base) and returns each run's result and the ratios of every
// other run to the mean of the two base runs around it, so a linear drift
// of the machine cancels out.
func bracketed(ctx context.Context, runs int, base, other func(i int) (loadResult, error)) (bs, xs []loadResult, ratios []float64, err error) {
	for i := 0; i <= runs; i++ {
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		b, err := base(i)
		if err != nil {
			return nil, nil, nil, err
		}
		bs = append(bs, b)
		if i == runs {
			break
		}
		o, err := other(i)
		if err != nil {
			return nil, nil, nil, err
		}
		xs = append(xs, o)
	}
	for i, o := range xs {
		ratios = append(ratios, o.RPS/((bs[i].RPS+bs[i+1].RPS)/2))
	}
	return bs, xs, ratios, nil
}

func rpsOf(rs []loadResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.RPS
	}
	return out
}

func p99Of(rs []loadResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = ms(r.P99)
	}
	return out
}

func p50Of(rs []loadResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = ms(r.P50)
	}
	return out
}

func fmtRatios(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}

// p10Stores: P10, the same check-ins (P1's driver and clients) through the
// real handler on the SQLite store and on the PostgreSQL store, runs
// alternating.
func p10Stores(ctx context.Context, c config, res *Results, dir, fixture, db, dsn string, pgCPU func() (time.Duration, error)) error {
	mem := fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB)
	sq, err := startChild(dir, "otaserver-sqlite", "--mode=ota", fixture, "--db="+db, mem)
	if err != nil {
		return err
	}
	defer sq.Stop()
	pq, err := startChild(dir, "otaserver-postgres", "--mode=ota", fixture, "--dsn="+dsn, mem)
	if err != nil {
		return err
	}
	defer pq.Stop()
	client := newClient(c.Workers)
	spec := func(addr string) loadSpec {
		return loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: checkinBuilder(p10Prefix, c.P10Devices, addr)}
	}
	// CPU per check-in, per process, collected by name.
	cpu := map[string][]float64{}
	run := func(name string, ch *child, counters map[string]func() (time.Duration, error)) func(int) (loadResult, error) {
		return func(i int) (loadResult, error) {
			r, per, err := loadWithCPU(ctx, client, spec(ch.Addr), counters)
			if err != nil {
				return r, fmt.Errorf("P10 run %d %s: %w", i+1, name, err)
			}
			for k, v := range per {
				cpu[name+" "+k] = append(cpu[name+" "+k], v)
			}
			res.raw("P10 run %d %s: %.0f req/s p50 %s p99 %s (statuses %v); CPU per check-in: %s", i+1, name, r.RPS, r.P50, r.P99, r.Statuses,
				fmtCPU(per, "server child", "PostgreSQL", "load generator"))
			return r, checkAnswers(fmt.Sprintf("P10 run %d %s", i+1, name), r)
		}
	}
	// A polling fleet has checked in before: every device once through
	// each server, so the PostgreSQL store's device cache holds the fleet
	// as SQLite's index does from the start. Not measured.
	for _, ch := range []*child{sq, pq} {
		took, err := warmFleet(ctx, client, c.Workers, p10Prefix, c.P10Devices, ch.Addr)
		if err != nil {
			return fmt.Errorf("P10 warm-up: %w", err)
		}
		res.raw("P10 warm-up: one check-in per device through %s in %s", ch.Addr, took.Round(100*time.Millisecond))
	}
	sqs, pqs, ratios, err := bracketed(ctx, c.Runs,
		run("SQLite", sq, map[string]func() (time.Duration, error){"server child": childCPU(sq), "load generator": selfCPU}),
		run("PostgreSQL", pq, map[string]func() (time.Duration, error){"server child": childCPU(pq), "PostgreSQL": pgCPU, "load generator": selfCPU}))
	if err != nil {
		return err
	}
	res.raw("P10 ratios PostgreSQL / mean of the SQLite runs around it: %s", fmtRatios(ratios))
	ratio := median(ratios)
	cpuNote := fmt.Sprintf("CPU per check-in (median of runs, from /proc): SQLite server child %.0f µs; PostgreSQL server child %.0f µs + PostgreSQL processes %.0f µs; ",
		median(cpu["SQLite server child"]), median(cpu["PostgreSQL server child"]), median(cpu["PostgreSQL PostgreSQL"]))
	pool := "pgxpool's default pool (max(4, CPUs) connections per child)"
	if c.P10Conns > 0 {
		pool = fmt.Sprintf("pool_max_conns=%d per child", c.P10Conns)
	}
	res.add(Row{ID: "P10", Measure: fmt.Sprintf("P1's update checks on the PostgreSQL store vs the SQLite store, %d enrolled devices, %d keep-alive clients (closed loop)", c.P10Devices, c.Workers),
		Figure:   fmt.Sprintf("PostgreSQL: %.0f req/s, p50 %.2f ms, p99 %.2f ms", median(rpsOf(pqs)), median(p50Of(pqs)), median(p99Of(pqs))),
		Baseline: fmt.Sprintf("SQLite (device index on): %.0f req/s, p50 %.2f ms, p99 %.2f ms", median(rpsOf(sqs)), median(p50Of(sqs)), median(p99Of(sqs))),
		Ratio:    fmt.Sprintf("%.2f", ratio), Target: "ratio ≥ 0.5", Result: passIf(ratio >= 0.5),
		Command: p10Command(c),
		Notes: cpuNote + "the same handler, fixture, static cutoffs and load driver as P1, one server child per store, both up throughout; " +
			fmt.Sprintf("runs alternate SQLite, PostgreSQL, SQLite, … (%d PostgreSQL run(s), one more SQLite run), ratio = median over PostgreSQL runs of its req/s over the mean of the two SQLite runs around it; ", c.Runs) +
			"SQLite answers device lookups from its in-memory index, PostgreSQL reads the device by token hash and its records from the database on every check-in (two queries, " + pool + ") and writes last-seen times once a second as SQLite does; " +
			"PostgreSQL 15 is internal/pgtest's throwaway server on this machine (unix socket, fsync off, shared_buffers 32MB), sharing the two cores with the server children and the load generator; " +
			"seeded with postgres.Store.BulkEnroll (COPY into a staging table, one INSERT … SELECT per 50,000 devices); every device then touched once in both stores (a polling fleet's last-seen rows) and PostgreSQL vacuumed and analyzed; before the runs, one check-in per device through each server, unmeasured (a polling fleet's steady state: the PostgreSQL store's device cache holds the fleet, as SQLite's index does from the start)"})

	if c.Profile > 0 {
		prof := filepath.Join(dir, "p10-postgres-cpu.pprof")
		if err := profileDuring(ctx, client, pq, spec(pq.Addr), c.Profile, prof); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		res.Profiles = append(res.Profiles, Profile{Name: "P10 update checks on PostgreSQL, CPU (server child; the PostgreSQL backends are not in it)", File: prof, Top: pprofTop(prof)})
	}
	return nil
}

// p10Replicas: P10r, c.P10Servers OTA server children on the PostgreSQL
// database, each with the store-backed cutoffs replicas run with
// --leader-elect, the clients spread over them, against one of them alone.
func p10Replicas(ctx context.Context, c config, res *Results, dir, fixture, dsn string, pgCPU func() (time.Duration, error)) error {
	if c.P10Servers < 2 {
		return fmt.Errorf("--p10-servers=%d: want at least 2", c.P10Servers)
	}
	fx, err := loadFixture(strings.TrimPrefix(fixture, "--fixture="))
	if err != nil {
		return err
	}
	// What the leader's reporter stores after assigning waves; the
	// children read the cutoffs from it.
	if err := putCutoffs(ctx, dsn, fx); err != nil {
		return err
	}
	mem := fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB)
	var kids []*child
	defer func() {
		for _, k := range kids {
			_ = k.Stop()
		}
	}()
	var addrs []string
	for i := range c.P10Servers {
		k, err := startChild(dir, fmt.Sprintf("otaserver-replica-%d", i+1), "--mode=ota", fixture, "--dsn="+dsn, "--store-cutoffs", mem)
		if err != nil {
			return err
		}
		kids = append(kids, k)
		addrs = append(addrs, k.Addr)
	}
	client := newClient(c.Workers)
	counters := map[string]func() (time.Duration, error){"PostgreSQL": pgCPU, "load generator": selfCPU,
		"server children": func() (time.Duration, error) {
			var total time.Duration
			for _, k := range kids {
				d, err := childCPU(k)()
				if err != nil {
					return 0, err
				}
				total += d
			}
			return total, nil
		}}
	cpu := map[string][]float64{}
	run := func(name string, addrs []string) func(int) (loadResult, error) {
		return func(i int) (loadResult, error) {
			r, per, err := loadWithCPU(ctx, client, loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration,
				Build: checkinBuilder(p10Prefix, c.P10Devices, addrs...)}, counters)
			if err != nil {
				return r, fmt.Errorf("P10r run %d %s: %w", i+1, name, err)
			}
			cpu[name] = append(cpu[name], per["server children"]+per["PostgreSQL"])
			res.raw("P10r run %d %s: %.0f req/s p50 %s p99 %s (statuses %v); CPU per check-in: %s", i+1, name, r.RPS, r.P50, r.P99, r.Statuses,
				fmtCPU(per, "server children", "PostgreSQL", "load generator"))
			if err := checkAnswers(fmt.Sprintf("P10r run %d %s", i+1, name), r); err != nil {
				return r, err
			}
			if r.Statuses[http.StatusOK] == 0 {
				return r, fmt.Errorf("P10r run %d %s: no offer answered: the cutoffs were not read from the store", i+1, name)
			}
			return r, nil
		}
	}
	oneName, manyName := "1 server", fmt.Sprintf("%d servers", len(addrs))
	ones, many, ratios, err := bracketed(ctx, c.Runs, run(oneName, addrs[:1]), run(manyName, addrs))
	if err != nil {
		return err
	}
	cpuNote := fmt.Sprintf("CPU per check-in, server children + PostgreSQL (median of runs): %.0f µs with 1 server, %.0f µs with %d. ",
		median(cpu[oneName]), median(cpu[manyName]), len(addrs))
	res.raw("P10r ratios %d servers / mean of the 1-server runs around it: %s", len(addrs), fmtRatios(ratios))
	res.add(Row{ID: "P10r", Measure: fmt.Sprintf("update checks/s of %d OTA server children on one PostgreSQL database vs one child, %d enrolled devices, %d keep-alive clients in total", len(addrs), c.P10Devices, c.Workers),
		Figure:   fmt.Sprintf("%d servers: %.0f req/s in total, p50 %.2f ms, p99 %.2f ms", len(addrs), median(rpsOf(many)), median(p50Of(many)), median(p99Of(many))),
		Baseline: fmt.Sprintf("1 server: %.0f req/s, p50 %.2f ms, p99 %.2f ms", median(rpsOf(ones)), median(p50Of(ones)), median(p99Of(ones))),
		Ratio:    fmt.Sprintf("%.2f", median(ratios)), Target: "report", Result: "info",
		Command: p10Command(c),
		Notes: fmt.Sprintf("each child with the store-backed cutoffs of --leader-elect replicas (otaserver/cutoffs over the rollout state stored as the leader's reporter would), no reporter; client w talks to child w mod %d (a connection-level balancer's spread); the single-server runs use child 1 with the others idle; runs alternate 1, %d, 1, … as in P10. ", len(addrs), len(addrs)) +
			"Not a scaling figure: all children, PostgreSQL and the load generator share this machine's two cores, so more server processes add no CPU, only contention " +
			"(about 1× or below is what two cores allow); replicas scale where each has cores of its own and the database has headroom. " + cpuNote})
	return nil
}

// putCutoffs stores the fixture rollout's cutoffs as the leader's reporter
// does (devicestore.RolloutState), for children with --store-cutoffs.
func putCutoffs(ctx context.Context, dsn string, fx *Fixture) error {
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	st := devicestore.RolloutState{SelectorKey: "bench", Cutoffs: fx.Cutoffs(), UpdatedAt: time.Now()}
	if err := s.PutRolloutState(ctx, fx.RolloutUID, st); err != nil {
		return fmt.Errorf("store rollout state: %w", err)
	}
	return nil
}

func p10Command(c config) string {
	cmd := fmt.Sprintf("go run ./hack/bench --only=p10 --p10-devices=%d --clients=%d --runs=%d --duration=%s", c.P10Devices, c.Workers, c.Runs, c.Duration)
	if c.P10Conns > 0 {
		cmd += fmt.Sprintf(" --p10-pool-conns=%d", c.P10Conns)
	}
	if c.P10Servers != 3 {
		cmd += fmt.Sprintf(" --p10-servers=%d", c.P10Servers)
	}
	return cmd
}

// warmFleet sends one update check per seeded device to addr, from workers
// keep-alive clients, and fails on any answer but 200 or 204.
func warmFleet(ctx context.Context, client *http.Client, workers int, prefix string, devices int, addr string) (time.Duration, error) {
	start := time.Now()
	url := "http://" + addr + "/v1/update?version=" + runningVer + "&securityFloor=1"
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= devices {
					return nil
				}
				req, err := http.NewRequestWithContext(gctx, http.MethodGet, url, nil)
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+deviceToken(prefix, i))
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
					return fmt.Errorf("device %d: status %d", i, resp.StatusCode)
				}
			}
		})
	}
	err := g.Wait()
	return time.Since(start), err
}
