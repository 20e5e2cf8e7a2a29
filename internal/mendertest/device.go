package mendertest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 3 * time.Second
	// Defaults of Options.
	defaultDeviceType   = "otaflow-test-device"
	defaultArtifactName = "otaflow-initial"
)

// Options configure one sandboxed `mender daemon`.
type Options struct {
	// ServerURL is the server's base URL (http:// is accepted); the client
	// appends /api/devices/v1/...; required.
	ServerURL string
	// TenantToken is sent in auth requests (and as their bearer token).
	TenantToken string
	// DeviceType (default "otaflow-test-device") and ArtifactName
	// (default "otaflow-initial") describe the device before any update.
	DeviceType   string
	ArtifactName string
	// Identity is what the identity script prints (key=value lines); the
	// client sends it as id_data. Default: a unique "mac".
	Identity map[string]string
	// Inventory, when not empty, is printed by an inventory script, next
	// to the attributes the client adds itself.
	Inventory map[string]string
	// KeyPEM is the device's private key (any PEM OpenSSL reads, e.g.
	// Key.PEM). Nil: the client generates an RSA 3072 key on first start.
	KeyPEM []byte
	// ArtifactVerifyKey is a PEM public key: when set, the client installs
	// only artifacts signed with its private key.
	ArtifactVerifyKey []byte
	// Poll intervals in seconds: UpdatePollIntervalSeconds (default 1),
	// InventoryPollIntervalSeconds (default 2) and RetryPollIntervalSeconds
	// (default 1, the longest wait between retries).
	UpdatePollSeconds    int
	InventoryPollSeconds int
	RetryPollSeconds     int
}

// Device is a running sandboxed Mender client.
type Device struct {
	// Dir holds the sandbox: the overlays' upper directories etc/,
	// usr-share/ and var-lib/, the launcher sandbox.sh and the paths below.
	Dir string
	// DataDir is the client's state directory (--data): mender-agent.pem,
	// the mender-store database, device_type and the deployment logs
	// deployments.NNNN.<deployment id>.log.
	DataDir string
	// Target receives the files ModuleType installs.
	Target string
	// DownloadGate holds deployments: while this file exists, the update
	// modules wait in their Download state, so the client stays in its
	// download (status "downloading") until the test removes it.
	DownloadGate string
	// LogPath is the client's log (--log-file, debug level); OutputPath
	// gets the standard output and error of the launcher and the client.
	LogPath    string
	OutputPath string
	// Config is mender.conf, Identity the identity the client sends.
	Config   string
	Identity map[string]string
	// Args is the command line.
	Args []string

	bin       Binaries
	callsPath string
	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error

	stopOnce sync.Once
	stopErr  error
}

// Start runs `mender daemon` in a new sandbox; t's cleanup stops it and
// removes the sandbox.
func Start(t testing.TB, opts Options) *Device {
	t.Helper()
	bin := FindBinaries(t)
	if err := checkSandboxing(); err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: a test name may put a ',' into the path, which
	// overlayfs options cannot carry.
	dir, err := os.MkdirTemp("", "mendertest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d, err := start(bin, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop mender: %v", err)
		}
	})
	return d
}

// checkSandboxing reports why the sandbox cannot be set up here.
func checkSandboxing() error {
	if os.Geteuid() != 0 {
		return errors.New("mendertest: the Mender client runs in its own mount namespace with overlay " +
			"mounts over /etc, /usr/share and /var/lib, which needs root: run the tests as root (CI does)")
	}
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("mendertest: %s (util-linux) is needed for the sandbox: %w", tool, err)
		}
	}
	return nil
}

// overlaid are the host directories the sandbox overlays, with the name
// of their upper directory in the sandbox.
var overlaid = [][2]string{{"/etc", "etc"}, {"/usr/share", "usr-share"}, {"/var/lib", "var-lib"}}

func start(bin Binaries, dir string, opts Options) (*Device, error) {
	if err := checkSandboxDir(dir); err != nil {
		return nil, err
	}
	if opts.ServerURL == "" {
		return nil, errors.New("mendertest: Options.ServerURL is required")
	}
	identity := opts.Identity
	if len(identity) == 0 {
		identity = map[string]string{"mac": randomMAC()}
	}
	d := &Device{
		Dir:          dir,
		DataDir:      filepath.Join(dir, "data"),
		Target:       filepath.Join(dir, "target"),
		DownloadGate: filepath.Join(dir, "hold-download"),
		LogPath:      filepath.Join(dir, "mender.log"),
		OutputPath:   filepath.Join(dir, "output.log"),
		Identity:     maps.Clone(identity),
		bin:          bin,
		callsPath:    filepath.Join(dir, "module-calls"),
		exited:       make(chan struct{}),
	}
	conf, err := d.populate(opts)
	if err != nil {
		return nil, err
	}
	d.Config = conf

	var mounts []string
	for _, o := range overlaid {
		mounts = append(mounts, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s %s",
			o[0], filepath.Join(dir, o[1]), filepath.Join(dir, "work", o[1]), o[0]))
	}
	launcher := filepath.Join(dir, "sandbox.sh")
	if err := os.WriteFile(launcher, []byte(launcherScript(mounts)), 0o755); err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	// PID 1 of a new PID namespace: when it ends, the kernel kills every
	// process it left (update modules run in their own process groups).
	// --kill-child: should unshare die, the client dies with it.
	d.Args = []string{"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
		"--", "/bin/sh", launcher,
		bin.Mender, "--no-syslog", "--log-level", "debug", "--log-file", d.LogPath, "--data", d.DataDir, "daemon"}
	out, err := os.Create(d.OutputPath)
	if err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(d.Args[0], d.Args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	// Stop signals the whole group; should the test binary die, unshare
	// is killed, and the namespace with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("mendertest: start mender: %w", err)
	}
	d.cmd = cmd
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

// checkSandboxDir refuses directories overlayfs cannot take: option
// separators in the path, or inside an overlaid directory.
func checkSandboxDir(dir string) error {
	if !filepath.IsAbs(dir) || strings.ContainsAny(dir, ",:\\\n") {
		return fmt.Errorf("mendertest: sandbox directory %q must be absolute, without ',', ':', '\\' or newlines "+
			"(overlayfs options); set TMPDIR to a plainer directory", dir)
	}
	for _, o := range overlaid {
		if dir == o[0] || strings.HasPrefix(dir, o[0]+"/") {
			return fmt.Errorf("mendertest: sandbox directory %s is inside %s, which the sandbox overlays; set TMPDIR elsewhere", dir, o[0])
		}
	}
	return nil
}

// launcherScript mounts each "options target" overlay and execs its
// arguments; it runs in a private mount namespace.
func launcherScript(mounts []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Runs \"$@\" with overlays over host directories; run it under\n" +
		"# `unshare --mount --propagation private`, so the host never sees them.\nset -eu\n")
	for _, m := range mounts {
		opts, target, _ := strings.Cut(m, " ")
		fmt.Fprintf(&b, "mount -t overlay overlay -o %s %s\n", shellQuote(opts), shellQuote(target))
	}
	b.WriteString("exec \"$@\"\n")
	return b.String()
}

// menderConf is the part of mender.conf (conf.MenderConfigFromFile at
// 3.4.0) the sandbox sets.
type menderConf struct {
	ServerURL                    string
	TenantToken                  string `json:",omitempty"`
	UpdatePollIntervalSeconds    int
	InventoryPollIntervalSeconds int
	RetryPollIntervalSeconds     int
	ArtifactVerifyKey            string `json:",omitempty"`
	// DBus is compiled in and enabled by default; the sandbox has no
	// system bus.
	DBus struct{ Enabled bool }
}

// populate writes the upper directories, the data directory and the
// module files; it returns mender.conf.
func (d *Device) populate(opts Options) (string, error) {
	etc := filepath.Join(d.Dir, "etc", "mender")
	share := filepath.Join(d.Dir, "usr-share", "mender")
	for _, p := range []string{
		etc, filepath.Join(share, "identity"), filepath.Join(share, "inventory"), filepath.Join(share, "modules", "v3"),
		filepath.Join(d.Dir, "var-lib"), d.DataDir, d.Target,
	} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
	}
	for _, o := range overlaid {
		if err := os.MkdirAll(filepath.Join(d.Dir, "work", o[1]), 0o755); err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
	}
	conf := menderConf{
		ServerURL:                    opts.ServerURL,
		TenantToken:                  opts.TenantToken,
		UpdatePollIntervalSeconds:    posOr(opts.UpdatePollSeconds, 1),
		InventoryPollIntervalSeconds: posOr(opts.InventoryPollSeconds, 2),
		RetryPollIntervalSeconds:     posOr(opts.RetryPollSeconds, 1),
	}
	files := map[string]string{}
	if opts.ArtifactVerifyKey != nil {
		conf.ArtifactVerifyKey = filepath.Join(etc, "artifact-verify-key.pem")
		files[conf.ArtifactVerifyKey] = string(opts.ArtifactVerifyKey)
	}
	confJSON, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return "", fmt.Errorf("mendertest: %w", err)
	}
	identity, err := keyValueLines(d.Identity)
	if err != nil {
		return "", fmt.Errorf("mendertest: identity: %w", err)
	}
	files[filepath.Join(etc, "mender.conf")] = string(confJSON) + "\n"
	files[filepath.Join(etc, "artifact_info")] = "artifact_name=" + cmp.Or(opts.ArtifactName, defaultArtifactName) + "\n"
	files[filepath.Join(d.DataDir, "device_type")] = "device_type=" + cmp.Or(opts.DeviceType, defaultDeviceType) + "\n"
	if opts.KeyPEM != nil {
		files[filepath.Join(d.DataDir, "mender-agent.pem")] = string(opts.KeyPEM)
	}
	scripts := map[string]string{
		filepath.Join(share, "identity", "mender-device-identity"): keyValueScript(identity),
	}
	if len(opts.Inventory) > 0 {
		inventory, err := keyValueLines(opts.Inventory)
		if err != nil {
			return "", fmt.Errorf("mendertest: inventory: %w", err)
		}
		scripts[filepath.Join(share, "inventory", "mender-inventory-otaflow")] = keyValueScript(inventory)
	}
	for _, typ := range []string{ModuleType, FailingModuleType} {
		scripts[filepath.Join(share, "modules", "v3", typ)] = moduleScript(typ, d.Target, d.callsPath, d.DownloadGate)
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
	}
	for p, s := range scripts {
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
	}
	return string(confJSON), nil
}

// keyValueLines renders m as sorted key=value lines.
func keyValueLines(m map[string]string) ([]string, error) {
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" || strings.ContainsAny(k, "=\n") || strings.Contains(m[k], "\n") {
			return nil, fmt.Errorf("%q=%q: want a key without '=' and no newlines", k, m[k])
		}
		lines = append(lines, k+"="+m[k])
	}
	return lines, nil
}

// randomMAC is a locally administered unicast MAC address.
func randomMAC() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = b[0]&0xfe | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

func posOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Log returns the client's log so far, then anything the launcher or the
// client wrote to standard output or error.
func (d *Device) Log() string {
	log, err := os.ReadFile(d.LogPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log = fmt.Appendf(nil, "(read %s: %v)\n", d.LogPath, err)
	}
	if out, err := os.ReadFile(d.OutputPath); err == nil && len(bytes.TrimSpace(out)) > 0 {
		log = append(log, "--- standard output and error:\n"...)
		log = append(log, out...)
	}
	return string(log)
}

// WaitLog waits until the log contains substr, the client exits or
// timeout passes.
func (d *Device) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(d.Log(), substr) {
			return nil
		}
		select {
		case <-d.exited:
			if strings.Contains(d.Log(), substr) {
				return nil
			}
			return fmt.Errorf("mender exited (%v) before logging %q", d.waitErr, substr)
		case <-deadline.C:
			return fmt.Errorf("mender did not log %q within %v", substr, timeout)
		case <-tick.C:
		}
	}
}

// Exited is closed when the client (its unshare) has exited.
func (d *Device) Exited() <-chan struct{} { return d.exited }

// CurrentArtifact is the artifact name the client considers installed
// (`mender show-artifact`: the database after an update, artifact_info
// before). It runs in a sandbox of its own that shows the device's
// /etc/mender read-only.
func (d *Device) CurrentArtifact() (string, error) {
	q, err := os.MkdirTemp("", "mendertest-query")
	if err != nil {
		return "", fmt.Errorf("mendertest: %w", err)
	}
	defer os.RemoveAll(q)
	if err := checkSandboxDir(q); err != nil {
		return "", err
	}
	// A copy: the client's upper directory must not be a layer of a
	// second overlay while its own is mounted.
	etc := filepath.Join(q, "etc", "mender")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return "", fmt.Errorf("mendertest: %w", err)
	}
	for _, name := range []string{"mender.conf", "artifact_info"} {
		b, err := os.ReadFile(filepath.Join(d.Dir, "etc", "mender", name))
		if err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(etc, name), b, 0o600); err != nil {
			return "", fmt.Errorf("mendertest: %w", err)
		}
	}
	launcher := filepath.Join(q, "sandbox.sh")
	script := launcherScript([]string{"ro,lowerdir=" + filepath.Join(q, "etc") + ":/etc /etc"})
	if err := os.WriteFile(launcher, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("mendertest: %w", err)
	}
	out, err := runTool(q, "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", launcher,
		d.bin.Mender, "--no-syslog", "--data", d.DataDir, "show-artifact")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// InstalledFile is a file ModuleType installed into Target.
func (d *Device) InstalledFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.Target, name))
}

// ModuleCalls are the update module calls so far, "TYPE STATE" each.
func (d *Device) ModuleCalls() []string {
	b, err := os.ReadFile(d.callsPath)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// LogEntry is one line of a deployment log, as the client stores and
// uploads it (PUT .../deployments/{id}/log as {"messages": [...]}).
type LogEntry struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
}

// DeploymentLog is the client's log of a deployment, read from its files
// (deployments.NNNN.<id>.log in DataDir, JSON lines).
func (d *Device) DeploymentLog(deploymentID string) ([]LogEntry, error) {
	paths, err := filepath.Glob(filepath.Join(d.DataDir, "deployments.*."+deploymentID+".log"))
	if err != nil {
		return nil, fmt.Errorf("mendertest: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("mendertest: no deployment log for %s in %s", deploymentID, d.DataDir)
	}
	// Rotation renumbers older files upwards: the highest is the oldest.
	slices.Sort(paths)
	slices.Reverse(paths)
	var entries []LogEntry
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("mendertest: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		for dec.More() {
			var e LogEntry
			if err := dec.Decode(&e); err != nil {
				return nil, fmt.Errorf("mendertest: %s: %w", p, err)
			}
			entries = append(entries, e)
		}
	}
	return entries, nil
}

// Stop terminates the client (SIGTERM, then SIGKILL) and waits until it is
// gone; its PID namespace, mounts and update modules end with it.
// Idempotent.
func (d *Device) Stop() error {
	d.stopOnce.Do(func() { d.stopErr = d.stop() })
	return d.stopErr
}

func (d *Device) stop() error {
	pgid := d.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-d.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mendertest: unshare (pid %d) did not exit after SIGKILL", pgid)
	}
}
