package main

// The scaled scenario (--scaled): the replicated layout of
// docs/deployment.md ("Replicated layouts") on one machine — three OTA
// server replicas with the reporter leader-elected (Lease
// otaflow-otaserver-reporter), one PostgreSQL device store, one S3 blob
// store (versitygw), the manager leader-elected with the same blob store,
// devices spread over the replicas. Each run SIGKILLs a replica that is not
// the reporter leader, then the leader (kept down until another replica
// holds the Lease), then stops PostgreSQL for --db-outage.

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to read the PostgreSQL store
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storeopen"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/pgtest"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/internal/s3test"
	"github.com/otaflow/otaflow/otaserver/reporter"
)

type scaledOptions struct {
	enabled         bool
	replicas        int
	runs            int
	pause           time.Duration
	dbOutage        time.Duration
	takeoverTimeout time.Duration
	offersPerMinute int
}

func (s *scaledOptions) bindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&s.enabled, "scaled", false, "Run the replicated scenario instead of the default ones: OTA server replicas on one PostgreSQL and one S3 server; a non-leader and the reporter leader are SIGKILLed and PostgreSQL is stopped mid-rollout.")
	fs.IntVar(&s.replicas, "replicas", 3, "With --scaled: OTA server replicas.")
	fs.IntVar(&s.runs, "scaled-runs", 2, "With --scaled: rollouts (each with every disruption).")
	fs.DurationVar(&s.pause, "replica-down", 3*time.Second, "With --scaled: how long the killed non-leader replica stays down.")
	fs.DurationVar(&s.dbOutage, "db-outage", 20*time.Second, "With --scaled: how long PostgreSQL is stopped.")
	fs.DurationVar(&s.takeoverTimeout, "takeover-timeout", time.Minute, "With --scaled: how long another replica may take to hold the reporter Lease after the leader's SIGKILL.")
	fs.IntVar(&s.offersPerMinute, "offers-per-minute", 40, "With --scaled: the rollouts' maxOffersPerMinute (enforced per replica), so every disruption lands mid-rollout; 0: no limit.")
}

// scaledFigures are what one scaled run measured.
type scaledFigures struct {
	replicaKilled, leaderKilled, newLeader string
	takeover                               time.Duration // leader SIGKILL to another replica holding the Lease
	outage                                 time.Duration // PostgreSQL stopped
	outageDone                             bool
	unavailableRetry                       int   // 503 with Retry-After the devices got while PostgreSQL was down
	unavailableOther                       int   // 503 without Retry-After, same window
	noAnswerOutage                         int   // device requests without an answer, same window
	server503                              int64 // 503s the replicas counted (/metrics), same window
	readyInOutage                          int   // replicas ready halfway through the outage
	noAnswer                               int   // device requests without an answer, whole run (replicas down)
}

// runScaled starts PostgreSQL, S3 and the stack with several OTA server
// replicas, and runs the scaled scenario o.scaled.runs times.
func runScaled(ctx context.Context, o options) (bool, error) {
	if o.scaled.replicas < 2 {
		return false, errors.New("--replicas must be at least 2 (one leader, one to kill besides)")
	}
	dir, err := os.MkdirTemp("", "otaflow-reliability-")
	if err != nil {
		return false, err
	}
	// PostgreSQL runs as nobody when we are root (pgtest): it must reach
	// its directory inside this one. Nothing here is secret to other local
	// users beyond the 0600 files (kubeconfig, keys), which stay private.
	if err := os.Chmod(dir, 0o711); err != nil {
		return false, err
	}
	ok := false
	defer func() {
		if !ok || o.keep {
			fmt.Printf("logs, summaries and the PostgreSQL log kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	say("starting PostgreSQL (pgtest) and an S3 server (versitygw)")
	pg, err := pgtest.NewServerIn(dir)
	if err != nil {
		return false, err
	}
	defer pg.Stop()
	// pg.Stop removes its directory: keep the log with the others.
	defer func() {
		if b, err := os.ReadFile(pg.LogPath()); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "postgres.log"), b, 0o644)
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dsn, err := pg.CreateDatabase(cctx, "otaflow")
	if err != nil {
		return false, err
	}
	s3, err := s3test.StartLocal(filepath.Join(dir, "s3"))
	if err != nil {
		return false, err
	}
	defer func() { _ = s3.Stop() }()
	const bucket = "otaflow-blobs"
	if err := s3.CreateBucket(cctx, bucket); err != nil {
		return false, err
	}

	say("starting kube-apiserver and etcd, the manager (leader election on, blobs in S3) and %d OTA server replicas (--leader-elect, PostgreSQL, S3)", o.scaled.replicas)
	stack, err := harness.StartStack(ctx, harness.StackOptions{
		Dir: dir, BinDir: o.binDir, LeaderElect: true,
		OTAServers: o.scaled.replicas, StoreDSN: dsn, BlobStore: s3.URL(bucket, ""), Env: s3.Env(),
	})
	if err != nil {
		return false, err
	}
	defer stack.Stop()
	for _, r := range stack.Replicas {
		say("  %s: devices %s, metrics %s", r.Identity, r.URL, r.MetricsURL())
	}
	sup := newSupervisor(stack)
	supCtx, stopSup := context.WithCancel(ctx)
	supDone := make(chan struct{})
	go func() { sup.run(supCtx); close(supDone) }()
	defer func() { stopSup(); <-supDone }()

	rng := rand.New(rand.NewPCG(o.seed, o.seed*0x9e3779b97f4a7c15+1))
	var results []*result
	for i := range o.scaled.runs {
		r, err := runOne(ctx, stack, o, i+1, "scaled", rng, scaledDisrupt(stack, sup, pg, o.scaled))
		if r != nil {
			results = append(results, r)
		}
		if err != nil {
			return false, err
		}
	}
	ok = printTable(os.Stdout, results, o.markdown)
	printScaled(os.Stdout, results, o.markdown)
	if n := sup.unexpected(); n > 0 {
		fmt.Printf("\nprocesses that exited on their own and were restarted (as the kubelet would): %s\n", sup.report())
	}
	return ok, nil
}

// scaledDisrupt kills a non-leader replica, then the reporter leader, then
// stops PostgreSQL, each after a short random delay, while the rollout runs.
func scaledDisrupt(stack *harness.Stack, sup *supervisor, pg *pgtest.Server, so scaledOptions) func(context.Context, *rand.Rand, *result, func() bool) error {
	return func(ctx context.Context, rng *rand.Rand, r *result, done func() bool) error {
		f := &r.scaled
		landed := func(what string) bool {
			if done() {
				r.problem("the rollout finished before the %s", what)
				return false
			}
			return true
		}
		c := stack.CP.Client
		ns := stack.Opts.Namespace

		// 1. A replica that only serves devices.
		if err := sleep(ctx, jitter(rng, 2*time.Second, 4*time.Second)); err != nil {
			return err
		}
		if !landed("non-leader kill") {
			return nil
		}
		leader, err := leaseHolder(ctx, c, ns)
		if err != nil {
			return err
		}
		var others []*harness.Replica
		for _, rep := range stack.Replicas {
			if rep.Identity != leader {
				others = append(others, rep)
			}
		}
		victim := others[rng.IntN(len(others))]
		if err := sup.kill(ctx, victim.Process, so.pause, victim.Wait); err != nil {
			return err
		}
		r.kills++
		f.replicaKilled = victim.Identity
		say("  SIGKILL %s (not the leader; %s leads), down %s, restarted", victim.Identity, leader, so.pause)

		// 2. The reporter leader, kept down until another replica holds
		// the Lease: restarted at once under the same identity it would
		// take the Lease back immediately, and no failover would happen.
		if err := sleep(ctx, jitter(rng, 2*time.Second, 4*time.Second)); err != nil {
			return err
		}
		if !landed("leader kill") {
			return nil
		}
		if leader, err = leaseHolder(ctx, c, ns); err != nil {
			return err
		}
		var lr *harness.Replica
		for _, rep := range stack.Replicas {
			if rep.Identity == leader {
				lr = rep
			}
		}
		if lr == nil {
			return fmt.Errorf("the reporter Lease is held by %q, not one of the replicas", leader)
		}
		say("  SIGKILL %s (the reporter leader); waiting for another replica to take the Lease", leader)
		err = sup.killWhile(ctx, lr.Process, func(ctx context.Context) error {
			t0 := time.Now()
			wctx, cancel := context.WithTimeout(ctx, so.takeoverTimeout)
			defer cancel()
			h, err := waitLeaseMoves(wctx, c, ns, leader)
			if err != nil {
				return fmt.Errorf("no replica took the reporter Lease after %s was killed: %w", leader, err)
			}
			f.takeover, f.newLeader = time.Since(t0), h
			return nil
		}, lr.Wait)
		if err != nil {
			return err
		}
		r.kills++
		f.leaderKilled = leader
		say("  %s took the reporter Lease %s after the SIGKILL; %s restarted", f.newLeader, f.takeover.Round(100*time.Millisecond), leader)

		// 3. The database.
		if err := sleep(ctx, jitter(rng, 2*time.Second, 4*time.Second)); err != nil {
			return err
		}
		if !landed("PostgreSQL outage") {
			return nil
		}
		before, err := outageSample(ctx, stack, r.fleet)
		if err != nil {
			return err
		}
		say("  stopping PostgreSQL for %s", so.dbOutage)
		t0 := time.Now()
		pg.Halt()
		if err := sleep(ctx, so.dbOutage/2); err != nil {
			return err
		}
		f.readyInOutage = readyReplicas(ctx, stack)
		// Let the live fleet summary (rewritten every 500 ms) catch up
		// before the database returns.
		if err := sleep(ctx, so.dbOutage-time.Since(t0)); err != nil {
			return err
		}
		after, err := outageSample(ctx, stack, r.fleet)
		if err != nil {
			return err
		}
		if err := pg.Resume(); err != nil {
			return fmt.Errorf("restart PostgreSQL: %w", err)
		}
		f.outage, f.outageDone = time.Since(t0), true
		f.unavailableRetry = after.retry503 - before.retry503
		f.unavailableOther = (after.all503 - after.retry503) - (before.all503 - before.retry503)
		f.noAnswerOutage = after.noAnswer - before.noAnswer
		f.server503 = after.server503 - before.server503
		say("  PostgreSQL back after %s: devices got %d 503s with Retry-After (%d without), %d requests unanswered; the replicas counted %d 503s; %d/%d replicas stayed ready",
			f.outage.Round(100*time.Millisecond), f.unavailableRetry, f.unavailableOther, f.noAnswerOutage, f.server503, f.readyInOutage, len(stack.Replicas))
		if f.unavailableRetry == 0 {
			r.problem("no device got 503 with Retry-After while PostgreSQL was down")
		}
		if f.server503 < 0 {
			r.problem("a replica restarted during the PostgreSQL outage (its 503 counter went back)")
		}
		if f.readyInOutage != len(stack.Replicas) {
			// docs/deployment.md: the replicas stay ready while the
			// database is down (a Service would otherwise refuse devices).
			r.problem("%d of %d replicas ready while PostgreSQL was down", f.readyInOutage, len(stack.Replicas))
		}
		return nil
	}
}

// leaseHolder is the reporter Lease's holder, waiting (up to a minute)
// for one.
func leaseHolder(ctx context.Context, c client.Client, ns string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var l coordinationv1.Lease
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: harness.ReporterLease}, &l)
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			return *l.Spec.HolderIdentity, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("reporter Lease %s/%s has no holder: %w (last error: %v)", ns, harness.ReporterLease, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitLeaseMoves waits until the reporter Lease is held by someone other
// than old, and returns the new holder.
func waitLeaseMoves(ctx context.Context, c client.Client, ns, old string) (string, error) {
	for {
		var l coordinationv1.Lease
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: harness.ReporterLease}, &l)
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != old {
			return *l.Spec.HolderIdentity, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// outageCounts are counters read before and after the database outage.
type outageCounts struct {
	all503, retry503, noAnswer int // what the devices saw (fleetsim)
	server503                  int64
}

func outageSample(ctx context.Context, stack *harness.Stack, fleet *harness.Fleet) (outageCounts, error) {
	var c outageCounts
	sum, err := fleet.Summary()
	if err != nil {
		return c, err
	}
	c.all503, c.retry503, c.noAnswer = sum.Responses["503"], sum.RetryAfter["503"], sum.TransportErrors
	for _, r := range stack.Replicas {
		n, err := requestCount(ctx, r.MetricsURL(), `code="503"`)
		if err != nil {
			return c, fmt.Errorf("metrics of %s: %w", r.Identity, err)
		}
		c.server503 += n
	}
	return c, nil
}

// readyReplicas counts replicas whose /readyz answers 200.
func readyReplicas(ctx context.Context, stack *harness.Stack) int {
	hc := &http.Client{Timeout: 2 * time.Second}
	n := 0
	for _, r := range stack.Replicas {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Ready, nil)
		if err != nil {
			continue
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				n++
			}
		}
	}
	return n
}

// storeDB reads the OTA server's store with plain SQL (both backends have
// the same tables), bypassing the code under test.
type storeDB struct {
	*sql.DB
	postgres bool
}

// openStoreDB opens the stack's store: the PostgreSQL DSN it was given,
// else its SQLite file read-only.
func openStoreDB(stack *harness.Stack) (*storeDB, error) {
	if dsn := stack.Opts.StoreDSN; dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, errors.New("store DSN is not a postgres:// URL")
		}
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, err
		}
		return &storeDB{DB: db, postgres: true}, nil
	}
	db, err := sql.Open("sqlite", "file:"+stack.StorePath()+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	return &storeDB{DB: db}, nil
}

// q turns ? placeholders into PostgreSQL's $n.
func (d *storeDB) q(query string) string {
	if !d.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// prefixEnd is the smallest string above every string with prefix, for a
// range scan. PostgreSQL text must be valid UTF-8, so no "\xff" sentinel
// there: the last byte is incremented instead (device ID prefixes are
// ASCII and end in '-').
func (d *storeDB) prefixEnd(prefix string) string {
	if !d.postgres {
		return prefix + "\xff"
	}
	b := []byte(prefix)
	b[len(b)-1]++
	return string(b)
}

// recount checks, with the store's own code, that the counters the
// reporter reads (Counts) equal a scan of the rollout's rows (Recount), and
// that Rollout.status shows exactly that scan.
func recount(ctx context.Context, dsn string, r *result, ro *otav1.Rollout) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := storeopen.Open(ctx, dsn)
	if err != nil {
		r.problem("open the store for a recount: %v", err)
		return
	}
	defer st.Close()
	offlineAfter := 24 * time.Hour // the CRD default
	if ro.Spec.OfflineAfter != nil {
		offlineAfter = ro.Spec.OfflineAfter.Duration
	}
	before := time.Now().Add(-offlineAfter)
	uid := string(ro.UID)
	rc, err := st.Recount(ctx, uid, before)
	if err != nil {
		r.problem("recount: %v", err)
		return
	}
	cs, err := st.Counts(ctx, uid, before)
	if err != nil {
		r.problem("counts: %v", err)
		return
	}
	if !reflect.DeepEqual(rc, cs) {
		r.problem("store counters differ from a recount: Counts %s, Recount %s", countsString(cs), countsString(rc))
	}
	if ro.Status.Fleet.Size != rc.FleetSize {
		r.problem("status fleet size %d, recount %d", ro.Status.Fleet.Size, rc.FleetSize)
	}
	if len(ro.Status.Waves) != len(ro.Spec.Waves) {
		r.problem("status has %d waves, spec %d", len(ro.Status.Waves), len(ro.Spec.Waves))
	}
	for i, got := range ro.Status.Waves {
		var t rollout.Counts
		if wc := rc.Waves[i]; wc != nil {
			t = rollout.Tally(wc.Targeted, wc.Offline, wc.States)
		}
		want := reporter.WaveStatus(got.Name, t)
		// The manager owns the times; the counters are the server's.
		got.StartedAt, got.CompletedAt = nil, nil
		if !reflect.DeepEqual(got, want) {
			r.problem("wave %s: status %+v, recount %+v", got.Name, got, want)
		}
	}
}

// countsString prints counters for a problem report.
func countsString(c devicestore.Counts) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{fleet %d conflicts %d", c.FleetSize, c.Conflicts)
	for _, i := range slices.Sorted(maps.Keys(c.Waves)) {
		w := c.Waves[i]
		fmt.Fprintf(&b, " wave%d{targeted %d offline %d states %v}", i, w.Targeted, w.Offline, w.States)
	}
	if len(c.Skipped) > 0 {
		fmt.Fprintf(&b, " skipped %v", c.Skipped)
	}
	return b.String() + "}"
}

// printScaled prints what the scaled runs measured, one row per run.
func printScaled(w *os.File, results []*result, markdown bool) {
	head := []string{"run", "kills", "killed (not leader)", "killed (leader)", "new leader", "takeover", "db outage",
		"503 + Retry-After (devices)", "503 other (devices)", "503 (replicas)", "unanswered in outage", "ready in outage", "unanswered (run)", "duration"}
	var rows [][]string
	for i, r := range results {
		f := r.scaled
		outage := "-"
		if f.outageDone {
			outage = f.outage.Round(100 * time.Millisecond).String()
		}
		rows = append(rows, []string{
			fmt.Sprint(i + 1), fmt.Sprint(r.kills), f.replicaKilled, f.leaderKilled, f.newLeader,
			f.takeover.Round(100 * time.Millisecond).String(), outage,
			fmt.Sprint(f.unavailableRetry), fmt.Sprint(f.unavailableOther), fmt.Sprint(f.server503),
			fmt.Sprint(f.noAnswerOutage), fmt.Sprint(f.readyInOutage), fmt.Sprint(f.noAnswer),
			r.elapsed.Round(time.Second).String(),
		})
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	_ = tw.Flush()
	if markdown {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
		fmt.Fprintln(w, "|"+strings.Repeat(" ---: |", len(head)))
		for _, row := range rows {
			fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
		}
	}
}
