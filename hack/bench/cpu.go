package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// procStat reads a process's parent and its CPU time (user + system, all
// threads) from /proc/<pid>/stat.
func procStat(pid int) (ppid int, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid … utime stime …": comm may hold spaces and
	// parentheses, so fields are counted after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // state(0) ppid(1) … utime(11) stime(12)
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	var ticks int64
	for _, x := range f[11:13] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: cpu time: %w", pid, err)
		}
		ticks += n
	}
	return ppid, time.Duration(ticks) * clockTick, nil
}

// treeCPU is the CPU time of pid and its direct children (for the
// PostgreSQL postmaster: its backends and background workers). Children
// that exited in between are not counted; the benchmark's are long-lived
// pool connections.
func treeCPU(pid int) (time.Duration, error) {
	_, total, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		ppid, cpu, err := procStat(p)
		if err != nil || ppid != pid { // gone, or not a child
			continue
		}
		total += cpu
	}
	return total, nil
}

// cpuMeter samples the CPU time of a set of processes over a load run's
// measured window (after its warm-up), so CPU per request can be derived
// from the requests runLoad counts in the same window.
type cpuMeter struct {
	done chan struct{}
	used map[string]time.Duration
	err  error
}

// meterCPU starts sampling: each counter is read when the warm-up ends
// and again when the window closes.
func meterCPU(ctx context.Context, warmup, window time.Duration, counters map[string]func() (time.Duration, error)) *cpuMeter {
	m := &cpuMeter{done: make(chan struct{}), used: map[string]time.Duration{}}
	go func() {
		defer close(m.done)
		sample := func() map[string]time.Duration {
			out := map[string]time.Duration{}
			for name, f := range counters {
				d, err := f()
				if err != nil && m.err == nil {
					m.err = fmt.Errorf("cpu time of %s: %w", name, err)
				}
				out[name] = d
			}
			return out
		}
		wait := func(d time.Duration) bool {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return false
			case <-t.C:
				return true
			}
		}
		if !wait(warmup) {
			m.err = ctx.Err()
			return
		}
		start := sample()
		if !wait(window) {
			m.err = ctx.Err()
			return
		}
		for name, d := range sample() {
			m.used[name] = d - start[name]
		}
	}()
	return m
}

// Wait returns each counter's CPU time over the window.
func (m *cpuMeter) Wait() (map[string]time.Duration, error) {
	<-m.done
	return m.used, m.err
}

// perRequest is CPU microseconds per request.
func perRequest(cpu time.Duration, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Microsecond) / float64(requests)
}

// childCPU counts a server child's CPU time.
func childCPU(c *child) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		_, cpu, err := procStat(c.proc.Pid)
		return cpu, err
	}
}

// loadWithCPU runs spec and reports, with its result, each counter's CPU
// microseconds per request counted in the measured window.
func loadWithCPU(ctx context.Context, client *http.Client, spec loadSpec, counters map[string]func() (time.Duration, error)) (loadResult, map[string]float64, error) {
	m := meterCPU(ctx, spec.Warmup, spec.Duration, counters)
	r := runLoad(ctx, client, spec)
	used, err := m.Wait()
	if err != nil {
		return r, nil, err
	}
	per := map[string]float64{}
	for name, d := range used {
		per[name] = perRequest(d, r.Requests)
	}
	return r, per, nil
}

// selfCPU counts this process's CPU time (the load generator).
func selfCPU() (time.Duration, error) {
	_, cpu, err := procStat(os.Getpid())
	return cpu, err
}

// fmtCPU lists CPU µs per request in a fixed order.
func fmtCPU(per map[string]float64, names ...string) string {
	var s []string
	for _, n := range names {
		if v, ok := per[n]; ok {
			s = append(s, fmt.Sprintf("%s %.0f µs", n, v))
		}
	}
	return strings.Join(s, ", ")
}
