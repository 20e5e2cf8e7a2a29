package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/devicestore/storeopen"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/cutoffs"
	"github.com/otaflow/otaflow/otaserver/deviceapi"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const bootstrapToken = "bench-bootstrap-token-0123456789abcdef"

// otaserverMemoryRatio is cmd/otaserver's --memory-limit-ratio default.
const otaserverMemoryRatio = 0.8

// serveMain is the server child: the OTA server's device API (the same
// handler and http.Server limits as cmd/otaserver, plain HTTP, catalog
// fixed by the fixture instead of an informer), a bare 204 handler, or
// http.FileServer over the blob directory. It prints "ready <addr>
// <ops-addr>" and runs until its stdin closes.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	mode := fs.String("mode", "ota", "ota, bare or files")
	fixturePath := fs.String("fixture", "", "fixture.json")
	db := fs.String("db", "", "device store file, opened with sqlite.Open and the options below (mode ota)")
	dsn := fs.String("dsn", "", "device store DSN opened with storeopen as cmd/otaserver's --store-dsn (sqlite:///… or postgres://…), instead of --db (mode ota)")
	storeCutoffs := fs.Bool("store-cutoffs", false, "serve wave cutoffs read from the store (otaserver/cutoffs, as --leader-elect replicas do) instead of the fixture's")
	devRate := fs.Float64("device-rate", 1, "per-device request rate (as --device-rate of otaserver)")
	devBurst := fs.Int("device-burst", 10, "per-device burst")
	noGroup := fs.Bool("no-group-commit", false, "one transaction per request write")
	noIndex := fs.Bool("no-device-index", false, "answer device lookups from SQLite instead of the in-memory index")
	containerMiB := fs.Int64("container-memory-mib", 0, "apply the soft memory limit cmd/otaserver derives from a container limit of this size (0: none)")
	// P11: the hawkBit DDI front as cmd/otaserver --ddi wires it.
	withDDI := fs.Bool("ddi", false, "wrap the device API in the hawkBit DDI front (mode ota), with target tokens for the DDI devices seeded by P11")
	ddiPrefix := fs.String("ddi-prefix", "", "--ddi: ID prefix of the seeded DDI devices")
	ddiDevices := fs.Int("ddi-devices", 0, "--ddi: how many DDI devices were seeded (each gets its target token)")
	// P11m: the Mender front as cmd/otaserver --mender wires it.
	withMender := fs.Bool("mender", false, "wrap the device API in the Mender front (mode ota), with the bench token key")
	// P12: the device API group's list (otaserver/deviceapi) on the ops
	// address, as GET /devices?limit=&continue= (JSON).
	deviceList := fs.Bool("device-list", false, "serve the device API group's list on the ops address (mode ota)")
	_ = fs.Parse(args)
	if *containerMiB > 0 {
		debug.SetMemoryLimit(int64(otaserverMemoryRatio * float64(*containerMiB<<20)))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the parent closes stdin to stop us
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	ops := http.NewServeMux()
	ops.HandleFunc("/debug/pprof/", pprof.Index)
	ops.HandleFunc("/debug/pprof/profile", pprof.Profile)
	reg := prometheus.NewRegistry()
	ops.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	var h http.Handler
	var closeStore func() error
	switch *mode {
	case "bare":
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	case "files":
		fx, err := loadFixture(*fixturePath)
		if err != nil {
			return err
		}
		h = http.FileServer(http.Dir(fx.BlobDir))
	case "ota":
		fx, err := loadFixture(*fixturePath)
		if err != nil {
			return err
		}
		store, err := openStore(ctx, *db, *dsn, sqlite.Options{DisableGroupCommit: *noGroup, DisableDeviceIndex: *noIndex})
		if err != nil {
			return err
		}
		closeStore = store.Close
		var cuts otaserver.Cutoffs = staticCutoffs(fx.Cutoffs())
		if *storeCutoffs {
			cuts = cutoffs.New(store, cutoffs.Options{Log: logr.Discard()})
		}
		blobs, err := blobstore.NewFS(fx.BlobDir)
		if err != nil {
			return err
		}
		signer, err := assignment.NewSigner(ed25519.NewKeyFromSeed(fx.SigningSeed))
		if err != nil {
			return err
		}
		tokens := otaserver.NewTokenSet()
		tokens.Replace(map[string][]byte{"t": []byte(bootstrapToken)})
		srv, err := otaserver.New(otaserver.Config{
			Store: store, Catalog: staticCatalog{fx.Snapshot()}, Cutoffs: cuts, Blobs: blobs,
			Signer: signer, Tokens: tokens, Metrics: otaserver.NewMetrics(reg), Log: logr.Discard(),
			DeviceRate: rate.Limit(*devRate), DeviceBurst: *devBurst,
		})
		if err != nil {
			return err
		}
		go func() { _ = srv.Run(ctx) }()
		h = srv.Handler()
		if *withDDI {
			if h, err = ddiFront(srv, h, *ddiPrefix, *ddiDevices); err != nil {
				return err
			}
		}
		if *withMender {
			if h, err = menderFront(srv, h); err != nil {
				return err
			}
		}
		if *deviceList {
			ops.Handle("/devices", deviceListHandler(deviceapi.Config{
				Store: store, Catalog: staticCatalog{fx.Snapshot()}, Explainer: srv, ClusterNamespace: p12Namespace, Log: logr.Discard(),
			}))
		}
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	// The limits of cmd/otaserver's device listener.
	s := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: otaserver.MaxHeaderBytes,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(oln, ops) }()
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = s.Shutdown(sctx)
	}()
	fmt.Printf("ready %s %s\n", ln.Addr(), oln.Addr())
	err = s.Serve(ln)
	time.Sleep(1500 * time.Millisecond) // let the last-seen flush finish
	if closeStore != nil {
		_ = closeStore()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// openStore opens the serve child's device store: the SQLite file db with
// options o, or else what dsn names (storeopen, as cmd/otaserver).
func openStore(ctx context.Context, db, dsn string, o sqlite.Options) (devicestore.Store, error) {
	switch {
	case db != "" && dsn != "":
		return nil, errors.New("--db and --dsn are exclusive")
	case db != "":
		s, err := sqlite.Open(ctx, db, o)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", db, err)
		}
		return s, nil
	case dsn != "":
		if o != (sqlite.Options{}) {
			return nil, errors.New("--no-group-commit and --no-device-index need --db")
		}
		s, err := storeopen.Open(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("--dsn: %w", err)
		}
		return s, nil
	default:
		return nil, errors.New("mode ota needs --db or --dsn")
	}
}

// child is a running server child.
type child struct {
	cmd   *os.ProcessState
	proc  *os.Process
	stdin io.WriteCloser
	Addr  string
	Ops   string
	done  chan error
}

// startChild runs this binary's serve subcommand.
func startChild(logDir, name string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := execCommand(self, append([]string{"serve"}, args...)...)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{proc: cmd.Process, stdin: stdin, done: make(chan error, 1)}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("server child %s did not start (see %s): %w", name, logf.Name(), err)
	}
	if _, err := fmt.Sscanf(line, "ready %s %s", &c.Addr, &c.Ops); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("server child %s: %q", name, line)
	}
	go func() { c.done <- cmd.Wait(); logf.Close() }()
	return c, nil
}

// Stop closes the child's stdin and waits for it.
func (c *child) Stop() error {
	_ = c.stdin.Close()
	select {
	case err := <-c.done:
		return err
	case <-time.After(20 * time.Second):
		_ = c.proc.Kill()
		return errors.New("server child did not stop; killed")
	}
}

// PeakRSS is the child's VmHWM in bytes.
func (c *child) PeakRSS() (int64, error) { return procStatusKB(c.proc.Pid, "VmHWM:") }
