// Command fleetsim simulates a fleet of devices in one process, each an
// otaflow agent (package agent) with in-memory state, a simulated
// installer and bootloader, and one shared HTTP transport, to exercise an
// OTA server and its rollouts at scale. A pool of --concurrency workers
// runs the devices' steps when they are due (a waiting device is data,
// not a goroutine), so at most that many devices (twice as many
// connections) talk to the servers at once.
//
// Usage:
//
//	fleetsim --server URL --bootstrap-token TOKEN --assignment-key FILE.pem --vendor-key FILE.pem \
//	         [--devices 500] [--concurrency 1024] [--id-prefix sim-] [--device-type sensor-v1] [--version 1.0.0] [--security-floor 0] \
//	         [--labels 'region=eu:80,region=us:20;hw=rev1:50,hw=rev2:50'] [--poll-interval 1s] \
//	         [--install-failure RATE[@SEL]] [--corrupt-download RATE[@SEL]] [--never-return RATE[@SEL]] [--revert RATE[@SEL]] \
//	         [--seed 1] [--summary-json FILE] [--summary-interval 0] [--duration 0] [--progress auto|tty|plain|none] \
//	         [--insecure-skip-verify] [--pprof-address ADDR] [-v]
//
// --server may list several URLs separated by commas (replicas without a
// load balancer): device i talks to URL i mod n.
//
// Device IDs are <id-prefix><index, 5 digits>. Labels are dealt with exact
// proportions per key (largest remainders), shuffled by --seed.
//
// Faults are decided per device and target version from --seed, so a run
// is reproducible. SEL is version=X (the version being installed) or a
// device label k=v; the first matching rule of a fault decides. Faults:
// install-failure (the installer fails: the device reports failed),
// corrupt-download (one blob byte is flipped: the device refuses the chunk
// and reports failed), never-return (the device reboots and goes silent:
// the rollout times it out), revert (the bootloader boots the old image
// again: the server counts a revert).
//
// On exit (SIGINT/SIGTERM or --duration elapsed) fleetsim prints a summary
// table and, with --summary-json, writes:
//
//	{
//	  "devices": 500,
//	  "byVersion": {"1.0.0": 20, "2.0.0": 480},
//	  "byState": {"idle": 3, "succeeded": 470, "failed": 20, "neverReturned": 5, ...},
//	  "refusals": {"chunk-auth": 10, "vendor-signature": 0, ...},
//	  "reports": 2412,
//	  "responses": {"200": 9120, "503": 40}, "retryAfter": {"503": 40}, "transportErrors": 12,
//	  "devicesDetail": [{"id": "sim-00000", "version": "2.0.0", "securityFloor": 4, "pendingFloor": 0,
//	                     "lastState": "succeeded", "lastReason": ""}, ...]
//	}
//
// byState counts each device's last state other than idle (idle only if it
// never did anything): downloading, downloaded, installing, installed,
// rebooting, succeeded, failed, canceled, reverted, rolledback, and
// neverReturned. refusals counts refusals by code (see package agent).
// responses counts the HTTP answers the devices got by status code,
// retryAfter those that carried Retry-After, transportErrors requests
// that got no answer (a server down, or none within the agent's request
// timeout).
// securityFloor is the committed floor, raised when the server sends a
// commit (the rollout that updated the device committed), not at boot;
// pendingFloor is the running release's securityVersion until then.
// With --summary-interval the file is also rewritten (atomically) that
// often while the fleet runs, without pendingReports, so a caller can wait
// for a state (every floor committed, say) before stopping the fleet.
// docs/fleetsim.md has the details.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr, os.ReadFile)
	if err != nil {
		fmt.Fprintln(stderr, "fleetsim:", err)
		return 2
	}
	// Before the devices are made: making 100,000 takes a while too.
	if o.pprofAddr != "" {
		closeProf, err := servePprof(o.pprofAddr, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "fleetsim:", err)
			return 2
		}
		defer closeProf()
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// At most --concurrency devices step at once, each over one
	// connection, two while a download reports its progress (the blob's
	// body stays open): the pool keeps them all. No MaxConnsPerHost: a
	// cap at the number of workers would leave every worker waiting for
	// a second connection with its first one held.
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = 2 * o.concurrency
	transport.IdleConnTimeout = 90 * time.Second
	if o.insecure {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // demo with self-signed TLS, opt-in
	}
	logger := logr.Discard()
	if o.verbose {
		l := log.New(stderr, "", log.LstdFlags)
		logger = funcr.New(func(prefix, args string) { l.Println(prefix, args) }, funcr.Options{})
	}
	s, err := newSim(o, transport, logger)
	if err != nil {
		fmt.Fprintln(stderr, "fleetsim:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	live := make(chan struct{})
	go func() { s.writeSummaries(done, stderr); close(live) }()
	s.showProgress(ctx, stdout, done)
	<-done
	<-live

	sum := s.finalSummary()
	if o.progress == "tty" {
		fmt.Fprintln(stdout)
	}
	writeTable(stdout, sum, time.Since(s.started))
	if o.summaryJSON != "" {
		if err := writeSummaryFile(o.summaryJSON, sum); err != nil {
			fmt.Fprintln(stderr, "fleetsim: summary:", err)
			return 1
		}
	}
	return 0
}

// servePprof serves Go's profiles on addr (its own mux, not
// http.DefaultServeMux) until the returned function is called.
func servePprof(addr string, stderr io.Writer) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-address: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or trace answers after ?seconds=.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	fmt.Fprintf(stderr, "fleetsim: profiles on http://%s/debug/pprof/\n", ln.Addr())
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// writeSummaries rewrites --summary-json every --summary-interval until
// done, so a test can watch the fleet (committed floors, versions) while it
// runs. Live summaries have no pendingReports (only a stopped agent may be
// asked); the final summary written on exit replaces them.
func (s *sim) writeSummaries(done <-chan struct{}, stderr io.Writer) {
	if s.opts.summaryInterval <= 0 || s.opts.summaryJSON == "" {
		return
	}
	t := time.NewTicker(s.opts.summaryInterval)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if err := writeSummaryFile(s.opts.summaryJSON, s.summary()); err != nil && !failed {
			fmt.Fprintln(stderr, "fleetsim: live summary:", err)
			failed = true // said once; the final write reports its own error
		}
	}
}

// writeSummaryFile writes the summary to a temporary file beside path and
// renames it into place, so a reader never sees a partial document.
func writeSummaryFile(path string, sum Summary) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	err = f.Chmod(0o644) // as os.Create would leave it, for other readers
	if err == nil {
		err = writeSummaryJSON(f, sum)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
