package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

type options struct {
	server, bootstrap    string
	servers              []string // --server split on commas; device i uses servers[i%len]
	assignmentKeyFile    string
	vendorKeyFiles       stringList
	assignmentKey        []byte
	vendorKeys           [][]byte
	devices              int
	concurrency          int
	idPrefix, deviceType string
	version              string
	floor                int64
	labelsSpec           string
	labels               []labelGroup
	poll                 time.Duration
	keyCheck             time.Duration
	faults               map[string]faultRules
	seed                 uint64
	summaryJSON          string
	summaryInterval      time.Duration
	duration             time.Duration
	progress             string
	insecure             bool
	verbose              bool
	pprofAddr            string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseOptions parses the command line; readFile loads key files.
func parseOptions(args []string, stderr io.Writer, readFile func(string) ([]byte, error)) (*options, error) {
	o := &options{faults: map[string]faultRules{}}
	fs := flag.NewFlagSet("fleetsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "", "OTA server base URL (required); a comma-separated list spreads the devices over several replicas, device i using URL i mod n")
	fs.StringVar(&o.bootstrap, "bootstrap-token", "", "enrollment (bootstrap) token (required)")
	fs.StringVar(&o.assignmentKeyFile, "assignment-key", "", "PEM public key the server signs assignments with, or a bundle of several (required); the devices then follow the server's signed key set")
	fs.Var(&o.vendorKeyFiles, "vendor-key", "PEM public key of the firmware vendor (required, repeatable)")
	fs.IntVar(&o.devices, "devices", 500, "number of simulated devices")
	fs.IntVar(&o.concurrency, "concurrency", 1024, "devices that talk to the servers at once, each over one connection (two while a download reports progress)")
	fs.StringVar(&o.idPrefix, "id-prefix", "sim-", "device ID prefix (IDs are <prefix><5-digit index>)")
	fs.StringVar(&o.deviceType, "device-type", "sensor-v1", "device type")
	fs.StringVar(&o.version, "version", "1.0.0", "firmware version the devices start with")
	fs.Int64Var(&o.floor, "security-floor", 0, "security floor the devices start with")
	fs.StringVar(&o.labelsSpec, "labels", "", "label distribution: key=value:weight,… per key, keys separated by ';'")
	fs.DurationVar(&o.poll, "poll-interval", time.Second, "update check interval (±20% jitter)")
	fs.DurationVar(&o.keyCheck, "key-check-interval", time.Hour, "how often each device compares its trusted assignment keys with the server's")
	for _, k := range []string{faultInstall, faultCorrupt, faultNever, faultRevert} {
		rules := faultRules{}
		o.faults[k] = rules
		kind := k
		fs.Func(k, "RATE[@SEL]: fraction of devices (per target version) with this fault; SEL is version=X or a label k=v; repeatable", func(v string) error {
			r := o.faults[kind]
			if err := r.Set(v); err != nil {
				return err
			}
			o.faults[kind] = r
			return nil
		})
	}
	fs.Uint64Var(&o.seed, "seed", 1, "seed for label assignment and fault decisions")
	fs.StringVar(&o.summaryJSON, "summary-json", "", "write the summary JSON here on exit")
	fs.DurationVar(&o.summaryInterval, "summary-interval", 0, "also rewrite --summary-json this often while running (atomically; 0: only on exit)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	fs.StringVar(&o.progress, "progress", "auto", "progress display: auto, tty, plain or none")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the server's TLS certificate")
	fs.BoolVar(&o.verbose, "v", false, "log every device's agent")
	fs.StringVar(&o.pprofAddr, "pprof-address", "", "serve Go's /debug/pprof/ profiles (heap, CPU, goroutines) on this address, e.g. 127.0.0.1:6060 (empty: off)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	var err error
	if o.server == "" {
		errs = append(errs, errors.New("--server is required"))
	} else if o.servers, err = splitServers(o.server); err != nil {
		errs = append(errs, err)
	}
	if o.bootstrap == "" {
		errs = append(errs, errors.New("--bootstrap-token is required"))
	}
	if o.assignmentKeyFile == "" {
		errs = append(errs, errors.New("--assignment-key is required"))
	}
	if len(o.vendorKeyFiles) == 0 {
		errs = append(errs, errors.New("--vendor-key is required"))
	}
	if o.devices < 1 || o.devices > 100_000 {
		errs = append(errs, errors.New("--devices must be 1..100000"))
	}
	if o.concurrency < 1 {
		errs = append(errs, errors.New("--concurrency must be at least 1"))
	}
	if o.poll < 10*time.Millisecond {
		errs = append(errs, errors.New("--poll-interval must be at least 10ms"))
	}
	if o.keyCheck < 10*time.Millisecond {
		errs = append(errs, errors.New("--key-check-interval must be at least 10ms"))
	}
	if o.floor < 0 || o.floor > 1<<32-1 {
		errs = append(errs, errors.New("--security-floor must be 0..4294967295"))
	}
	if o.duration < 0 {
		errs = append(errs, errors.New("--duration must not be negative"))
	}
	switch {
	case o.summaryInterval < 0:
		errs = append(errs, errors.New("--summary-interval must not be negative"))
	case o.summaryInterval > 0 && o.summaryInterval < 10*time.Millisecond:
		errs = append(errs, errors.New("--summary-interval must be at least 10ms"))
	case o.summaryInterval > 0 && o.summaryJSON == "":
		errs = append(errs, errors.New("--summary-interval needs --summary-json"))
	}
	switch o.progress {
	case "auto", "tty", "plain", "none":
	default:
		errs = append(errs, fmt.Errorf("--progress %q: want auto, tty, plain or none", o.progress))
	}
	if o.labels, err = parseLabels(o.labelsSpec); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.assignmentKey, err = readFile(o.assignmentKeyFile); err != nil {
		return nil, err
	}
	for _, f := range o.vendorKeyFiles {
		b, err := readFile(f)
		if err != nil {
			return nil, err
		}
		o.vendorKeys = append(o.vendorKeys, b)
	}
	if o.progress == "auto" {
		o.progress = "plain"
		if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.progress = "tty"
		}
	}
	return o, nil
}

// splitServers reads --server: one URL, or several separated by commas
// (replicas without a load balancer in front of them).
func splitServers(v string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return nil, fmt.Errorf("--server %q: empty URL in the list", v)
		}
		out = append(out, u)
	}
	return out, nil
}
