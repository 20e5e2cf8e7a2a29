package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"

	"github.com/otaflow/otaflow/agent"
)

// simDevice is one simulated device: an agent with in-memory state and a
// simulated installer and bootloader.
type simDevice struct {
	id     string
	labels map[string]string
	faults *faults
	a      *agent.Agent

	mu            sync.Mutex
	running       string
	pending       string // installed version awaiting reboot
	pendingDigest string
	digest        string // SHA-256 of the running image
	boot          int64
	lastState     string
	lastReason    string
	neverReturned bool
	refusals      map[string]int
	reports       int
	// stop ends the device's current step.
	stop context.CancelFunc
	log  logr.Logger
}

func (d *simDevice) Running(context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running, nil
}

// Install keeps the image's digest; it fails when the install-failure
// fault hits this device and version.
func (d *simDevice) Install(_ context.Context, img agent.Image) error {
	if d.faults.hit(faultInstall, d.id, img.Version, d.labels) {
		return errors.New("simulated flash write error")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending, d.pendingDigest = img.Version, img.SHA256
	return nil
}

func (d *simDevice) Confirm(context.Context, string) error { return nil }

// reboot switches the running version, unless the device never comes back
// (it goes silent) or its bootloader reverts to the old image.
func (d *simDevice) reboot(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.pending
	if d.faults.hit(faultNever, d.id, target, d.labels) {
		d.neverReturned = true
		d.stop()
		return nil
	}
	d.boot++
	if !d.faults.hit(faultRevert, d.id, target, d.labels) {
		d.running, d.digest = target, d.pendingDigest
	}
	d.pending = ""
	return nil
}

func (d *simDevice) bootID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strconv.FormatInt(d.boot, 10)
}

func (d *simDevice) onEvent(e agent.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e.Kind {
	case agent.EventState:
		// Idle after an outcome keeps the outcome visible.
		if e.State == agent.StateIdle && d.lastState != "" && d.lastState != agent.StateIdle {
			return
		}
		d.lastState = e.State
		if e.Reason != "" || e.State != string(protov1.StateFailed) {
			d.lastReason = e.Reason
		}
	case agent.EventRefusal:
		d.refusals[e.Code]++
		d.lastReason = e.Reason
	case agent.EventReport:
		d.reports++
	}
}

// target is the version the device is working on ("" when idle); the
// corrupting transport uses it to decide per version.
func (d *simDevice) target() string {
	if w := d.a.State().Work; w != nil {
		return w.Assignment.Version
	}
	return ""
}

// corrupting flips one byte in the middle of blob downloads of devices
// the corrupt-download fault hits.
func (d *simDevice) corrupting(next http.RoundTripper) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil || !strings.HasPrefix(r.URL.Path, "/v1/blobs/") || resp.StatusCode/100 != 2 {
			return resp, err
		}
		if !d.faults.hit(faultCorrupt, d.id, d.target(), d.labels) {
			return resp, nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			b[len(b)/2] ^= 0x5a
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// sim is the whole fleet.
type sim struct {
	opts    *options
	devices []*simDevice
	started time.Time // when the devices were made and could start
	sched   *scheduler
	// responses counts what every device's transport saw.
	responses *responseCounts
}

func newSim(o *options, transport http.RoundTripper, log logr.Logger) (*sim, error) {
	s := &sim{opts: o, responses: newResponseCounts(), sched: newScheduler(o.devices, time.Now), devices: make([]*simDevice, o.devices)}
	transport = s.responses.counting(transport)
	labels := assignLabels(o.labels, o.devices, o.seed)
	fl := &faults{seed: o.seed, rules: o.faults}
	// Each agent makes its key pair (X25519 scalar multiplications), which
	// at 100,000 devices is CPU seconds: use every core.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range o.devices {
		g.Go(func() error {
			d := &simDevice{
				id: fmt.Sprintf("%s%05d", o.idPrefix, i), labels: labels[i], faults: fl,
				running: o.version, refusals: map[string]int{}, stop: func() {},
			}
			d.log = log.WithValues("device", d.id)
			a, err := agent.New(agent.Config{
				ServerURL: o.servers[i%len(o.servers)], DeviceID: d.id, DeviceType: o.deviceType, Labels: d.labels,
				BootstrapToken: o.bootstrap, AssignmentKeyPEM: o.assignmentKey, VendorKeysPEM: o.vendorKeys,
				HTTPClient:   &http.Client{Transport: d.corrupting(transport)},
				PollInterval: o.poll, PollJitter: 0.2, ProgressInterval: 5 * o.poll, KeyCheckInterval: o.keyCheck,
				Backoff: agent.Backoff{Initial: o.poll, Max: 30 * o.poll},
				Store:   agent.NewMemStore(), Staging: agent.DiscardStaging{}, Installer: d,
				Reboot: d.reboot, BootID: d.bootID, Version: o.version, SecurityFloor: o.floor,
				Log: d.log, OnEvent: d.onEvent,
			})
			if err != nil {
				return err
			}
			d.a = a
			s.devices[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	s.started = time.Now()
	return s, nil
}

// run steps every device, the first steps spread over the first poll
// interval, until ctx ends; it returns once every step ended. At most
// --concurrency devices step at once (sched.go).
func (s *sim) run(ctx context.Context) {
	s.responses.fleet = ctx
	for i := range s.devices {
		s.sched.add(i, s.started.Add(time.Duration(rand.Int64N(int64(s.opts.poll)+1))))
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(s.opts.concurrency, len(s.devices)) {
		wg.Go(func() {
			for i := range work {
				if wait, ok := s.step(ctx, s.devices[i]); ok {
					s.sched.add(i, time.Now().Add(wait))
				}
			}
		})
	}
	s.sched.dispatch(ctx, work)
	wg.Wait()
}

// step runs one agent step of d, as agent.Run does between its sleeps, and
// returns when d is due again; false when d is gone (it never returned
// from a reboot) or the fleet stops.
func (s *sim) step(ctx context.Context, d *simDevice) (time.Duration, bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.mu.Lock()
	if d.neverReturned {
		d.mu.Unlock()
		return 0, false
	}
	d.stop = cancel // the reboot hook ends the step of a device that never returns
	d.mu.Unlock()
	wait, err := d.a.Step(sctx)
	d.mu.Lock()
	d.stop = func() {} // the step's context is not kept while the device waits
	d.mu.Unlock()
	if sctx.Err() != nil {
		return 0, false
	}
	if err != nil {
		d.log.Info("update step failed", "err", err.Error(), "retryIn", wait.String())
	}
	return wait, true
}
