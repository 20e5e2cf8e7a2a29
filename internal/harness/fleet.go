package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
}

// FleetSummary is what fleetsim writes to --summary-json.
type FleetSummary struct {
	Devices       int            `json:"devices"`
	ByVersion     map[string]int `json:"byVersion"`
	ByState       map[string]int `json:"byState"`
	Refusals      map[string]int `json:"refusals"`
	Reports       int            `json:"reports"`
	DevicesDetail []struct {
		ID             string `json:"id"`
		Version        string `json:"version"`
		SecurityFloor  int64  `json:"securityFloor"`
		LastState      string `json:"lastState"`
		LastReason     string `json:"lastReason"`
		Reports        int    `json:"reports"`
		PendingReports int    `json:"pendingReports"`
	} `json:"devicesDetail"`
}

// Fleet is a running fleetsim.
type Fleet struct {
	*Process
	SummaryPath string
}

// StartFleet runs fleetsim against the OTA server.
func (s *Stack) StartFleet(o FleetOptions) (*Fleet, error) {
	if o.DeviceType == "" {
		o.DeviceType = "sensor-v1"
	}
	if o.PollInterval == "" {
		o.PollInterval = "1s"
	}
	summary := filepath.Join(s.Opts.Dir, o.Name+"-summary.json")
	args := []string{
		"--server=" + s.ServerURL,
		"--bootstrap-token=" + s.BootstrapToken,
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
