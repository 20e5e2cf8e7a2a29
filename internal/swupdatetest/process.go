package swupdatetest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 3 * time.Second
	// goneTimeout bounds the wait for the whole process group to vanish.
	goneTimeout = 10 * time.Second
)

// Config is one SWUpdate client running suricatta against a hawkBit DDI
// server.
type Config struct {
	// URL is the server's base URL (scheme, host, port; the client appends
	// /{tenant}/controller/v1/{id}). URL, Tenant and ControllerID are
	// required and must not contain white space (SWUpdate splits its -u
	// argument at spaces).
	URL          string
	Tenant       string
	ControllerID string
	// TargetToken or GatewayToken (at most one) is sent as
	// `Authorization: TargetToken <t>` / `GatewayToken <t>`.
	TargetToken  string
	GatewayToken string
	// CAFile is the PEM CA bundle the client verifies the server with.
	CAFile string
	// Signer's certificate verifies images (`-k`); required.
	Signer *Signer
	// PollSeconds is the delay between polls until the server's first
	// answer; from then on each answer's config.polling.sleep rules (0
	// means 45 s; in SWUpdate's WAIT state it is divided by 10, so a sleep
	// under 10 s becomes 45 s there). Default 1.
	PollSeconds int
	// HardwareType and HardwareRevision are `-H type:revision`; the
	// revision must be in an image's hardware-compatibility. Defaults
	// "sandbox" and "1.0".
	HardwareType     string
	HardwareRevision string
	// Identify is the `identify` section: the attributes the client PUTs
	// to configData (the server reads `version` from it). SWUpdate puts
	// keys and values into the JSON unescaped.
	Identify map[string]string
	// ConfirmState, when not 0, is the `-c` update state the client
	// reports right after starting (the post-reboot report): 1 installed
	// (hawkBit "proceeding"), 2 testing (closed/success), 3 failed
	// (closed/failure).
	ConfirmState int
	// Retry and RetryWait bound download resumption (suricatta retry /
	// retrywait); defaults 3 and 1 s.
	Retry     int
	RetryWait int
	// ReportResendSeconds is the wait between retries of the ConfirmState
	// report (initial-report-resend-period); default 1.
	ReportResendSeconds int
	// ExtraSuricattaArgs are appended to the -u argument (e.g. "-n", "20k"
	// for a download speed limit).
	ExtraSuricattaArgs []string
	// Dir receives swupdate.cfg and swupdate.log; default t.TempDir().
	Dir string
}

// Process is a running SWUpdate.
type Process struct {
	// Args is the command line, Config the swupdate.cfg text, LogPath
	// where stdout and stderr go.
	Args    []string
	Config  string
	LogPath string

	cmd     *exec.Cmd
	tmpDir  string
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Start writes the configuration and starts SWUpdate; t's cleanup stops
// it.
func Start(t testing.TB, cfg Config) *Process {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	p, err := start(Binary(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop swupdate: %v", err)
		}
	})
	return p
}

func start(bin string, cfg Config) (*Process, error) {
	conf, args, err := render(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(cfg.Dir, "swupdate.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("swupdatetest: %w", err)
	}
	args = append([]string{"-f", cfgPath}, args...)
	// The IPC sockets live in TMPDIR and their paths must fit sun_path
	// (108 bytes): a short private directory, not t.TempDir.
	tmpDir, err := os.MkdirTemp("", "swu")
	if err != nil {
		return nil, fmt.Errorf("swupdatetest: %w", err)
	}
	logPath := filepath.Join(cfg.Dir, "swupdate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		_ = os.RemoveAll(tmpDir)
		return nil, fmt.Errorf("swupdatetest: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmpDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group: SWUpdate forks its suricatta and helper
	// processes, Stop signals them all. Should the test binary die, the
	// daemon is killed, and its children end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(tmpDir)
		return nil, fmt.Errorf("swupdatetest: start %s: %w", bin, err)
	}
	p := &Process{
		Args:    append([]string{bin}, args...),
		Config:  conf,
		LogPath: logPath,
		cmd:     cmd,
		tmpDir:  tmpDir,
		exited:  make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// render returns swupdate.cfg and the arguments after -f.
func render(cfg Config) (conf string, args []string, err error) {
	for name, v := range map[string]string{"URL": cfg.URL, "Tenant": cfg.Tenant, "ControllerID": cfg.ControllerID} {
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			return "", nil, fmt.Errorf("swupdatetest: Config.%s %q is empty or contains white space", name, v)
		}
	}
	if cfg.TargetToken != "" && cfg.GatewayToken != "" {
		return "", nil, errors.New("swupdatetest: set TargetToken or GatewayToken, not both")
	}
	if cfg.Signer == nil {
		return "", nil, errors.New("swupdatetest: Config.Signer is required (images are verified with it)")
	}
	if cfg.ConfirmState < 0 || cfg.ConfirmState > 3 {
		return "", nil, fmt.Errorf("swupdatetest: Config.ConfirmState %d: want 0 (none) or 1..3", cfg.ConfirmState)
	}
	hwType, hwRev := cmp.Or(cfg.HardwareType, "sandbox"), cmp.Or(cfg.HardwareRevision, "1.0")
	if strings.ContainsAny(hwType+hwRev, ": \t") {
		return "", nil, fmt.Errorf("swupdatetest: hardware %q:%q contains ':' or white space", hwType, hwRev)
	}
	var b strings.Builder
	b.WriteString("globals:\n{\n\tverbose = true;\n\tloglevel = 6;\n};\n\n")
	b.WriteString("suricatta:\n{\n")
	fmt.Fprintf(&b, "\tpolldelay = %d;\n", posOr(cfg.PollSeconds, 1))
	fmt.Fprintf(&b, "\tretry = %d;\n", posOr(cfg.Retry, 3))
	fmt.Fprintf(&b, "\tretrywait = %s;\n", quote(strconv.Itoa(posOr(cfg.RetryWait, 1))))
	fmt.Fprintf(&b, "\tinitial-report-resend-period = %d;\n", posOr(cfg.ReportResendSeconds, 1))
	if cfg.TargetToken != "" {
		fmt.Fprintf(&b, "\ttargettoken = %s;\n", quote(cfg.TargetToken))
	}
	if cfg.GatewayToken != "" {
		fmt.Fprintf(&b, "\tgatewaytoken = %s;\n", quote(cfg.GatewayToken))
	}
	if cfg.CAFile != "" {
		fmt.Fprintf(&b, "\tcafile = %s;\n", quote(cfg.CAFile))
	}
	b.WriteString("};\n")
	if len(cfg.Identify) > 0 {
		b.WriteString("\nidentify = (\n")
		keys := slices.Sorted(maps.Keys(cfg.Identify))
		for i, k := range keys {
			sep := ","
			if i == len(keys)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "\t{ name = %s; value = %s; }%s\n", quote(k), quote(cfg.Identify[k]), sep)
		}
		b.WriteString(");\n")
	}

	suricatta := []string{"-t", cfg.Tenant, "-i", cfg.ControllerID, "-u", cfg.URL}
	if cfg.ConfirmState != 0 {
		suricatta = append(suricatta, "-c", strconv.Itoa(cfg.ConfirmState))
	}
	for _, a := range cfg.ExtraSuricattaArgs {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			return "", nil, fmt.Errorf("swupdatetest: suricatta argument %q is empty or contains white space", a)
		}
	}
	suricatta = append(suricatta, cfg.ExtraSuricattaArgs...)
	args = []string{
		"-k", cfg.Signer.CertFile,
		"-H", hwType + ":" + hwRev,
		"-u", strings.Join(suricatta, " "),
	}
	return b.String(), args, nil
}

func posOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Log returns everything SWUpdate wrote so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// WaitLog waits until the log contains substr, the process exits or
// timeout passes.
func (p *Process) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(p.LogPath); err == nil && bytes.Contains(b, []byte(substr)) {
			return nil
		}
		select {
		case <-p.exited:
			if b, err := os.ReadFile(p.LogPath); err == nil && bytes.Contains(b, []byte(substr)) {
				return nil
			}
			return fmt.Errorf("swupdate exited (%v) before logging %q", p.waitErr, substr)
		case <-deadline.C:
			return fmt.Errorf("swupdate did not log %q within %v", substr, timeout)
		case <-tick.C:
		}
	}
}

// Exited is closed when the main process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Pgid is the process group of SWUpdate and its children.
func (p *Process) Pgid() int { return p.cmd.Process.Pid }

// Stop terminates the process group (SIGTERM, then SIGKILL), waits until
// no process of it is left and removes the private TMPDIR. Idempotent.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	defer os.RemoveAll(p.tmpDir)
	pgid := p.Pgid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
	}
	// Children may outlive the main process: always kill the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
	deadline := time.Now().Add(goneTimeout)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still has processes %v after SIGKILL", pgid, groupMembers(pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// groupAlive reports whether a live (not zombie) process is in group
// pgid. Orphaned children are reaped by init, which may lag: zombies do
// not count.
func groupAlive(pgid int) bool {
	return len(groupMembers(pgid)) > 0
}

// groupMembers lists the non-zombie processes of group pgid, from /proc.
func groupMembers(pgid int) []int {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pgid}
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}
