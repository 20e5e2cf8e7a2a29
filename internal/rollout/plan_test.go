package rollout

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

// base: canary (manual gate), early (30m timed pause), all.
func base() Input {
	return Input{
		Now: t0.Add(time.Hour),
		Waves: []WaveSpec{
			{Name: "canary", Gate: &Gate{Manual: true}},
			{Name: "early", Gate: &Gate{Duration: 30 * time.Minute}},
			{Name: "all"},
		},
		SuccessThreshold: 0.95,
		FailureThreshold: 0.05,
		MinFailures:      3,
		RollbackOnAbort:  true,
		Release:          Release{Found: true, Ready: true},
		FleetSize:        100,
	}
}

// inWave: wave i opened at t0, earlier waves completed, counters observed
// after it opened.
func inWave(i int, c Counts) func(*Input) {
	return func(in *Input) {
		in.Phase = Progressing
		in.CurrentWave = i
		in.ObservedWave = i
		in.ReportedAt = at(time.Minute)
		in.WaveStates = nil
		for j := 0; j <= i; j++ {
			s := WaveState{Name: in.Waves[j].Name, StartedAt: at(0)}
			if j < i {
				s.CompletedAt = at(0)
				s.Counts = Counts{Targeted: 10, Offered: 10, Succeeded: 10}
			} else {
				s.Counts = c
			}
			in.WaveStates = append(in.WaveStates, s)
		}
	}
}

// completedAt marks the current wave completed at time t.
func completedAt(t *time.Time) func(*Input) {
	return func(in *Input) {
		in.WaveStates[in.CurrentWave].CompletedAt = t
		in.Phase = Paused
	}
}

func with(fs ...func(*Input)) Input {
	in := base()
	for _, f := range fs {
		f(&in)
	}
	return in
}

func set(f func(*Input)) func(*Input) { return f }

type want struct {
	phase       Phase
	wave        int
	readyReason string
	ready       bool
	reconciling bool
	stalled     bool
	events      []string
	rollback    bool
	pausedUntil *time.Time
	requeue     time.Duration
	startedAt   map[int]time.Time // wave index → StartedAt expected
	completed   []int             // waves with CompletedAt set
}

func TestDecide(t *testing.T) {
	full := Counts{Targeted: 10, Offered: 10, Succeeded: 10}
	cases := []struct {
		name string
		in   Input
		want want
	}{
		// Pending.
		{"new rollout opens the first wave", with(), want{phase: Progressing, wave: 0, readyReason: ReasonWaveProgressing, reconciling: true, events: []string{EventWaveOpened}, startedAt: map[int]time.Time{0: t0.Add(time.Hour)}}},
		{"release missing: pending", with(set(func(in *Input) { in.Release = Release{} })), want{phase: Pending, readyReason: ReasonWaitingForRelease, reconciling: true, events: []string{EventWaiting}}},
		{"release not ready: pending", with(set(func(in *Input) { in.Release = Release{Found: true, Message: "fetching"} })), want{phase: Pending, readyReason: ReasonWaitingForRelease, reconciling: true, events: []string{EventWaiting}}},
		{"release stalled: pending and stalled", with(set(func(in *Input) { in.Release = Release{Found: true, Stalled: true, Message: "digest mismatch"} })), want{phase: Pending, readyReason: ReasonWaitingForRelease, stalled: true, events: []string{EventWaiting}}},
		{"pending stays quiet", with(set(func(in *Input) { in.Release = Release{}; in.Phase = Pending })), want{phase: Pending, readyReason: ReasonWaitingForRelease, reconciling: true}},
		{"paused before start", with(set(func(in *Input) { in.Paused = true })), want{phase: Paused, readyReason: ReasonPausedBySpec, events: []string{EventPaused}}},
		{"abort before start: no rollback", with(set(func(in *Input) { in.Abort = true })), want{phase: Aborted, readyReason: "Aborted", stalled: true, events: []string{EventAborted}}},

		// Progressing: counts must be observed after the wave opened.
		{"counts not reported yet", with(inWave(0, Counts{}), set(func(in *Input) { in.ReportedAt = nil })), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true, startedAt: map[int]time.Time{0: t0}}},
		{"counts older than the wave", with(inWave(1, Counts{}), set(func(in *Input) { in.ReportedAt = at(-time.Minute) })), want{phase: Progressing, wave: 1, readyReason: ReasonWaveProgressing, reconciling: true, completed: []int{0}}},
		{"server has not seen the wave", with(inWave(1, Counts{}), set(func(in *Input) { in.ObservedWave = 0 })), want{phase: Progressing, wave: 1, readyReason: ReasonWaveProgressing, reconciling: true, completed: []int{0}}},
		{"below success threshold", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 9, InProgress: 1})), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true}},
		{"empty wave completes once observed", with(inWave(0, Counts{})), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},

		// Manual gate.
		{"canary meets threshold: waits for approval", with(inWave(0, full)), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},
		{"waiting for approval stays quiet", with(inWave(0, full), completedAt(at(30*time.Minute))), want{phase: Paused, readyReason: ReasonAwaitingApproval, completed: []int{0}}},
		{"approval opens the next wave", with(inWave(0, full), completedAt(at(30*time.Minute)), set(func(in *Input) { in.ApprovedWave = "canary" })), want{phase: Progressing, wave: 1, readyReason: ReasonWaveProgressing, reconciling: true, events: []string{EventWaveOpened, EventWaveApproved}, completed: []int{0}, startedAt: map[int]time.Time{1: t0.Add(time.Hour)}}},
		{"approving a later wave passes earlier gates", with(inWave(0, full), completedAt(at(30*time.Minute)), set(func(in *Input) { in.ApprovedWave = "all" })), want{phase: Progressing, wave: 1, readyReason: ReasonWaveProgressing, reconciling: true, events: []string{EventWaveOpened, EventWaveApproved}, completed: []int{0}}},

		// Timed pause.
		{"timed pause starts", with(inWave(1, full)), want{phase: Paused, wave: 1, readyReason: ReasonTimedPause, reconciling: true, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0, 1}, pausedUntil: at(90 * time.Minute), requeue: 30 * time.Minute}},
		{"timed pause continues", with(inWave(1, full), completedAt(at(31*time.Minute))), want{phase: Paused, wave: 1, readyReason: ReasonTimedPause, reconciling: true, completed: []int{0, 1}, pausedUntil: at(61 * time.Minute), requeue: time.Minute}},
		{"timed pause ends: next wave opens at its end", with(inWave(1, full), completedAt(at(20*time.Minute))), want{phase: Progressing, wave: 2, readyReason: ReasonWaveProgressing, reconciling: true, events: []string{EventWaveOpened, EventResumed}, completed: []int{0, 1}, startedAt: map[int]time.Time{2: t0.Add(50 * time.Minute)}}},

		// Last wave.
		{"last wave meets threshold: succeeded", with(inWave(2, Counts{Targeted: 80, Offered: 80, Succeeded: 76, Failed: 2, InProgress: 2})), want{phase: Succeeded, wave: 2, readyReason: ReasonSucceeded, ready: true, events: []string{EventWaveCompleted, EventSucceeded}, completed: []int{0, 1, 2}}},
		{"succeeded stays succeeded despite late failures", with(inWave(2, Counts{Targeted: 80, Offered: 80, Succeeded: 60, Failed: 20}), completedAt(at(time.Minute)), set(func(in *Input) { in.Phase = Succeeded })), want{phase: Succeeded, wave: 2, readyReason: ReasonSucceeded, ready: true, completed: []int{0, 1, 2}}},
		{"abort after success rolls back", with(inWave(2, full), completedAt(at(time.Minute)), set(func(in *Input) { in.Phase = Succeeded; in.Abort = true })), want{phase: Aborted, wave: 2, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}, completed: []int{0, 1, 2}}},

		// Failure threshold.
		{"failure threshold aborts with rollback", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 3, Succeeded: 5, InProgress: 2})), want{phase: Aborted, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}}},
		{"timeouts count as failures", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 2, TimedOut: 1, Succeeded: 7})), want{phase: Aborted, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}}},
		// Below minFailures there is no abort, but 2 failed of 10 at 95%
		// means the wave can no longer succeed: said at once.
		{"below minFailures: no abort, cannot succeed", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 2, Succeeded: 5, InProgress: 3})), want{phase: Progressing, readyReason: ReasonWaveCannotSucceed, stalled: true, events: []string{EventCannotSucceed}}},
		{"below minFailures, can still succeed", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 2, Succeeded: 5, InProgress: 3}), set(func(in *Input) { in.SuccessThreshold = 0.8 })), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true}},
		{"one failed of a 10-device canary at 95%: cannot succeed", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 1, Succeeded: 9})), want{phase: Progressing, readyReason: ReasonWaveCannotSucceed, stalled: true, events: []string{EventCannotSucceed}}},
		{"cannot succeed stays quiet", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 1, Succeeded: 9}), set(func(in *Input) { in.ReadyReason = ReasonWaveCannotSucceed })), want{phase: Progressing, readyReason: ReasonWaveCannotSucceed, stalled: true}},
		{"per-wave threshold: a bad last wave is not diluted", with(inWave(2, Counts{Targeted: 80, Offered: 40, Failed: 3, Succeeded: 37})), want{phase: Aborted, wave: 2, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}, completed: []int{0, 1}}},

		// Offline and skipped devices leave the denominator.
		{"one offline device of 10 at 95%: completes with 9", with(inWave(0, Counts{Targeted: 10, Offered: 9, Succeeded: 9, Offline: 1})), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},
		{"skipped devices leave the denominator", with(inWave(0, Counts{Targeted: 10, Offered: 8, Succeeded: 8, Skipped: 2})), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},
		{"all skipped: nothing to do, completes", with(inWave(0, Counts{Targeted: 3, Skipped: 3})), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},
		{"all offline: never taken as evidence", with(inWave(0, Counts{Targeted: 3, Offline: 3})), want{phase: Progressing, readyReason: ReasonWaveCannotSucceed, stalled: true, events: []string{EventCannotSucceed}}},
		{"untouched devices may still succeed", with(inWave(0, Counts{Targeted: 10, Offered: 2, Succeeded: 2})), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true}},

		// Progress deadline (the wave opened at t0, now is t0+1h).
		{"deadline ahead: wakes at it", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 5, InProgress: 5}), set(func(in *Input) { in.ProgressDeadline = 3 * time.Hour })), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true, requeue: 2 * time.Hour}},
		{"deadline passed: stalled", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 5, InProgress: 5}), set(func(in *Input) { in.ProgressDeadline = 30 * time.Minute })), want{phase: Progressing, readyReason: ReasonProgressDeadline, stalled: true, events: []string{EventDeadline}}},
		{"deadline passed with progressDeadlineAbort: aborts", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 5, InProgress: 5}), set(func(in *Input) { in.ProgressDeadline = 30 * time.Minute; in.ProgressDeadlineAbort = true })), want{phase: Aborted, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}}},
		{"deadline passed, counts never came: stalled, not aborted", with(inWave(0, Counts{}), set(func(in *Input) {
			in.ProgressDeadline = 30 * time.Minute
			in.ProgressDeadlineAbort = true
			in.ReportedAt = nil
		})), want{phase: Progressing, readyReason: ReasonProgressDeadline, stalled: true, events: []string{EventDeadline}}},
		{"a wave completing late still completes", with(inWave(0, full), set(func(in *Input) { in.ProgressDeadline = 30 * time.Minute; in.ReadyReason = ReasonProgressDeadline })), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},

		// Stale counts (last report at t0+1m, now t0+1h).
		{"stale counts: nothing completes", with(inWave(0, full), set(func(in *Input) { in.StaleAfter = 5 * time.Minute })), want{phase: Progressing, readyReason: ReasonStaleCounts, reconciling: true, events: []string{EventStaleCounts}}},
		{"stale counts: nothing aborts", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 5}), set(func(in *Input) { in.StaleAfter = 5 * time.Minute; in.ReadyReason = ReasonStaleCounts })), want{phase: Progressing, readyReason: ReasonStaleCounts, reconciling: true}},
		{"fresh counts: wakes when they would turn stale", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 5, InProgress: 5}), set(func(in *Input) { in.StaleAfter = 2 * time.Hour })), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true, requeue: time.Hour + time.Minute + time.Second}},
		{"stale counts past the deadline: stalled", with(inWave(0, full), set(func(in *Input) { in.StaleAfter = 5 * time.Minute; in.ProgressDeadline = 30 * time.Minute })), want{phase: Progressing, readyReason: ReasonProgressDeadline, stalled: true, events: []string{EventDeadline}}},

		// A spec the server cannot apply.
		{"invalid spec stalls", with(inWave(0, Counts{Targeted: 10, Succeeded: 3}), set(func(in *Input) { in.SpecProblem = "selector: bad operator" })), want{phase: Progressing, readyReason: ReasonInvalidSpec, stalled: true}},
		{"below failure share: no abort", with(inWave(2, Counts{Targeted: 80, Offered: 80, Failed: 3, Succeeded: 10, InProgress: 67})), want{phase: Progressing, wave: 2, readyReason: ReasonWaveProgressing, reconciling: true, completed: []int{0, 1}}},
		{"failures count across waves", with(inWave(1, Counts{Targeted: 10, Offered: 10, Failed: 3, Succeeded: 7})), want{phase: Aborted, wave: 1, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}, completed: []int{0}}},
		{"rollbackOnAbort false", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 5}), set(func(in *Input) { in.RollbackOnAbort = false })), want{phase: Aborted, readyReason: "Aborted", stalled: true, events: []string{EventAborted}}},
		{"failure threshold checked while paused at a gate", with(inWave(0, Counts{Targeted: 10, Offered: 10, Succeeded: 10, Failed: 0}), completedAt(at(time.Minute)), set(func(in *Input) { in.WaveStates[0].Failed = 4; in.WaveStates[0].Offered = 14 })), want{phase: Aborted, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}, completed: []int{0}}},

		// Abort and Aborted.
		{"spec.abort aborts", with(inWave(1, Counts{Targeted: 10, Offered: 4}), set(func(in *Input) { in.Abort = true })), want{phase: Aborted, wave: 1, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}, completed: []int{0}}},
		{"aborted is final", with(inWave(1, full), set(func(in *Input) { in.Phase = Aborted; in.AbortReason = "x"; in.RollbackRequested = true })), want{phase: Aborted, wave: 1, readyReason: "Aborted", stalled: true, rollback: true, completed: []int{0}}},

		// spec.paused.
		{"spec.paused holds a complete wave", with(inWave(0, full), set(func(in *Input) { in.Paused = true })), want{phase: Paused, readyReason: ReasonPausedBySpec, events: []string{EventPaused}}},
		{"spec.paused stays quiet", with(inWave(0, full), set(func(in *Input) { in.Paused = true; in.Phase = Paused; in.ReadyReason = ReasonPausedBySpec })), want{phase: Paused, readyReason: ReasonPausedBySpec}},
		{"resume continues where it was", with(inWave(0, Counts{Targeted: 10, Succeeded: 3}), set(func(in *Input) { in.Phase = Paused; in.ReadyReason = ReasonPausedBySpec })), want{phase: Progressing, readyReason: ReasonWaveProgressing, reconciling: true, events: []string{EventResumed}}},
		{"failure threshold still aborts while paused", with(inWave(0, Counts{Targeted: 10, Offered: 10, Failed: 4}), set(func(in *Input) { in.Paused = true })), want{phase: Aborted, readyReason: "Aborted", stalled: true, rollback: true, events: []string{EventAborted}}},

		// Release lost mid-rollout.
		{"release not ready mid-rollout holds", with(inWave(0, full), set(func(in *Input) { in.Release = Release{Found: true, Message: "signature not verified"} })), want{phase: Progressing, readyReason: ReasonReleaseNotReady, reconciling: true}},
		{"release not ready past the wave's deadline: stalled on the deadline", with(inWave(0, Counts{Targeted: 10, Succeeded: 3}), set(func(in *Input) {
			in.Release = Release{Found: true, Message: "key Secret missing"}
			in.ProgressDeadline = 30 * time.Minute
		})), want{phase: Progressing, readyReason: ReasonProgressDeadline, stalled: true, events: []string{EventDeadline}}},
		{"release stalled mid-rollout stalls", with(inWave(0, full), set(func(in *Input) { in.Release = Release{Found: true, Stalled: true, Message: "key revoked"} })), want{phase: Progressing, readyReason: ReasonReleaseNotReady, stalled: true}},
		{"threshold 0% completes when observed", with(inWave(0, Counts{Targeted: 10}), set(func(in *Input) { in.SuccessThreshold = 0 })), want{phase: Paused, readyReason: ReasonAwaitingApproval, events: []string{EventWaveCompleted, EventPaused}, completed: []int{0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			check(t, d, tc.want)
			// Deciding again on the result changes nothing.
			again := Decide(next(tc.in, d))
			if len(again.Events) != 0 || again.Phase != d.Phase || again.CurrentWave != d.CurrentWave || !reflect.DeepEqual(again.Waves, d.Waves) {
				t.Errorf("not idempotent: second decision %+v events %v", again.Phase, again.Events)
			}
		})
	}
}

// next feeds a decision back as the following input, as the reconciler does.
func next(in Input, d Decision) Input {
	in.Phase = d.Phase
	in.CurrentWave = d.CurrentWave
	in.WaveStates = d.Waves
	in.AbortReason = d.AbortReason
	in.RollbackRequested = d.RollbackRequested
	in.ReadyReason = d.Ready.Reason
	return in
}

func check(t *testing.T, d Decision, w want) {
	t.Helper()
	if d.Phase != w.phase || d.CurrentWave != w.wave {
		t.Errorf("phase %s wave %d, want %s wave %d", d.Phase, d.CurrentWave, w.phase, w.wave)
	}
	if !d.Ready.Present || d.Ready.True != w.ready || d.Ready.Reason != w.readyReason || d.Ready.Message == "" {
		t.Errorf("Ready = %+v, want true=%v reason %s with a message", d.Ready, w.ready, w.readyReason)
	}
	if d.Reconciling.Present != w.reconciling || (w.reconciling && !d.Reconciling.True) {
		t.Errorf("Reconciling = %+v, want present=%v", d.Reconciling, w.reconciling)
	}
	if d.Stalled.Present != w.stalled || (w.stalled && !d.Stalled.True) {
		t.Errorf("Stalled = %+v, want present=%v", d.Stalled, w.stalled)
	}
	var reasons []string
	for _, e := range d.Events {
		reasons = append(reasons, e.Reason)
		if e.Message == "" {
			t.Errorf("event %s has no message", e.Reason)
		}
	}
	if !reflect.DeepEqual(reasons, w.events) {
		t.Errorf("events %v, want %v", reasons, w.events)
	}
	if d.RollbackRequested != w.rollback {
		t.Errorf("rollbackRequested %v, want %v", d.RollbackRequested, w.rollback)
	}
	if (d.PausedUntil == nil) != (w.pausedUntil == nil) || (d.PausedUntil != nil && !d.PausedUntil.Equal(*w.pausedUntil)) {
		t.Errorf("pausedUntil %v, want %v", d.PausedUntil, w.pausedUntil)
	}
	if d.RequeueAfter != w.requeue {
		t.Errorf("requeueAfter %s, want %s", d.RequeueAfter, w.requeue)
	}
	for i, ts := range w.startedAt {
		if s := d.Waves[i].StartedAt; s == nil || !s.Equal(ts) {
			t.Errorf("wave %d startedAt %v, want %v", i, s, ts)
		}
	}
	var completed []int
	for i, s := range d.Waves {
		if s.CompletedAt != nil {
			completed = append(completed, i)
		}
	}
	if !reflect.DeepEqual(completed, w.completed) {
		t.Errorf("completed waves %v, want %v", completed, w.completed)
	}
	if w.phase == Aborted && d.AbortReason == "" {
		t.Error("aborted without a reason")
	}
}

func TestSummaries(t *testing.T) {
	d := Decide(with(inWave(1, Counts{Targeted: 20, Succeeded: 7})))
	if d.WaveSummary != "2/3 early" || d.Progress != "17/100" {
		t.Fatalf("summary %q progress %q, want \"2/3 early\" and \"17/100\"", d.WaveSummary, d.Progress)
	}
}

func TestParsePercent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"95%", 0.95, false}, {"99.5%", 0.995, false}, {"0%", 0, false}, {"100%", 1, false},
		{"100.1%", 0, true}, {"-1%", 0, true}, {"95", 0, true}, {"abc%", 0, true}, {"NaN%", 0, true}, {"", 0, true},
	} {
		got, err := ParsePercent(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestNeed(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		n    int64
		want int64
	}{
		{0.95, 10, 10}, {0.95, 100, 95}, {0.3, 10, 3}, {0.7, 10, 7}, {0, 10, 0}, {1, 7, 7}, {0.95, 0, 0}, {0.995, 1000, 995}, {0.5, 3, 2},
	} {
		if got := need(tc.f, tc.n); got != tc.want {
			t.Errorf("need(%v, %d) = %d, want %d", tc.f, tc.n, got, tc.want)
		}
	}
}
