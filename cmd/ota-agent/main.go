// Command ota-agent is the otaflow device agent for Linux devices. It
// enrolls with the OTA server, polls for updates, downloads and verifies
// encrypted images (resumable), installs them into an A/B slot directory
// or through a command, reboots, confirms and reports. It runs until
// SIGTERM or SIGINT.
//
// Every flag can also be given as an environment variable: OTA_ and the
// flag name in upper case with '-' as '_' (for example OTA_SERVER,
// OTA_DEVICE_ID). Flags win over the environment.
//
// Installer, one of:
//
//	--slots-dir DIR [--switch-hook CMD] [--confirm-hook CMD] [--booted-slot-command CMD]
//	--install-command CMD [--version-file FILE] [--confirm-command CMD]
//
// Hooks and commands run with /bin/sh -c; their arguments (slot name and
// slot file, or the image path) are "$1" and "$2". The running firmware
// version comes from the A/B slot state or --version-file; --version is
// only the starting value. docs/agent.md describes everything.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stderr)) }

type options struct {
	server, deviceID, deviceType, labels string
	bootstrap, bootstrapFile, kem        string
	assignmentKey                        string
	vendorKeys                           list
	allowUnsigned                        bool
	dataDir                              string
	slotsDir, switchHook, confirmHook    string
	bootedSlotCmd                        string
	installCmd, versionFile, confirmCmd  string
	version                              string
	floor                                int64
	rebootCmd                            string
	poll                                 time.Duration
	keyCheck                             time.Duration
	caFile                               string
	verbosity                            int
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("ota-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "", "OTA server base URL, e.g. https://ota.example.com (required)")
	fs.StringVar(&o.deviceID, "device-id", "", "device ID (required)")
	fs.StringVar(&o.deviceType, "device-type", "", "device type (required)")
	fs.StringVar(&o.labels, "labels", "", "device labels, k=v,k=v")
	fs.StringVar(&o.bootstrap, "bootstrap-token", "", "enrollment token")
	fs.StringVar(&o.bootstrapFile, "bootstrap-token-file", "", "file holding the enrollment token")
	fs.StringVar(&o.kem, "kem", "x25519", "device key type: x25519 or p256 (used when the key is generated)")
	fs.StringVar(&o.assignmentKey, "assignment-key", "", "PEM public key the server signs assignments with, or a bundle of several (required); the keys trusted at first start, then the device follows the server's signed key set")
	fs.Var(&o.vendorKeys, "vendor-key", "PEM public key of the firmware vendor (repeatable; required unless --allow-unsigned)")
	fs.BoolVar(&o.allowUnsigned, "allow-unsigned", false, "accept images without a vendor signature")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/ota-agent", "state directory (token, key, progress, staging)")
	fs.StringVar(&o.slotsDir, "slots-dir", "", "A/B slot directory (slot-a, slot-b, slots.json)")
	fs.StringVar(&o.switchHook, "switch-hook", "", "command run after writing a slot, to make the bootloader try it ($1 slot, $2 file)")
	fs.StringVar(&o.confirmHook, "confirm-hook", "", "command run when the booted slot is confirmed ($1 slot, $2 file)")
	fs.StringVar(&o.bootedSlotCmd, "booted-slot-command", "", "command printing the booted slot (a or b)")
	fs.StringVar(&o.installCmd, "install-command", "", "command installing the staged image ($1 image path; OTA_* environment)")
	fs.StringVar(&o.versionFile, "version-file", "", "file holding the running firmware version")
	fs.StringVar(&o.confirmCmd, "confirm-command", "", "command run after a successful boot of a new version ($1 version)")
	fs.StringVar(&o.version, "version", "", "running firmware version at first start")
	fs.Int64Var(&o.floor, "security-floor", 0, "anti-rollback floor at first start (never lowers a stored floor)")
	fs.StringVar(&o.rebootCmd, "reboot-command", "", "command that reboots the device (default: log and wait)")
	fs.DurationVar(&o.poll, "poll-interval", 5*time.Minute, "update check interval (±20% jitter)")
	fs.DurationVar(&o.keyCheck, "key-check-interval", time.Hour, "how often the trusted assignment keys are compared with the server's")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM CA certificates to trust for the server (default: system roots)")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "OTA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if o.slotsDir != "" && o.installCmd != "" {
		errs = append(errs, errors.New("give either --slots-dir or --install-command, not both"))
	}
	if o.slotsDir == "" && o.installCmd == "" {
		errs = append(errs, errors.New("an installer is required: --slots-dir or --install-command"))
	}
	return o, errors.Join(errs...)
}

func shell(cmd string) []string {
	if cmd == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", cmd + ` "$@"`, "ota-hook"}
}

func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not k=v", kv)
		}
		m[k] = v
	}
	return m, nil
}

// build turns options into an agent configuration.
func build(o *options, log logr.Logger) (agent.Config, error) {
	cfg := agent.Config{
		ServerURL: o.server, DeviceID: o.deviceID, DeviceType: o.deviceType, BootstrapToken: o.bootstrap,
		KEM: keywrap.KEM(o.kem), AllowUnsigned: o.allowUnsigned, PollInterval: o.poll, KeyCheckInterval: o.keyCheck,
		Version: o.version, SecurityFloor: o.floor, Log: log,
	}
	var err error
	if cfg.Labels, err = parseLabels(o.labels); err != nil {
		return cfg, err
	}
	if o.bootstrapFile != "" {
		b, err := os.ReadFile(o.bootstrapFile)
		if err != nil {
			return cfg, err
		}
		cfg.BootstrapToken = strings.TrimSpace(string(b))
	}
	if o.assignmentKey != "" {
		if cfg.AssignmentKeyPEM, err = os.ReadFile(o.assignmentKey); err != nil {
			return cfg, err
		}
	}
	for _, f := range o.vendorKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			return cfg, err
		}
		cfg.VendorKeysPEM = append(cfg.VendorKeysPEM, b)
	}
	store, err := agent.NewDirStore(o.dataDir)
	if err != nil {
		return cfg, err
	}
	cfg.Store = store
	cfg.Staging = agent.FileStaging{Dir: filepath.Join(o.dataDir, "staging")}
	if o.slotsDir != "" {
		if err := agent.InitSlots(o.slotsDir, o.version); err != nil {
			return cfg, err
		}
		slots := &agent.ABSlots{Dir: o.slotsDir, SwitchHook: shell(o.switchHook), ConfirmHook: shell(o.confirmHook)}
		if o.bootedSlotCmd != "" {
			argv := shell(o.bootedSlotCmd)
			slots.BootedSlot = func() (string, error) {
				out, err := exec.Command(argv[0], argv[1:]...).Output()
				return strings.TrimSpace(string(out)), err
			}
		}
		cfg.Installer = slots
	} else {
		cfg.Installer = &agent.Command{Argv: shell(o.installCmd), VersionFile: o.versionFile, ConfirmArgv: shell(o.confirmCmd)}
	}
	if o.rebootCmd != "" {
		argv := shell(o.rebootCmd)
		cfg.Reboot = func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return cfg, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("%s: no PEM certificates", o.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	cfg.HTTPClient = &http.Client{Transport: tr}
	return cfg, nil
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := parse(args, getenv, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ota-agent:", err)
		return 2
	}
	l := log.New(stderr, "", log.LstdFlags)
	logger := funcr.New(func(prefix, args string) { l.Println(prefix, args) }, funcr.Options{Verbosity: o.verbosity})
	cfg, err := build(o, logger)
	if err != nil {
		fmt.Fprintln(stderr, "ota-agent:", err)
		return 2
	}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ota-agent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger.Info("ota-agent started", "device", o.deviceID, "server", o.server)
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "ota-agent:", err)
		return 1
	}
	logger.Info("ota-agent stopped")
	return 0
}
