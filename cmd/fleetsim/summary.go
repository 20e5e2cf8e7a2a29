package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the --summary-json document. Its keys are stable.
type Summary struct {
	Devices   int            `json:"devices"`
	ByVersion map[string]int `json:"byVersion"`
	ByState   map[string]int `json:"byState"`
	Refusals  map[string]int `json:"refusals"`
	Reports   int            `json:"reports"`
	// Responses counts HTTP answers by status code, RetryAfter those of
	// them that carried a Retry-After header, TransportErrors requests that
	// got no answer (server down): what the devices saw of the servers.
	Responses       map[string]int `json:"responses"`
	RetryAfter      map[string]int `json:"retryAfter"`
	TransportErrors int            `json:"transportErrors"`
	DevicesDetail   []DeviceDetail `json:"devicesDetail"`
}

// DeviceDetail is one device in the summary.
type DeviceDetail struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	// SecurityFloor is the device's committed anti-rollback floor: raised
	// by the server's commit once the rollout that updated the device
	// committed, not at boot.
	SecurityFloor int64 `json:"securityFloor"`
	// PendingFloor is the securityVersion of the running release while
	// its rollout has not committed (0 when nothing is pending).
	PendingFloor int64  `json:"pendingFloor"`
	LastState    string `json:"lastState"`
	LastReason   string `json:"lastReason"`
	// Reports counts the reports the server acknowledged (each report ID
	// once, retries included).
	Reports int `json:"reports"`
	// PendingReports counts reports not acknowledged yet when the run
	// ended (only in the final summary).
	PendingReports int `json:"pendingReports"`
}

// StateNeverReturned is the state of a device that rebooted and never came back.
const StateNeverReturned = "neverReturned"

func (s *sim) summary() Summary { return s.summarize(true) }

// summarize counts the fleet; with detail it lists every device too (the
// progress line needs only the counts).
func (s *sim) summarize(detail bool) Summary {
	out := Summary{Devices: len(s.devices), ByVersion: map[string]int{}, ByState: map[string]int{}, Refusals: map[string]int{}, DevicesDetail: []DeviceDetail{}}
	out.Responses, out.RetryAfter, out.TransportErrors = s.responses.snapshot()
	for _, d := range s.devices {
		st := d.a.Status()
		d.mu.Lock()
		state := d.lastState
		if state == "" {
			state = "idle"
		}
		if d.neverReturned {
			state = StateNeverReturned
		}
		out.ByVersion[d.running]++
		out.ByState[state]++
		for k, v := range d.refusals {
			out.Refusals[k] += v
		}
		out.Reports += d.reports
		if detail {
			out.DevicesDetail = append(out.DevicesDetail, DeviceDetail{
				ID: d.id, Version: d.running, SecurityFloor: st.SecurityFloor, PendingFloor: st.PendingFloor, LastState: state, LastReason: d.lastReason,
				Reports: d.reports,
			})
		}
		d.mu.Unlock()
	}
	return out
}

// finalSummary is the summary once every device stopped: it adds what
// only a stopped agent may be asked (its pending reports).
func (s *sim) finalSummary() Summary {
	out := s.summary()
	for i, d := range s.devices {
		out.DevicesDetail[i].PendingReports = len(d.a.State().Pending)
	}
	return out
}

func writeSummaryJSON(w io.Writer, s Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// writeTable prints the human summary.
func writeTable(w io.Writer, s Summary, elapsed time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "devices\t%d\telapsed %s\treports %d\n", s.Devices, elapsed.Round(time.Second), s.Reports)
	section := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		keys := slices.Sorted(maps.Keys(m))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%d", k, m[k])
		}
		fmt.Fprintf(tw, "%s\t%s\n", title, strings.Join(parts, "  "))
	}
	section("version", s.ByVersion)
	section("state", s.ByState)
	section("refusals", s.Refusals)
	section("responses", s.Responses)
	section("retry-after", s.RetryAfter)
	if s.TransportErrors > 0 {
		fmt.Fprintf(tw, "no answer\t%d\n", s.TransportErrors)
	}
	_ = tw.Flush()
}
