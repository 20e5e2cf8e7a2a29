package render

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/rolloutview"
	"github.com/otaflow/otaflow/internal/rollout"
)

// BarWidth is the width of a wave's progress bar, brackets aside.
const BarWidth = 20

// Marks of the progress bars.
const (
	MarkSucceeded  = '#'
	MarkFailed     = 'x'
	MarkInProgress = '>'
	MarkSkipped    = '-'
	MarkOffline    = '~'
	MarkNotYet     = '.'
)

// StatusInput is what a status report shows.
type StatusInput struct {
	Rollout *otav1.Rollout
	// Release is the referenced FirmwareRelease; nil when it could not be
	// read, with ReleaseProblem saying why.
	Release        *otav1.FirmwareRelease
	ReleaseProblem string
	// Command is how the user runs the plugin ("kubectl ota"), for hints.
	Command string
	Now     time.Time
}

// Status writes the report of one rollout.
func Status(w io.Writer, in StatusInput) error {
	ro := in.Rollout
	if in.Command == "" {
		in.Command = "kubectl ota"
	}
	t, terr := rolloutview.ThresholdsOf(ro)
	p := &printer{w: w}

	p.field("Rollout", ro.Namespace+"/"+ro.Name)
	p.field("Release", releaseLine(in))
	p.field("Phase", phaseLine(ro))
	if len(ro.Spec.Waves) > 0 && ro.Status.Phase != "" && ro.Status.Phase != otav1.RolloutPending {
		i := rolloutview.CurrentWave(ro)
		p.field("Wave", fmt.Sprintf("%d/%d %s", i+1, len(ro.Spec.Waves), ro.Spec.Waves[i].Name))
	}
	p.field("Fleet", fleetLine(ro, in.Now))
	p.field("Targets", targetLine(ro))
	if next := nextLine(ro, in); next != "" {
		p.field("Next", next)
	}
	if ro.Status.ObservedGeneration != 0 && ro.Status.ObservedGeneration < ro.Generation {
		p.field("Note", fmt.Sprintf("the controller has not acted on the latest spec yet (generation %d, observed %d)",
			ro.Generation, ro.Status.ObservedGeneration))
	}
	if terr != nil {
		p.field("Thresholds", "cannot read: "+terr.Error())
	} else {
		thresholdLines(p, ro, t)
	}
	if ro.Status.AbortReason != "" {
		p.field("Aborted", ro.Status.AbortReason)
		if ro.Status.RollbackRequested {
			p.field("Rollback", "devices that took the release are offered their previous one")
		} else {
			p.field("Rollback", "none (spec.rollbackOnAbort is false, or no wave had opened)")
		}
	}

	p.blank()
	waveTable(p, ro, in.Now)
	afterAbortLines(p, ro)
	skippedLines(p, ro)
	failureLines(p, ro, in.Now)
	conditionLines(p, ro, in.Now)
	return p.err
}

func releaseLine(in StatusInput) string {
	name := in.Rollout.Spec.ReleaseRef.Name
	rel := in.Release
	switch {
	case rel == nil && in.ReleaseProblem != "":
		return fmt.Sprintf("%s (%s)", name, in.ReleaseProblem)
	case rel == nil:
		return name
	}
	s := fmt.Sprintf("%s, version %s", name, rel.Spec.Version)
	if rel.Spec.SecurityVersion != 0 {
		s += fmt.Sprintf(", securityVersion %d", rel.Spec.SecurityVersion)
	}
	if c := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
		s += fmt.Sprintf(" (not Ready: %s)", c.Reason)
	}
	return s
}

func phaseLine(ro *otav1.Rollout) string {
	phase := string(ro.Status.Phase)
	if phase == "" {
		phase = "(not reconciled yet)"
	}
	if r := rolloutview.ReadyReason(ro); r != "" && r != phase {
		phase += " (" + r + ")"
	}
	return phase
}

func fleetLine(ro *otav1.Rollout, now time.Time) string {
	f := ro.Status.Fleet
	if f == nil {
		return "not counted yet (the OTA server has not reported)"
	}
	s := fmt.Sprintf("%d devices, %d conflicts; progress %s", f.Size, f.Conflicts, orDash(ro.Status.Progress))
	if f.ReportedAt != nil {
		s += fmt.Sprintf("; counted %s ago", age(now, f.ReportedAt.Time))
	}
	return s
}

func targetLine(ro *otav1.Rollout) string {
	if rolloutview.Continuous(ro) {
		return "Continuous (after success, devices that join are still offered the release)"
	}
	return "Snapshot (after success, devices that join are not offered the release)"
}

// nextLine says what the rollout waits for and what the user can do.
func nextLine(ro *otav1.Rollout, in StatusInput) string {
	if wave, ok := rolloutview.WaitingForApproval(ro); ok {
		return fmt.Sprintf("wave %s waits for approval: %s approve %s %s", wave, in.Command, ro.Name, wave)
	}
	switch {
	case rolloutview.Aborted(ro):
		if ro.Status.Phase != otav1.RolloutAborted {
			return "spec.abort is set; the controller aborts the rollout"
		}
		return ""
	case ro.Spec.Paused:
		return fmt.Sprintf("paused by spec.paused: %s resume %s", in.Command, ro.Name)
	case ro.Status.Phase == otav1.RolloutPaused && ro.Status.PausedUntil != nil:
		i := rolloutview.CurrentWave(ro)
		if i+1 < len(ro.Spec.Waves) {
			return fmt.Sprintf("wave %s opens at %s (in %s)", ro.Spec.Waves[i+1].Name,
				ro.Status.PausedUntil.UTC().Format(time.RFC3339), age(ro.Status.PausedUntil.Time, in.Now))
		}
	case ro.Status.Phase == otav1.RolloutSucceeded && rolloutview.Continuous(ro):
		return "succeeded; keeps offering the release to devices that join"
	}
	return ""
}

func thresholdLines(p *printer, ro *otav1.Rollout, t rolloutview.Thresholds) {
	p.field("Thresholds", fmt.Sprintf("success %s of each wave's reachable devices; abort above %s failed of offered, once at least %d failed (minFailures)",
		t.SuccessText, t.FailureText, t.MinFailures))
	if len(ro.Spec.Waves) == 0 || ro.Status.Phase == "" || ro.Status.Phase == otav1.RolloutPending {
		return
	}
	i := rolloutview.CurrentWave(ro)
	ws := rolloutview.Status(ro, i)
	c := rolloutview.Counts(ws)
	live := ro.Status.Phase != otav1.RolloutSucceeded && ro.Status.Phase != otav1.RolloutAborted
	if live && ws.StartedAt != nil && ws.CompletedAt == nil {
		p.more(fmt.Sprintf("wave %s: %d of %d reachable devices succeeded, %d needed", ws.Name, c.Succeeded, c.Reachable(), rolloutview.SuccessNeeded(t, c)))
	}
	var total rollout.Counts
	for j := range ro.Spec.Waves {
		total = total.Add(rolloutview.Counts(rolloutview.Status(ro, j)))
	}
	p.more(failureRate("wave "+ws.Name, t, c, live))
	p.more(failureRate("all waves", t, total, live))
}

// failureRate says how many offered devices failed and, while the
// threshold applies, how many more failures abort the rollout.
func failureRate(what string, t rolloutview.Thresholds, c rollout.Counts, live bool) string {
	if c.Offered == 0 {
		return what + ": no device offered yet"
	}
	s := fmt.Sprintf("%s: %d of %d offered devices failed or timed out (%s)", what, c.Failures(), c.Offered, percent(c.Failures(), c.Offered))
	if !live {
		return s
	}
	more, _ := rolloutview.FailuresToAbort(t, c)
	switch more {
	case 0:
		return s + "; at the threshold"
	case 1:
		return s + "; 1 more failure aborts the rollout"
	}
	return s + fmt.Sprintf("; %d more failures abort the rollout", more)
}

func waveTable(p *printer, ro *otav1.Rollout, now time.Time) {
	if len(ro.Spec.Waves) == 0 {
		return
	}
	tw := tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tDEVICES\tPROGRESS\tTARGETED\tSUCCEEDED\tFAILED\tIN PROGRESS\tSKIPPED\tOFFLINE\tSTATE\tGATE")
	for i, w := range ro.Spec.Waves {
		ws := rolloutview.Status(ro, i)
		failed := fmt.Sprint(ws.Failed + ws.TimedOut)
		if ws.TimedOut > 0 {
			failed += fmt.Sprintf(" (%d timed out)", ws.TimedOut)
		}
		fmt.Fprintf(tw, "%d %s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n",
			i+1, w.Name, w.Devices.String(), waveBar(ws), ws.Targeted, ws.Succeeded, failed, ws.InProgress, ws.Skipped, ws.Offline,
			waveState(ro, i, ws, now), gate(ro, i, now))
	}
	_ = tw.Flush()
	p.line(fmt.Sprintf("(%c succeeded  %c failed or timed out  %c in progress  %c skipped  %c offline  %c not yet)",
		MarkSucceeded, MarkFailed, MarkInProgress, MarkSkipped, MarkOffline, MarkNotYet))
}

func waveBar(ws otav1.WaveStatus) string {
	return Bar(BarWidth, ws.Targeted, MarkNotYet,
		Segment{ws.Succeeded, MarkSucceeded},
		Segment{ws.Failed + ws.TimedOut, MarkFailed},
		Segment{ws.InProgress, MarkInProgress},
		Segment{ws.Skipped, MarkSkipped},
		Segment{ws.Offline, MarkOffline})
}

func waveState(ro *otav1.Rollout, i int, ws otav1.WaveStatus, now time.Time) string {
	switch {
	case ws.CompletedAt != nil:
		return "completed " + age(now, ws.CompletedAt.Time) + " ago"
	case ws.StartedAt == nil:
		return "not open"
	case ro.Status.Phase == otav1.RolloutAborted && i == rolloutview.CurrentWave(ro):
		return "aborted"
	}
	return "open " + age(now, ws.StartedAt.Time)
}

func gate(ro *otav1.Rollout, i int, now time.Time) string {
	pause := ro.Spec.Waves[i].Pause
	switch {
	case i == len(ro.Spec.Waves)-1:
		return "-"
	case pause == nil:
		return "none"
	case pause.Duration != nil:
		s := "pause " + shortDuration(pause.Duration.Duration)
		if ro.Status.Phase == otav1.RolloutPaused && i == rolloutview.CurrentWave(ro) && ro.Status.PausedUntil != nil {
			s += ", ends in " + age(ro.Status.PausedUntil.Time, now)
		}
		return s
	case rolloutview.ApprovedIndex(ro) >= i:
		return "approval: approved"
	}
	if wave, ok := rolloutview.WaitingForApproval(ro); ok && wave == ro.Spec.Waves[i].Name {
		return "approval: WAITING"
	}
	return "approval"
}

// afterAbortLines lists the counters that matter once a rollout aborted.
func afterAbortLines(p *printer, ro *otav1.Rollout) {
	var lines []string
	for i := range ro.Spec.Waves {
		ws := rolloutview.Status(ro, i)
		if ws.Canceled+ws.RolledBack+ws.RollbackFailed == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: %d canceled, %d rolled back, %d rollback failed", ws.Name, ws.Canceled, ws.RolledBack, ws.RollbackFailed))
	}
	if len(lines) == 0 {
		return
	}
	p.blank()
	p.line("Canceled and rolled back:")
	for _, l := range lines {
		p.line("  " + l)
	}
}

func skippedLines(p *printer, ro *otav1.Rollout) {
	if ro.Status.Fleet == nil || len(ro.Status.Fleet.Skipped) == 0 {
		return
	}
	p.blank()
	p.line("Skipped devices by reason:")
	tw := tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
	for _, s := range ro.Status.Fleet.Skipped {
		fmt.Fprintf(tw, "  %d\t%s\n", s.Count, s.Reason)
	}
	_ = tw.Flush()
}

func failureLines(p *printer, ro *otav1.Rollout, now time.Time) {
	if len(ro.Status.RecentFailures) == 0 {
		return
	}
	p.blank()
	p.line("Recent failures:")
	tw := tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  AGE\tDEVICE\tWAVE\tREASON")
	for _, f := range ro.Status.RecentFailures {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", age(now, f.Time.Time), f.Device, f.Wave, oneLine(f.Reason))
	}
	_ = tw.Flush()
}

func conditionLines(p *printer, ro *otav1.Rollout, now time.Time) {
	if len(ro.Status.Conditions) == 0 {
		return
	}
	p.blank()
	p.line("Conditions:")
	tw := tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, c := range ro.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, age(now, c.LastTransitionTime.Time), oneLine(c.Message))
	}
	_ = tw.Flush()
}

// printer writes "Label:  value" lines and remembers the first error.
type printer struct {
	w   io.Writer
	err error
}

const labelWidth = 12

func (p *printer) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.w.Write(b)
	p.err = err
	return n, err
}

func (p *printer) line(s string) { fmt.Fprintln(p, s) }
func (p *printer) blank()        { fmt.Fprintln(p) }

func (p *printer) field(label, value string) {
	fmt.Fprintf(p, "%-*s%s\n", labelWidth, label+":", value)
}

// more continues the previous field on a line of its own.
func (p *printer) more(value string) {
	fmt.Fprintf(p, "%-*s%s\n", labelWidth, "", value)
}

// age is the time from then to now, as kubectl prints ages.
func age(now, then time.Time) string {
	d := now.Sub(then)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

// shortDuration prints 30m rather than 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func percent(n, of int64) string {
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a multi-line message on its table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
