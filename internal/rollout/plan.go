package rollout

import (
	"fmt"
	"time"
)

// Phase mirrors the API's RolloutPhase.
type Phase string

// Phases.
const (
	Pending     Phase = "Pending"
	Progressing Phase = "Progressing"
	Paused      Phase = "Paused"
	Succeeded   Phase = "Succeeded"
	Aborted     Phase = "Aborted"
)

// Condition reasons set by Decide.
const (
	ReasonWaitingForRelease = "WaitingForRelease"
	ReasonReleaseFailed     = "ReleaseFailed"
	ReasonReleaseNotReady   = "ReleaseNotReady"
	ReasonWaveProgressing   = "WaveProgressing"
	ReasonTimedPause        = "TimedPause"
	ReasonAwaitingApproval  = "AwaitingApproval"
	ReasonPausedBySpec      = "PausedBySpec"
	ReasonSucceeded         = "Succeeded"
	ReasonAbortRequested    = "AbortRequested"
	ReasonFailureThreshold  = "FailureThreshold"
	// ReasonWaveCannotSucceed: too few devices of the open wave can still
	// succeed; a human lowers the threshold, waits for offline devices, or
	// aborts.
	ReasonWaveCannotSucceed = "WaveCannotSucceed"
	// ReasonProgressDeadline: the open wave did not complete within
	// spec.progressDeadline.
	ReasonProgressDeadline = "ProgressDeadlineExceeded"
	// ReasonStaleCounts: the OTA server has not reported for a while;
	// nothing opens, completes or aborts on old counts.
	ReasonStaleCounts = "StaleCounts"
	// ReasonInvalidSpec: the spec cannot be applied (a selector stored
	// before validation existed, for instance).
	ReasonInvalidSpec = "InvalidSpec"
)

// Event reasons for transitions.
const (
	EventWaveOpened    = "WaveOpened"
	EventWaveCompleted = "WaveCompleted"
	EventWaveApproved  = "WaveApproved"
	EventPaused        = "Paused"
	EventResumed       = "Resumed"
	EventAborted       = "Aborted"
	EventSucceeded     = "Succeeded"
	EventWaiting       = "WaitingForRelease"
	EventCannotSucceed = "WaveCannotSucceed"
	EventDeadline      = "ProgressDeadlineExceeded"
	EventStaleCounts   = "StaleCounts"
)

// Gate is what happens after a wave completes.
type Gate struct {
	// Manual gates wait for approval; otherwise Duration is a timed pause.
	Manual   bool
	Duration time.Duration
}

// WaveSpec is one wave of the spec.
type WaveSpec struct {
	Name string
	Gate *Gate // nil: the next wave opens as soon as this one completes
}

// WaveState is a wave's status: controller times plus server counters.
type WaveState struct {
	Name        string
	StartedAt   *time.Time
	CompletedAt *time.Time
	Counts
}

// Release is what the controller knows of the referenced FirmwareRelease.
type Release struct {
	Found   bool
	Ready   bool
	Stalled bool   // the release failed permanently
	Message string // why it is not Ready
}

// Input is everything Decide looks at.
type Input struct {
	Now time.Time

	// Spec.
	Waves            []WaveSpec
	SuccessThreshold float64 // fraction
	FailureThreshold float64 // fraction
	MinFailures      int64
	Paused           bool
	Abort            bool
	RollbackOnAbort  bool
	ApprovedWave     string
	// ProgressDeadline bounds how long a wave may stay open; 0 = none.
	ProgressDeadline      time.Duration
	ProgressDeadlineAbort bool
	// SpecProblem says why the spec cannot be applied; "" when it can.
	SpecProblem string

	Release Release

	// StaleAfter: counts older than this are stale (the OTA server is not
	// reporting); 0 disables the check.
	StaleAfter time.Duration

	// Status.
	Phase             Phase
	ReadyReason       string // reason of the current Ready condition
	CurrentWave       int
	WaveStates        []WaveState // by name; missing or extra entries are fine
	AbortReason       string
	RollbackRequested bool

	// From the OTA server.
	FleetSize    int64
	ObservedWave int
	ReportedAt   *time.Time
}

// Condition is the desired state of one kstatus condition; Present false
// means the condition is removed.
type Condition struct {
	Present bool
	True    bool
	Reason  string
	Message string
}

// Event is a transition worth telling people about.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Decision is the rollout's next state.
type Decision struct {
	Phase             Phase
	CurrentWave       int
	Waves             []WaveState // in spec order, times only are decided here
	PausedUntil       *time.Time
	AbortReason       string
	RollbackRequested bool

	Ready, Reconciling, Stalled Condition
	Events                      []Event
	// RequeueAfter is the next deadline (end of a timed pause); 0 for none.
	RequeueAfter time.Duration

	WaveSummary string // "2/3 early"
	Progress    string // "412/500"
}

// Decide computes the next state. It is idempotent: deciding again on its
// own output with the same time and counters changes nothing.
func Decide(in Input) Decision {
	d := Decision{
		Phase:             in.Phase,
		CurrentWave:       in.CurrentWave,
		Waves:             alignWaves(in.Waves, in.WaveStates),
		AbortReason:       in.AbortReason,
		RollbackRequested: in.RollbackRequested,
	}
	if d.Phase == "" {
		d.Phase = Pending
	}
	if d.CurrentWave < 0 || d.CurrentWave >= len(in.Waves) {
		d.CurrentWave = clamp(d.CurrentWave, 0, len(in.Waves)-1)
	}
	decide(&in, &d)
	d.WaveSummary, d.Progress = summaries(&in, &d)
	return d
}

func decide(in *Input, d *Decision) {
	if d.Phase == Aborted {
		aborted(d)
		return
	}
	if in.Abort {
		abort(in, d, ReasonAbortRequested, "spec.abort is set")
		return
	}
	started := d.Waves[0].StartedAt != nil
	stale, staleMsg := staleCounts(in, d, started)
	if started && d.Phase != Succeeded && !stale {
		if reason, msg, ok := failureThresholdExceeded(in, d); ok {
			abort(in, d, reason, msg)
			return
		}
	}
	if d.Phase == Succeeded {
		succeeded(d)
		return
	}
	if in.SpecProblem != "" {
		msg := "the spec cannot be applied: " + in.SpecProblem + "; no new offers or waves until it is fixed"
		d.Ready = notReady(ReasonInvalidSpec, msg)
		d.Stalled = Condition{Present: true, True: true, Reason: ReasonInvalidSpec, Message: msg}
		return
	}
	if !in.Release.Ready {
		waitForRelease(in, d, started)
		if w := d.Waves[d.CurrentWave]; started && w.CompletedAt == nil {
			if dl, ok := deadline(in, w); ok {
				if !in.Now.Before(dl) {
					stallDeadline(in, d, d.CurrentWave, d.Ready.Message)
				} else {
					d.wakeAt(in.Now, dl)
				}
			}
		}
		return
	}
	if in.Paused {
		d.Phase = Paused
		d.Ready = notReady(ReasonPausedBySpec, "spec.paused is set: no new offers and no new waves until it is cleared")
		if in.Phase != Paused {
			d.Events = append(d.Events, Event{Reason: EventPaused, Message: "paused by spec.paused"})
		}
		return
	}
	if !started {
		openWave(in, d, 0, time.Time{})
		return
	}
	if in.ReadyReason == ReasonPausedBySpec {
		d.Events = append(d.Events, Event{Reason: EventResumed, Message: "spec.paused cleared"})
	}
	i := d.CurrentWave
	w := &d.Waves[i]
	if w.CompletedAt == nil {
		if stale {
			staleWait(in, d, i, staleMsg)
			return
		}
		if !waveComplete(in, i, w) {
			progressing(in, d, i)
			return
		}
		now := in.Now
		w.CompletedAt = &now
		d.Events = append(d.Events, Event{Reason: EventWaveCompleted, Message: fmt.Sprintf(
			"wave %d/%d %s completed: %d of %d reachable devices succeeded (threshold %s; %d offline, %d skipped)",
			i+1, len(in.Waves), w.Name, w.Succeeded, w.Reachable(), pct(in.SuccessThreshold), w.Offline, w.Skipped)})
	}
	passGate(in, d, i)
}

// wakeAt asks for a reconcile at t (the earliest of all asked), if it is
// in the future.
func (d *Decision) wakeAt(now, t time.Time) {
	if !t.After(now) {
		return
	}
	if after := t.Sub(now); d.RequeueAfter == 0 || after < d.RequeueAfter {
		d.RequeueAfter = after
	}
}

// staleCounts reports whether the OTA server's counts are too old to act
// on: its last report (or, before any, the first wave's start) is older
// than StaleAfter. Otherwise it asks to be woken when they would become
// stale, since a silent server sends no updates that would wake it.
func staleCounts(in *Input, d *Decision, started bool) (bool, string) {
	if in.StaleAfter <= 0 || !started || d.Phase == Succeeded {
		return false, ""
	}
	last := in.ReportedAt
	if last == nil {
		last = d.Waves[0].StartedAt
	}
	if in.Now.Sub(*last) <= in.StaleAfter {
		d.wakeAt(in.Now, last.Add(in.StaleAfter+time.Second))
		return false, ""
	}
	return true, fmt.Sprintf("the OTA server has not reported counts since %s (more than %s ago): no wave opens, completes or aborts on stale counts",
		last.UTC().Format(time.RFC3339), in.StaleAfter)
}

func staleWait(in *Input, d *Decision, i int, msg string) {
	d.Phase = Progressing
	if dl, ok := deadline(in, d.Waves[i]); ok && !in.Now.Before(dl) {
		stallDeadline(in, d, i, msg)
		return
	}
	d.Ready = notReady(ReasonStaleCounts, msg)
	d.Reconciling = Condition{Present: true, True: true, Reason: ReasonStaleCounts, Message: msg}
	if in.ReadyReason != ReasonStaleCounts {
		d.Events = append(d.Events, Event{Warning: true, Reason: EventStaleCounts, Message: msg})
	}
}

// deadline is when wave w must have completed.
func deadline(in *Input, w WaveState) (time.Time, bool) {
	if in.ProgressDeadline <= 0 || w.StartedAt == nil {
		return time.Time{}, false
	}
	return w.StartedAt.Add(in.ProgressDeadline), true
}

func stallDeadline(in *Input, d *Decision, i int, detail string) {
	d.Reconciling = Condition{}
	w := d.Waves[i]
	msg := fmt.Sprintf("wave %d/%d %s, open since %s, did not complete within progressDeadline %s: %s",
		i+1, len(in.Waves), w.Name, w.StartedAt.UTC().Format(time.RFC3339), in.ProgressDeadline, detail)
	d.Ready = notReady(ReasonProgressDeadline, msg)
	d.Stalled = Condition{Present: true, True: true, Reason: ReasonProgressDeadline, Message: msg}
	if in.ReadyReason != ReasonProgressDeadline {
		d.Events = append(d.Events, Event{Warning: true, Reason: EventDeadline, Message: msg})
	}
}

// passGate applies the gate after completed wave i.
func passGate(in *Input, d *Decision, i int) {
	w := d.Waves[i]
	if i == len(in.Waves)-1 {
		d.Phase = Succeeded
		d.Events = append(d.Events, Event{Reason: EventSucceeded, Message: fmt.Sprintf("all %d waves completed", len(in.Waves))})
		succeeded(d)
		return
	}
	gate := in.Waves[i].Gate
	switch {
	case gate == nil:
		openWave(in, d, i+1, time.Time{})
	case gate.Manual:
		if approved(in, i) {
			openWave(in, d, i+1, time.Time{})
			d.Events = append(d.Events, Event{Reason: EventWaveApproved, Message: fmt.Sprintf("gate after wave %s approved (approvedWave: %s)", w.Name, in.ApprovedWave)})
			return
		}
		d.Phase = Paused
		d.Ready = notReady(ReasonAwaitingApproval, fmt.Sprintf("wave %s completed; set spec.approvedWave to %q to open wave %s", w.Name, w.Name, in.Waves[i+1].Name))
		if in.Phase != Paused {
			d.Events = append(d.Events, Event{Reason: EventPaused, Message: fmt.Sprintf("waiting for approval after wave %s", w.Name)})
		}
	default:
		until := w.CompletedAt.Add(gate.Duration)
		if !in.Now.Before(until) {
			openWave(in, d, i+1, until)
			d.Events = append(d.Events, Event{Reason: EventResumed, Message: fmt.Sprintf("timed pause of %s after wave %s ended", gate.Duration, w.Name)})
			return
		}
		d.Phase = Paused
		d.PausedUntil = &until
		d.wakeAt(in.Now, until)
		msg := fmt.Sprintf("wave %s completed; wave %s opens at %s", w.Name, in.Waves[i+1].Name, until.UTC().Format(time.RFC3339))
		d.Ready = notReady(ReasonTimedPause, msg)
		d.Reconciling = Condition{Present: true, True: true, Reason: ReasonTimedPause, Message: msg}
		if in.Phase != Paused {
			d.Events = append(d.Events, Event{Reason: EventPaused, Message: fmt.Sprintf("pausing %s after wave %s", gate.Duration, w.Name)})
		}
	}
}

// openWave opens wave i. at is when it opened (the end of a timed pause),
// or zero for now.
func openWave(in *Input, d *Decision, i int, at time.Time) {
	if at.IsZero() {
		at = in.Now
	}
	d.CurrentWave = i
	d.Waves[i].StartedAt = &at
	d.Waves[i].CompletedAt = nil
	d.PausedUntil = nil
	d.Events = append(d.Events, Event{Reason: EventWaveOpened, Message: fmt.Sprintf("wave %d/%d %s opened", i+1, len(in.Waves), in.Waves[i].Name)})
	progressing(in, d, i)
}

func progressing(in *Input, d *Decision, i int) {
	d.Phase = Progressing
	w := d.Waves[i]
	var msg string
	cannot := false
	if !counted(in, i, &w) {
		msg = fmt.Sprintf("wave %d/%d %s open; waiting for the OTA server's counts", i+1, len(in.Waves), w.Name)
	} else {
		n := needFor(in.SuccessThreshold, w.Counts)
		msg = fmt.Sprintf("wave %d/%d %s open: %d of %d reachable devices succeeded, %d needed (%s); %d in progress, %d not offered yet, %d offline, %d skipped",
			i+1, len(in.Waves), w.Name, w.Succeeded, w.Reachable(), n, pct(in.SuccessThreshold), w.InProgress, w.Untouched(), w.Offline, w.Skipped)
		if possible := w.Succeeded + w.InProgress + w.Untouched(); possible < n {
			cannot = true
			msg = fmt.Sprintf("wave %d/%d %s cannot succeed: at most %d of %d reachable devices can still succeed (%d succeeded, %d in progress, %d not offered yet; %d failed, %d timed out, %d canceled), %d needed (%s); lower successThreshold, wait for the %d offline devices to return, or abort",
				i+1, len(in.Waves), w.Name, possible, w.Reachable(), w.Succeeded, w.InProgress, w.Untouched(), w.Failed, w.TimedOut, w.Canceled, n, pct(in.SuccessThreshold), w.Offline)
		}
	}
	if dl, ok := deadline(in, w); ok {
		if !in.Now.Before(dl) {
			if in.ProgressDeadlineAbort && counted(in, i, &w) {
				abort(in, d, ReasonProgressDeadline, fmt.Sprintf("wave %s did not complete within progressDeadline %s: %s", w.Name, in.ProgressDeadline, msg))
				return
			}
			stallDeadline(in, d, i, msg)
			return
		}
		d.wakeAt(in.Now, dl)
	}
	if cannot {
		d.Ready = notReady(ReasonWaveCannotSucceed, msg)
		d.Stalled = Condition{Present: true, True: true, Reason: ReasonWaveCannotSucceed, Message: msg}
		if in.ReadyReason != ReasonWaveCannotSucceed {
			d.Events = append(d.Events, Event{Warning: true, Reason: EventCannotSucceed, Message: msg})
		}
		return
	}
	d.Ready = notReady(ReasonWaveProgressing, msg)
	d.Reconciling = Condition{Present: true, True: true, Reason: ReasonWaveProgressing, Message: msg}
}

// counted: the server has counted wave i since it opened.
func counted(in *Input, i int, w *WaveState) bool {
	return in.ObservedWave >= i && in.ReportedAt != nil && w.StartedAt != nil && !in.ReportedAt.Before(*w.StartedAt)
}

// needFor is how many devices of a wave must succeed: the threshold share
// of its reachable devices (offline and skipped ones left out), and at
// least one while any device could take the release at all, so a wave
// whose devices are all offline is never taken as evidence.
func needFor(threshold float64, c Counts) int64 {
	n := need(threshold, c.Reachable())
	if n == 0 && threshold > 0 && c.Targeted > c.Skipped {
		n = 1
	}
	return n
}

// waveComplete: the server has counted wave i since it opened, and enough of
// its devices succeeded.
func waveComplete(in *Input, i int, w *WaveState) bool {
	return counted(in, i, w) && w.Succeeded >= needFor(in.SuccessThreshold, w.Counts)
}

// approved: spec.approvedWave names wave i or a later one.
func approved(in *Input, i int) bool {
	for j := i; j < len(in.Waves); j++ {
		if in.Waves[j].Name == in.ApprovedWave {
			return true
		}
	}
	return false
}

// failureThresholdExceeded: failures (failed + timed out) are at least
// minFailures and above the threshold share of offered devices, in one
// wave (hawkBit's per-group rule, so a bad last wave is not diluted by
// the good ones before it) or over all waves.
func failureThresholdExceeded(in *Input, d *Decision) (string, string, bool) {
	var total Counts
	for _, w := range d.Waves {
		if over(in, w.Counts) {
			return ReasonFailureThreshold, fmt.Sprintf("wave %s: %s", w.Name, thresholdMsg(in, w.Counts)), true
		}
		total = total.Add(w.Counts)
	}
	if over(in, total) {
		return ReasonFailureThreshold, "all waves: " + thresholdMsg(in, total), true
	}
	return "", "", false
}

func over(in *Input, c Counts) bool {
	f := c.Failures()
	if f == 0 || f < in.MinFailures || c.Offered == 0 {
		return false
	}
	return float64(f) > in.FailureThreshold*float64(c.Offered)+1e-9
}

func thresholdMsg(in *Input, c Counts) string {
	return fmt.Sprintf("%d of %d offered devices failed or timed out (%.1f%%), above failureThreshold %s with minFailures %d",
		c.Failures(), c.Offered, 100*float64(c.Failures())/float64(c.Offered), pct(in.FailureThreshold), in.MinFailures)
}

func abort(in *Input, d *Decision, reason, msg string) {
	d.Phase = Aborted
	d.AbortReason = reason + ": " + msg
	d.RollbackRequested = in.RollbackOnAbort && d.Waves[0].StartedAt != nil
	d.PausedUntil = nil
	rb := "no rollback"
	if d.RollbackRequested {
		rb = "devices that took the release will be offered their previous one"
	}
	d.Events = append(d.Events, Event{Warning: true, Reason: EventAborted, Message: fmt.Sprintf("aborted in wave %s: %s; %s", d.Waves[d.CurrentWave].Name, msg, rb)})
	aborted(d)
}

func aborted(d *Decision) {
	d.Phase = Aborted
	d.Ready = notReady("Aborted", d.AbortReason)
	d.Stalled = Condition{Present: true, True: true, Reason: "Aborted", Message: d.AbortReason}
	d.Reconciling = Condition{}
}

func succeeded(d *Decision) {
	d.Phase = Succeeded
	d.PausedUntil = nil
	d.Ready = Condition{Present: true, True: true, Reason: ReasonSucceeded, Message: fmt.Sprintf("all %d waves completed", len(d.Waves))}
	d.Reconciling = Condition{}
	d.Stalled = Condition{}
}

func waitForRelease(in *Input, d *Decision, started bool) {
	msg := in.Release.Message
	if msg == "" {
		msg = "the FirmwareRelease is not Ready"
	}
	reason := ReasonWaitingForRelease
	if started {
		reason = ReasonReleaseNotReady
		msg = "no new offers or waves while the release is not Ready: " + msg
	} else {
		d.Phase = Pending
		if in.Phase != Pending {
			d.Events = append(d.Events, Event{Reason: EventWaiting, Message: msg})
		}
	}
	d.Ready = notReady(reason, msg)
	if in.Release.Stalled {
		d.Stalled = Condition{Present: true, True: true, Reason: ReasonReleaseFailed, Message: msg}
		return
	}
	d.Reconciling = Condition{Present: true, True: true, Reason: reason, Message: msg}
}

func notReady(reason, msg string) Condition {
	return Condition{Present: true, True: false, Reason: reason, Message: msg}
}

// alignWaves returns the wave states in spec order, taking times and counts
// from the status by name.
func alignWaves(spec []WaveSpec, states []WaveState) []WaveState {
	out := make([]WaveState, len(spec))
	for i, w := range spec {
		out[i].Name = w.Name
		for _, s := range states {
			if s.Name == w.Name {
				out[i] = s
				break
			}
		}
	}
	return out
}

func summaries(in *Input, d *Decision) (string, string) {
	var succeeded int64
	for _, w := range d.Waves {
		succeeded += w.Succeeded
	}
	wave := ""
	if len(in.Waves) > 0 {
		wave = fmt.Sprintf("%d/%d %s", d.CurrentWave+1, len(in.Waves), in.Waves[d.CurrentWave].Name)
	}
	return wave, fmt.Sprintf("%d/%d", succeeded, in.FleetSize)
}

func pct(f float64) string {
	return fmt.Sprintf("%g%%", f*100)
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
