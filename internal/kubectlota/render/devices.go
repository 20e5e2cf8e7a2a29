package render

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// Labels of devices the summary knows nothing about.
const (
	unknownVersion = "(unknown)"
	noRecord       = "(no record)"
)

// DeviceSummary counts a namespace's devices by version, state, type and
// protocol. It is built one page at a time with Add, so a fleet of any
// size costs as much memory as its distinct values.
type DeviceSummary struct {
	Namespace string
	// Rollout, when set, is the rollout the devices were selected by
	// (status.rollout) and whose states are counted.
	Rollout string

	Total      int64
	ByVersion  map[string]int64
	ByState    map[string]int64
	ByType     map[string]int64
	ByProtocol map[string]int64
}

// NewDeviceSummary starts an empty summary.
func NewDeviceSummary(namespace, rollout string) *DeviceSummary {
	return &DeviceSummary{
		Namespace: namespace, Rollout: rollout,
		ByVersion: map[string]int64{}, ByState: map[string]int64{},
		ByType: map[string]int64{}, ByProtocol: map[string]int64{},
	}
}

// Add counts one device.
func (s *DeviceSummary) Add(d *devv1.Device) {
	s.Total++
	s.ByVersion[orLabel(d.Status.Version, unknownVersion)]++
	s.ByState[s.stateOf(d)]++
	s.ByType[orLabel(d.Status.Type, unknownVersion)]++
	s.ByProtocol[orLabel(d.Status.Protocol, unknownVersion)]++
}

// stateOf is the device's state in the summary's rollout, or in the
// rollout whose record changed last when the summary has none.
func (s *DeviceSummary) stateOf(d *devv1.Device) string {
	if s.Rollout == "" {
		return orLabel(d.Status.State, noRecord)
	}
	for _, r := range d.Status.Rollouts {
		if r.Rollout == s.Rollout {
			return orLabel(r.State, noRecord)
		}
	}
	if d.Status.Rollout == s.Rollout {
		return orLabel(d.Status.State, noRecord)
	}
	return noRecord
}

// Devices writes the summary.
func Devices(w io.Writer, s *DeviceSummary) error {
	p := &printer{w: w}
	what := fmt.Sprintf("%d devices in namespace %s", s.Total, s.Namespace)
	if s.Rollout != "" {
		what = fmt.Sprintf("%d devices in namespace %s with a record in rollout %s", s.Total, s.Namespace, s.Rollout)
	}
	p.line(what)
	if s.Total == 0 {
		return p.err
	}
	stateTitle := "STATE (LAST ROLLOUT)"
	if s.Rollout != "" {
		stateTitle = "STATE IN " + s.Rollout
	}
	countTable(p, "VERSION", s.ByVersion, s.Total)
	countTable(p, stateTitle, s.ByState, s.Total)
	countTable(p, "TYPE", s.ByType, s.Total)
	countTable(p, "PROTOCOL", s.ByProtocol, s.Total)
	return p.err
}

// countTable prints counts, largest first (then by name), with their share.
func countTable(p *printer, title string, counts map[string]int64, total int64) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	p.blank()
	tw := tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tDEVICES\tSHARE\n", title)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", k, counts[k], percent(counts[k], total))
	}
	_ = tw.Flush()
}

func orLabel(s, label string) string {
	if s == "" {
		return label
	}
	return s
}
