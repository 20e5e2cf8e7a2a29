// Command reliability checks crash consistency on a real control plane:
// the manager and the OTA server run as separate processes (as in a
// cluster), a simulated fleet updates, and the run is disrupted:
//
//   - ota-server: the OTA server is SIGKILLed at random points of the
//     rollout and restarted, several times per run;
//   - manager: the leader-elected manager is SIGKILLed and restarted (the
//     new process waits for the old lease to expire);
//   - apiserver: the kube-apiserver is stopped for 30 s mid-rollout while
//     etcd keeps the data, then started again.
//
// With --scaled it runs the replicated layout instead (scaled.go): three
// OTA server replicas with the reporter leader-elected, one PostgreSQL
// device store and one S3 blob store; a non-leader replica and the
// reporter leader are SIGKILLed and PostgreSQL is stopped mid-rollout.
//
// After each run it compares three records: what every simulated device
// did (fleetsim's summary), what the OTA server's store holds (the SQLite
// file, read-only), and Rollout.status. Nothing acknowledged may be lost,
// nothing counted twice, and every device must finish. It prints a summary
// table and exits non-zero on any discrepancy. Run it with `make
// reliability`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	_ "modernc.org/sqlite" // the OTA server's store format
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/testenv"
)

type options struct {
	binDir       string
	seed         uint64
	devices      int
	serverRuns   int
	killsPerRun  int
	minKills     int
	managerKills int
	outage       time.Duration
	imageSize    int
	keep         bool
	markdown     bool
	scaled       scaledOptions
	// offersPerMinute is the rollouts' maxOffersPerMinute (0: no limit).
	offersPerMinute int
}

func main() {
	var o options
	flag.StringVar(&o.binDir, "bin-dir", filepath.Join(testenv.Root(), "bin"), "Where manager, otaserver and fleetsim are.")
	flag.Uint64Var(&o.seed, "seed", 1, "Seed for kill points and the fleet.")
	flag.IntVar(&o.devices, "devices", 120, "Simulated devices per run.")
	flag.IntVar(&o.serverRuns, "server-runs", 3, "Runs that SIGKILL the OTA server.")
	flag.IntVar(&o.killsPerRun, "kills-per-run", 4, "OTA server kills per run.")
	flag.IntVar(&o.minKills, "min-kills", 10, "OTA server kills that must land mid-rollout; more runs are added (up to twice --server-runs) until they do.")
	flag.IntVar(&o.managerKills, "manager-kills", 3, "Manager (leader) kills in the manager run; 0 skips it.")
	flag.DurationVar(&o.outage, "apiserver-outage", 30*time.Second, "How long the API server is stopped in the apiserver run; 0 skips it.")
	flag.IntVar(&o.imageSize, "image-size", 512<<10, "Firmware image size in bytes.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the work directory (logs, store) after a successful run.")
	flag.BoolVar(&o.markdown, "markdown", true, "Also print the summary as a Markdown table.")
	o.scaled.bindFlags(flag.CommandLine)
	flag.Parse()
	if o.scaled.enabled {
		o.offersPerMinute = o.scaled.offersPerMinute
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	runFn := run
	if o.scaled.enabled {
		runFn = runScaled
	}
	ok, err := runFn(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nreliability FAILED: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "\nreliability FAILED: see the table")
		os.Exit(1)
	}
	fmt.Println("\nreliability passed: nothing lost, nothing counted twice, every device finished")
}

var start = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// result is one run's three-way comparison.
type result struct {
	scenario     string
	kills        int
	devices      int
	acked        int // reports the server acknowledged (fleetsim)
	pending      int // reports devices still held when the run ended
	stored       int // report IDs in the store
	lost         int
	duplicated   int
	finished     int // devices running the new version (fleetsim)
	storeDone    int64
	statusDone   int64
	servedOutage int64 // device requests answered while the API server was down
	elapsed      time.Duration
	problems     []string

	// The scaled scenario's figures (scaled.go).
	fleet  *harness.Fleet // the run's devices, for disruptions that watch them
	scaled scaledFigures
}

func (r *result) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) (bool, error) {
	dir, err := os.MkdirTemp("", "otaflow-reliability-")
	if err != nil {
		return false, err
	}
	ok := false
	defer func() {
		if !ok || o.keep {
			fmt.Printf("logs, summaries and the store kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	say("starting kube-apiserver and etcd, the manager (leader election on) and the OTA server as separate processes")
	stack, err := harness.StartStack(ctx, harness.StackOptions{Dir: dir, BinDir: o.binDir, LeaderElect: true})
	if err != nil {
		return false, err
	}
	defer stack.Stop()
	sup := newSupervisor(stack)
	supCtx, stopSup := context.WithCancel(ctx)
	supDone := make(chan struct{})
	go func() { sup.run(supCtx); close(supDone) }()
	// The supervisor stops before the stack does.
	defer func() { stopSup(); <-supDone }()

	rng := rand.New(rand.NewPCG(o.seed, o.seed*0x9e3779b97f4a7c15+1))
	var results []*result
	idx := 0
	next := func(name string, disrupt func(context.Context, *rand.Rand, *result, func() bool) error) error {
		idx++
		r, err := runOne(ctx, stack, o, idx, name, rng, disrupt)
		if r != nil {
			results = append(results, r)
		}
		return err
	}
	serverKills := 0
	// At least serverRuns runs, and more (up to twice as many) until
	// minKills kills landed mid-rollout.
	for i := 0; i < o.serverRuns || (serverKills < o.minKills && i < 2*o.serverRuns); i++ {
		if err := next("ota-server", func(ctx context.Context, rng *rand.Rand, r *result, done func() bool) error {
			defer func() { serverKills += r.kills }()
			for r.kills < o.killsPerRun && !done() {
				if err := sleep(ctx, jitter(rng, time.Second, 4*time.Second)); err != nil {
					return err
				}
				if done() {
					break
				}
				down := jitter(rng, 0, 2*time.Second)
				if err := sup.kill(ctx, stack.OTAServer, down, stack.WaitOTAServer); err != nil {
					return err
				}
				r.kills++
				say("  SIGKILL OTA server #%d (down %s), restarted", r.kills, down.Round(10*time.Millisecond))
			}
			return nil
		}); err != nil {
			return false, err
		}
	}
	if o.managerKills > 0 {
		if err := next("manager", func(ctx context.Context, rng *rand.Rand, r *result, done func() bool) error {
			for r.kills < o.managerKills && !done() {
				if err := sleep(ctx, jitter(rng, 1*time.Second, 5*time.Second)); err != nil {
					return err
				}
				if err := sup.kill(ctx, stack.Manager, 0, stack.WaitManager); err != nil {
					return err
				}
				r.kills++
				say("  SIGKILL manager (leader) #%d, restarted; it takes over when the old lease expires", r.kills)
			}
			return nil
		}); err != nil {
			return false, err
		}
	}
	if o.outage > 0 {
		if err := next("apiserver", func(ctx context.Context, rng *rand.Rand, r *result, done func() bool) error {
			if err := sleep(ctx, jitter(rng, 2*time.Second, 5*time.Second)); err != nil {
				return err
			}
			before, err := deviceRequests(ctx, stack)
			if err != nil {
				return err
			}
			say("  stopping kube-apiserver for %s (etcd keeps running)", o.outage)
			t0 := time.Now()
			if err := stack.CP.StopAPIServer(5 * time.Second); err != nil {
				return err
			}
			r.kills++
			if err := sleep(ctx, o.outage-time.Since(t0)); err != nil {
				return err
			}
			after, err := deviceRequests(ctx, stack)
			if err != nil {
				return fmt.Errorf("OTA server unreachable during the API server outage: %w", err)
			}
			r.servedOutage = after - before
			say("  %d device requests answered during the outage; starting kube-apiserver again", r.servedOutage)
			if r.servedOutage == 0 {
				r.problem("no device was served while the API server was down")
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			return stack.CP.StartAPIServer(sctx, filepath.Join(stack.Opts.Dir, "kube-apiserver-restarted.log"))
		}); err != nil {
			return false, err
		}
	}
	ok = printTable(os.Stdout, results, o.markdown)
	if serverKills < o.minKills {
		fmt.Printf("only %d OTA server kills landed mid-rollout, want %d\n", serverKills, o.minKills)
		ok = false
	}
	if n := sup.unexpected(); n > 0 {
		// A leader-elected manager exits when it cannot renew its lease
		// (the API server outage); the kubelet restarts it, so does this.
		fmt.Printf("\nprocesses that exited on their own and were restarted (as the kubelet would): %s\n", sup.report())
	}
	return ok, nil
}

// runOne ships a release to a fresh fleet while disrupt runs, then
// compares the three records.
func runOne(ctx context.Context, stack *harness.Stack, o options, idx int, name string, rng *rand.Rand,
	disrupt func(context.Context, *rand.Rand, *result, func() bool) error) (*result, error) {
	c := stack.CP.Client
	ring := fmt.Sprintf("%s-%d", name, idx)
	ns := "rel-" + ring
	r := &result{scenario: name, devices: o.devices}
	t0 := time.Now()
	say("run %d (%s): publishing a release and starting %d devices", idx, name, o.devices)
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		return nil, err
	}
	if _, err := stack.PublishRelease(ctx, ns, "fw-5.0.0", "5.0.0", 5, o.imageSize); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := harness.WaitReleaseReady(wctx, c, client.ObjectKey{Namespace: ns, Name: "fw-5.0.0"}); err != nil {
		return nil, err
	}
	fleet, err := stack.StartFleet(harness.FleetOptions{
		Name: "fleet-" + ring, Devices: o.devices, IDPrefix: ring + "-", Version: "4.0.0",
		Seed: int64(rng.Uint32()), Labels: "ring=" + ring + ":1", SummaryInterval: 500 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = fleet.Stop(15 * time.Second) }()
	r.fleet = fleet
	ro, err := stack.CreateRollout(ctx, ns, "ro", "fw-5.0.0", func(ro *otav1.Rollout) {
		ro.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"ring": ring}}
		ro.Spec.Waves = []otav1.Wave{
			{Name: "canary", Devices: intstr.FromString("10%")},
			{Name: "half", Devices: intstr.FromString("50%")},
			{Name: "all", Devices: intstr.FromString("100%")},
		}
		ro.Spec.Paused = true
		ro.Spec.MaxOffersPerMinute = nil
		if o.offersPerMinute > 0 {
			// Per replica (otaserver/limits.go): stretches the rollout so
			// every disruption lands mid-rollout.
			v := int32(o.offersPerMinute)
			ro.Spec.MaxOffersPerMinute = &v
		}
	})
	if err != nil {
		return nil, err
	}
	key := client.ObjectKeyFromObject(ro)
	if _, err := harness.WaitFleet(wctx, c, key, int64(o.devices), 0); err != nil {
		return nil, fmt.Errorf("fleet never enrolled: %w", err)
	}
	if err := patchRollout(ctx, c, key, func(ro *otav1.Rollout) { ro.Spec.Paused = false }); err != nil {
		return nil, err
	}
	say("run %d: rollout resumed; disrupting", idx)

	n := int64(o.devices)
	var doneMu sync.Mutex
	finished := false
	done := func() bool { doneMu.Lock(); defer doneMu.Unlock(); return finished }
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	derr := make(chan error, 1)
	go func() { derr <- disrupt(dctx, rng, r, done) }()

	rctx, rcancel := context.WithTimeout(ctx, 8*time.Minute)
	defer rcancel()
	last := ""
	var final *otav1.Rollout
	disruptDone := false
	for {
		cur := &otav1.Rollout{}
		if err := c.Get(rctx, key, cur); err == nil && final == nil { // fails while the API server is down
			if line := harness.RolloutLine(cur); line != last {
				last = line
				say("run %d: %s", idx, line)
			}
			switch {
			case cur.Status.Phase == otav1.RolloutAborted:
				r.problem("rollout aborted: %s", cur.Status.AbortReason)
				final = cur
			case cur.Status.Phase == otav1.RolloutSucceeded && harness.Totals(cur).Succeeded == n:
				final = cur
			}
			if final != nil {
				doneMu.Lock()
				finished = true
				doneMu.Unlock()
			}
		}
		if final != nil && disruptDone {
			break
		}
		select {
		case err := <-derr:
			if err != nil {
				return r, err
			}
			disruptDone = true
		case <-rctx.Done():
			return r, fmt.Errorf("run %d: rollout did not finish: %s", idx, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	// The floor is committed after Succeeded, when each device checks in
	// again and the server answers "commit": wait for every device to
	// report it (fleetsim's live summary) before stopping the fleet. A
	// device that never commits is reported by compare, from the final
	// summary.
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	if _, err := fleet.WaitSummary(fctx, func(s *harness.FleetSummary) bool {
		return s.All(func(d harness.FleetDevice) bool { return d.Version == "5.0.0" && d.SecurityFloor == 5 })
	}); err != nil {
		say("run %d: not every device committed floor 5: %v", idx, err)
	}
	fcancel()
	// Every device saw the end; stop the fleet so its summary is final.
	if err := fleet.Stop(20 * time.Second); err != nil {
		return r, err
	}
	sum, err := fleet.Summary()
	if err != nil {
		return r, err
	}
	r.scaled.noAnswer = sum.TransportErrors
	// Status is written in batches: give the reporter two rounds.
	time.Sleep(3 * time.Second)
	if err := c.Get(ctx, key, final); err != nil {
		return r, err
	}
	r.elapsed = time.Since(t0)
	compare(ctx, stack, r, final, sum, n)
	if stack.Opts.StoreDSN != "" {
		recount(ctx, stack.Opts.StoreDSN, r, final)
	}
	say("run %d (%s) done in %s: %d kills, %d devices finished, lost %d, duplicated %d", idx, name, r.elapsed.Round(time.Second), r.kills, r.finished, r.lost, r.duplicated)
	for _, p := range r.problems {
		say("  PROBLEM: %s", p)
	}
	return r, nil
}

// compare checks the fleet, the store and Rollout.status against each other.
func compare(ctx context.Context, stack *harness.Stack, r *result, ro *otav1.Rollout, sum *harness.FleetSummary, n int64) {
	db, err := openStoreDB(stack)
	if err != nil {
		r.problem("open store: %v", err)
		return
	}
	defer db.Close()
	states := map[string]string{}
	rows, err := db.QueryContext(ctx, db.q(`SELECT device_id, state FROM records WHERE rollout_uid = ?`), string(ro.UID))
	if err != nil {
		r.problem("read records: %v", err)
		return
	}
	for rows.Next() {
		var id, st string
		_ = rows.Scan(&id, &st)
		if _, dup := states[id]; dup {
			r.problem("device %s has two records", id)
			r.duplicated++
		}
		states[id] = st
	}
	rows.Close()
	storedBy := map[string]int{}
	prefix := sum.DevicesDetail[0].ID[:strings.LastIndexByte(sum.DevicesDetail[0].ID, '-')+1]
	rows, err = db.QueryContext(ctx, db.q(`SELECT device_id, count(*) FROM reports WHERE device_id >= ? AND device_id < ? GROUP BY device_id`), prefix, db.prefixEnd(prefix))
	if err != nil {
		r.problem("read reports: %v", err)
		return
	}
	for rows.Next() {
		var id string
		var k int
		_ = rows.Scan(&id, &k)
		storedBy[id] = k
	}
	rows.Close()

	for _, d := range sum.DevicesDetail {
		r.acked += d.Reports
		r.pending += d.PendingReports
		r.stored += storedBy[d.ID]
		if miss := d.Reports - storedBy[d.ID]; miss > 0 {
			r.lost += miss
			r.problem("device %s: %d acknowledged reports not in the store", d.ID, miss)
		}
		if extra := storedBy[d.ID] - d.Reports - d.PendingReports; extra > 0 {
			r.duplicated += extra
			r.problem("device %s: store holds %d reports the device never had acknowledged or pending", d.ID, extra)
		}
		// Finished: runs the release with its floor committed (after
		// Succeeded, on the server's commit), nothing pending.
		if d.Version == "5.0.0" && d.SecurityFloor == 5 && d.PendingFloor == 0 {
			r.finished++
			if states[d.ID] != "succeeded" {
				r.lost++
				r.problem("device %s runs 5.0.0 but the store says %q", d.ID, states[d.ID])
			}
		} else {
			r.problem("device %s did not finish: version %s floor %d (pending %d) state %s %s", d.ID, d.Version, d.SecurityFloor, d.PendingFloor, d.LastState, d.LastReason)
		}
		if states[d.ID] == "succeeded" && d.Version != "5.0.0" {
			r.duplicated++
			r.problem("store counts %s as succeeded, but it runs %s", d.ID, d.Version)
		}
	}
	for _, st := range states {
		if st == "succeeded" {
			r.storeDone++
		}
	}
	t := harness.Totals(ro)
	r.statusDone = t.Succeeded
	if d := r.storeDone - t.Succeeded; d > 0 {
		r.lost += int(d)
		r.problem("status counts %d succeeded, the store %d", t.Succeeded, r.storeDone)
	} else if d < 0 {
		r.duplicated += int(-d)
		r.problem("status counts %d succeeded, the store %d", t.Succeeded, r.storeDone)
	}
	for what, v := range map[string]int64{"targeted": t.Targeted, "offered": t.Offered} {
		if v > n {
			r.duplicated += int(v - n)
			r.problem("status %s %d > %d devices", what, v, n)
		} else if v < n {
			r.lost += int(n - v)
			r.problem("status %s %d < %d devices", what, v, n)
		}
	}
	if t.InProgress+t.Failed+t.TimedOut+t.RolledBack != 0 {
		r.problem("status has unfinished or failed devices: %+v", t)
	}
	if int64(len(states)) != n {
		r.problem("store has %d records for %d devices", len(states), n)
	}
	if r.finished != int(n) {
		r.problem("%d of %d devices finished", r.finished, n)
	}
}

func printTable(w *os.File, results []*result, markdown bool) bool {
	ok := true
	var tot result
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\truns\tkills\tdevices\treports\tstored\tpending\tlost\tduplicated\tfinished\tstore ok\tstatus ok\t")
	type agg struct {
		result
		runs int
	}
	order := []string{}
	by := map[string]*agg{}
	for _, r := range results {
		a := by[r.scenario]
		if a == nil {
			a = &agg{result: result{scenario: r.scenario}}
			by[r.scenario] = a
			order = append(order, r.scenario)
		}
		a.runs++
		for _, p := range []*result{&a.result, &tot} {
			p.kills += r.kills
			p.devices += r.devices
			p.acked += r.acked
			p.stored += r.stored
			p.pending += r.pending
			p.lost += r.lost
			p.duplicated += r.duplicated
			p.finished += r.finished
			p.storeDone += r.storeDone
			p.statusDone += r.statusDone
			p.problems = append(p.problems, r.problems...)
		}
		if len(r.problems) > 0 || r.lost > 0 || r.duplicated > 0 || r.finished != r.devices {
			ok = false
		}
	}
	line := func(name string, runs int, r *result) string {
		return fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d\t%d\t%d\t", name, runs, r.kills, r.devices, r.acked, r.stored, r.pending, r.lost, r.duplicated, r.finished, r.devices, r.storeDone, r.statusDone)
	}
	var rows []string
	for _, s := range order {
		rows = append(rows, line(s, by[s].runs, &by[s].result))
	}
	rows = append(rows, line("total", len(results), &tot))
	for _, l := range rows {
		fmt.Fprintln(tw, l)
	}
	_ = tw.Flush()
	if markdown {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| scenario | runs | kills | devices | reports | stored | pending | lost | duplicated | finished | succeeded (store) | succeeded (status) |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, l := range rows {
			cells := strings.Split(strings.TrimSuffix(l, "\t"), "\t")
			fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
		}
	}
	return ok
}

// supervisor restarts the manager or the OTA server when it exits on its
// own, as the kubelet would, and performs deliberate kills.
type supervisor struct {
	stack *harness.Stack
	mu    sync.Mutex // held during a deliberate kill
	count map[string]int
}

func newSupervisor(s *harness.Stack) *supervisor {
	return &supervisor{stack: s, count: map[string]int{}}
}

func (s *supervisor) run(ctx context.Context) {
	// Crash-loop backoff per process, as the kubelet does: 1 s doubling to
	// 10 s, reset once a process stays up.
	backoff := map[*harness.Process]time.Duration{}
	nextTry := map[*harness.Process]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if !s.mu.TryLock() {
			continue
		}
		procs := []*harness.Process{s.stack.Manager}
		for _, r := range s.stack.Replicas {
			procs = append(procs, r.Process)
		}
		for _, p := range procs {
			select {
			case <-p.Exited():
			default:
				if time.Now().After(nextTry[p].Add(30 * time.Second)) {
					backoff[p] = 0
				}
				continue
			}
			if time.Now().Before(nextTry[p]) {
				continue
			}
			s.count[p.Name()]++
			if backoff[p] == 0 {
				say("  %s exited on its own (%v); restarting it with backoff, as the kubelet would", p.Name(), p.Err())
			}
			backoff[p] = min(max(2*backoff[p], time.Second), 10*time.Second)
			nextTry[p] = time.Now().Add(backoff[p])
			if err := p.Restart(); err != nil {
				say("  restart %s: %v", p.Name(), err)
			}
		}
		s.mu.Unlock()
	}
}

func (s *supervisor) kill(ctx context.Context, p *harness.Process, down time.Duration, wait func(context.Context) error) error {
	return s.killWhile(ctx, p, func(ctx context.Context) error { return sleep(ctx, down) }, wait)
}

// killWhile SIGKILLs p, runs whileDown (the supervisor leaves p down
// meanwhile), then restarts p and waits until it is ready.
func (s *supervisor) killWhile(ctx context.Context, p *harness.Process, whileDown, wait func(context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := p.Kill(); err != nil {
		return err
	}
	if err := whileDown(ctx); err != nil {
		return err
	}
	if err := p.Restart(); err != nil {
		return err
	}
	return wait(ctx)
}

func (s *supervisor) unexpected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.count {
		n += v
	}
	return n
}

func (s *supervisor) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.count)
}

// deviceRequests sums the OTA server's device API request counter.
func deviceRequests(ctx context.Context, stack *harness.Stack) (int64, error) {
	return requestCount(ctx, stack.MetricsURL(), "")
}

// requestCount sums otaflow_ota_requests_total at a metrics URL, only the
// series whose labels contain match when it is not empty.
func requestCount(ctx context.Context, metricsURL, match string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "otaflow_ota_requests_total{") || !strings.Contains(l, match) {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			v, _ := strconv.ParseFloat(l[i+1:], 64)
			total += v
		}
	}
	return int64(total), sc.Err()
}

func patchRollout(ctx context.Context, c client.Client, key client.ObjectKey, mutate func(*otav1.Rollout)) error {
	ro := &otav1.Rollout{}
	if err := c.Get(ctx, key, ro); err != nil {
		return err
	}
	p := client.MergeFrom(ro.DeepCopy())
	mutate(ro)
	return c.Patch(ctx, ro, p)
}

func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
