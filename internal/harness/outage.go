package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// An API server outage: the kube-apiserver process is stopped while etcd
// keeps running (and keeps the data), then started again with the same
// command line, so its certificates, port and users stay valid.

// apiserverProc is a kube-apiserver this package restarted itself.
type apiserverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StopAPIServer stops the kube-apiserver (SIGTERM, then SIGKILL after
// timeout) and remembers how to start it again.
func (c *ControlPlane) StopAPIServer(timeout time.Duration) error {
	if c.stoppedArgs != nil {
		return errors.New("API server already stopped")
	}
	var pid int
	var args []string
	if c.restarted != nil {
		pid, args = c.restarted.cmd.Process.Pid, c.restarted.cmd.Args
	} else {
		var err error
		if pid, args, err = findChild("kube-apiserver"); err != nil {
			return err
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for alive(pid, c.restarted) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stoppedArgs = args
	return nil
}

// StartAPIServer starts the API server stopped by StopAPIServer again and
// waits until it answers.
func (c *ControlPlane) StartAPIServer(ctx context.Context, logPath string) error {
	if c.stoppedArgs == nil {
		return errors.New("API server not stopped")
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.stoppedArgs[0], c.stoppedArgs[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("restart kube-apiserver: %w", err)
	}
	p := &apiserverProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	c.restarted, c.stoppedArgs = p, nil
	for {
		err := c.Client.List(ctx, &corev1.NamespaceList{})
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("kube-apiserver exited after restart (log: %s)", logPath)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after restart: %w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopRestarted stops an API server this package started.
func (c *ControlPlane) stopRestarted() {
	if c.restarted == nil {
		return
	}
	_ = syscall.Kill(c.restarted.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.restarted.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(c.restarted.cmd.Process.Pid, syscall.SIGKILL)
		<-c.restarted.done
	}
}

func alive(pid int, own *apiserverProc) bool {
	if own != nil {
		select {
		case <-own.done:
			return false
		default:
			return true
		}
	}
	// A child the envtest package waits for: gone once reaped.
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// findChild finds this process's child named comm and its command line.
func findChild(comm string) (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || close < open || string(stat[open+1:close]) != comm {
			continue
		}
		fields := strings.Fields(string(stat[close+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			return 0, nil, err
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		return pid, args, nil
	}
	return 0, nil, fmt.Errorf("no child process %s", comm)
}
