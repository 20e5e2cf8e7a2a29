package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FleetOptions configure a fleetsim run.
type FleetOptions struct {
	Name          string // used for the log and summary file names
	Devices       int
	IDPrefix      string
	DeviceType    string
	Version       string
	Labels        string   // fleetsim --labels
	Failures      []string // extra fleetsim flags, e.g. "--install-failure=0.5@version=2.2.0"
	Seed          int64
	PollInterval  string
	SummaryPeriod bool
	// SecurityFloor the devices start with (fleetsim --security-floor).
	SecurityFloor int64
	// BootstrapToken enrolls the fleet; empty: the stack's cluster-wide
	// BootstrapToken.
	BootstrapToken string
	// SummaryInterval makes fleetsim rewrite its summary this often while
	// it runs (--summary-interval), for WaitSummary; 0 writes it on exit
	// only.
	SummaryInterval time.Duration
}

// FleetSummary is what fleetsim writes to --summary-json.
type FleetSummary struct {
	Devices   int            `json:"devices"`
	ByVersion map[string]int `json:"byVersion"`
	ByState   map[string]int `json:"byState"`
	Refusals  map[string]int `json:"refusals"`
	Reports   int            `json:"reports"`
	// Responses counts the HTTP answers the devices got by status code,
	// RetryAfter those with a Retry-After header, TransportErrors requests
	// that got no answer (a server down).
	Responses       map[string]int `json:"responses"`
	RetryAfter      map[string]int `json:"retryAfter"`
	TransportErrors int            `json:"transportErrors"`
	DevicesDetail   []FleetDevice  `json:"devicesDetail"`
}

// FleetDevice is one device of a fleet summary.
type FleetDevice struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	// SecurityFloor is the committed floor: raised when the rollout that
	// updated the device commits and the server sends commit, not at boot.
	SecurityFloor int64 `json:"securityFloor"`
	// PendingFloor is the running release's securityVersion while it is
	// not committed, else 0.
	PendingFloor   int64  `json:"pendingFloor"`
	LastState      string `json:"lastState"`
	LastReason     string `json:"lastReason"`
	Reports        int    `json:"reports"`
	PendingReports int    `json:"pendingReports"`
}

// Fleet is a running fleetsim.
type Fleet struct {
	*Process
	SummaryPath string
}

// StartFleet runs fleetsim against the OTA server, its devices spread over
// the replicas when there are several.
func (s *Stack) StartFleet(o FleetOptions) (*Fleet, error) {
	if s.Opts.DeviceTLS {
		return nil, errors.New("StartFleet: fleetsim is given no CA, so it cannot run with StackOptions.DeviceTLS")
	}
	if o.DeviceType == "" {
		o.DeviceType = "sensor-v1"
	}
	if o.PollInterval == "" {
		o.PollInterval = "1s"
	}
	summary := filepath.Join(s.Opts.Dir, o.Name+"-summary.json")
	if o.BootstrapToken == "" {
		o.BootstrapToken = s.BootstrapToken
	}
	args := []string{
		// Device i talks to replica i mod n (one replica: its URL alone).
		"--server=" + strings.Join(s.ServerURLs(), ","),
		"--bootstrap-token=" + o.BootstrapToken,
		"--assignment-key=" + s.AssignmentKeyFile,
		"--vendor-key=" + s.VendorKeyFile,
		"--devices=" + strconv.Itoa(o.Devices),
		"--id-prefix=" + o.IDPrefix,
		"--device-type=" + o.DeviceType,
		"--version=" + o.Version,
		"--poll-interval=" + o.PollInterval,
		"--seed=" + strconv.FormatInt(o.Seed, 10),
		"--summary-json=" + summary,
		"--progress=plain",
	}
	if o.Labels != "" {
		args = append(args, "--labels="+o.Labels)
	}
	if o.SecurityFloor != 0 {
		args = append(args, "--security-floor="+strconv.FormatInt(o.SecurityFloor, 10))
	}
	if o.SummaryInterval > 0 {
		args = append(args, "--summary-interval="+o.SummaryInterval.String())
	}
	args = append(args, o.Failures...)
	p, err := StartProcess(ProcessSpec{
		Name:    "fleetsim " + o.Name,
		Path:    filepath.Join(s.Opts.BinDir, "fleetsim"),
		Args:    args,
		LogPath: filepath.Join(s.Opts.Dir, o.Name+".log"),
	})
	if err != nil {
		return nil, err
	}
	return &Fleet{Process: p, SummaryPath: summary}, nil
}

// Summary reads the summary fleetsim wrote.
func (f *Fleet) Summary() (*FleetSummary, error) {
	b, err := os.ReadFile(f.SummaryPath)
	if err != nil {
		return nil, fmt.Errorf("read fleet summary: %w", err)
	}
	var s FleetSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode fleet summary: %w", err)
	}
	return &s, nil
}

// WaitSummary polls the summary a fleet started with SummaryInterval
// rewrites while it runs, until done says so, and returns that summary. It
// fails when ctx ends (with the last summary's versions and floors in the
// error) or when fleetsim exits first.
func (f *Fleet) WaitSummary(ctx context.Context, done func(*FleetSummary) bool) (*FleetSummary, error) {
	var last *FleetSummary
	for {
		if s, err := f.Summary(); err == nil {
			last = s
			if done(s) {
				return s, nil
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("waiting for %s: %w (last summary: %s)", f.Name(), ctx.Err(), last.Brief())
		case <-f.Exited():
			return last, fmt.Errorf("%s exited while waiting for its summary (log: %s): %v", f.Name(), f.LogPath(), f.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Brief is "N devices, by version {…}, by floor {…}", for messages.
func (s *FleetSummary) Brief() string {
	if s == nil {
		return "none yet"
	}
	floors := map[string]int{}
	for _, d := range s.DevicesDetail {
		k := strconv.FormatInt(d.SecurityFloor, 10)
		if d.PendingFloor != 0 {
			k += fmt.Sprintf(" (pending %d)", d.PendingFloor)
		}
		floors[k]++
	}
	return fmt.Sprintf("%d devices, by version %v, by state %v, by floor %v", s.Devices, s.ByVersion, s.ByState, floors)
}

// All reports whether every device satisfies ok (and there is at least
// one).
func (s *FleetSummary) All(ok func(FleetDevice) bool) bool {
	for _, d := range s.DevicesDetail {
		if !ok(d) {
			return false
		}
	}
	return len(s.DevicesDetail) > 0
}
