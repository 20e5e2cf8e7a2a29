package rollout

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestFleetLife simulates whole fleet lives with the rules of this package
// — the OTA server's check-in decisions, report handling, timeouts and
// counts, and the controller's Decide — and checks after every step:
//
//	I1 no offer of a version at or below the one a device runs, except the
//	   rollback of the rollout that updated it;
//	I2 nothing below a device's floor;
//	I3 every rollout is finished, or its Ready condition names what it
//	   waits for, and none waits past its progress deadline;
//	I4 a device that matches the newest offering rollout and can install
//	   it is offered it once its wave is open;
//	I5 status counts equal a recount from the device states.
//
// Each life runs releases 2.1.0 … 2.4.0 (five rollouts) over a fleet on
// 2.0.0 with devices joining late (some already on newer versions), going
// offline and returning, failing installs, reverting, aborts with
// rollback, fix-forwards, gates, pauses, commits, threshold edits, a
// release going not Ready and back, and an OTA server that stops
// reporting for a while. rapid shrinks a failing life to a minimal one
// and prints its steps. Run more lives with -rapid.checks=N.
func TestFleetLife(t *testing.T) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue {
		checks := "1000"
		if testing.Short() {
			checks = "200"
		}
		if err := f.Value.Set(checks); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Value.Set(f.DefValue) }()
	}
	rapid.Check(t, func(rt *rapid.T) { newWorld(rt).live() })
	if cancelRejections.Load() == 0 {
		t.Fatal("no life had a DDI device reject a cancel: the model does not reach rollout.CancelRejected")
	}
	if unreleasedOffers.Load() == 0 || inconsistentFailures.Load() == 0 {
		t.Fatalf("Mender devices: %d offers on an unreleased image, %d failures leaving one: the model does not reach them",
			unreleasedOffers.Load(), inconsistentFailures.Load())
	}
}

const (
	step          = time.Minute
	lifeSteps     = 100
	deviceTimeout = 8 * time.Minute
	offlineAfter  = 10 * time.Minute
	deadlineAfter = 45 * time.Minute
	staleAfter    = 3 * time.Minute
)

var start = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

type simRelease struct {
	version string
	parsed  Version
	sv      int64
	ready   bool
	failP   int // percent of installs that fail
	revertP int // percent of installs that boot back into the old image
}

type simRollout struct {
	uid      string
	rel      int
	created  time.Time
	waves    []WaveSpec
	sizes    []WaveSize
	region   string // selector region= ("" selects every device)
	success  float64
	minFail  int64
	rollback bool
	contin   bool
	paused   bool
	abort    bool
	commit   bool
	approved string
	dlAbort  bool

	// Controller-owned status.
	phase      Phase
	current    int
	states     []WaveState
	rbReq      bool
	abortWhy   string
	readyWhy   string
	ready      Condition
	stalled    Condition
	reportedAt *time.Time
	observed   int
	cutoffs    []uint64
	counts     []Counts // the OTA server's, per spec wave
}

type simWork struct {
	ro       int
	target   string
	sv       int64
	rollback bool
	step     int
}

type simDevice struct {
	ranks    map[string]uint64 // rollout uid → Rank
	id       string
	typ      string
	region   string
	version  string
	floor    int64
	boot     int
	enrolled time.Time
	online   bool
	seen     time.Time
	work     *simWork
	took     map[string]bool // "rollout uid|version" installed through that rollout
	// ddi: a hawkBit DDI client, which answers a cancel it can no longer
	// honour with "rejected" (rollout.CancelRejected) instead of ignoring it.
	ddi bool
	// mender: a mender-client device, which checks in with a constant boot
	// (the Mender API has none), may ship on an image no release has
	// (0.0.0-unreleased+<name>, as otaserver/mender maps it), and after a
	// failed install without module rollback runs such an image too
	// (<name>_INCONSISTENT).
	mender bool
}

// unreleasedPrefix is otaserver/mender.UnreleasedPrefix (which this
// package cannot import).
const unreleasedPrefix = "0.0.0-unreleased"

// unreleasedOffers and inconsistentFailures count Mender situations over
// all lives (the test checks the model reaches them).
var unreleasedOffers, inconsistentFailures atomic.Int64

// cancelRejections counts rejected cancels over all lives (the test checks
// the model reaches them).
var cancelRejections atomic.Int64

type simRecord struct {
	Record
	offeredAt time.Time
}

type world struct {
	t          *rapid.T
	now        time.Time
	releases   []simRelease
	rollouts   []*simRollout
	devices    []*simDevice
	records    map[[2]int]*simRecord // (rollout, device)
	serverDown int                   // steps the OTA server stays silent
}

func newWorld(t *rapid.T) *world {
	w := &world{t: t, now: start, records: map[[2]int]*simRecord{}}
	sv := int64(5)
	for i, v := range []string{"2.0.0", "2.1.0", "2.2.0", "2.2.1", "2.3.0", "2.4.0"} {
		if i > 1 {
			sv += int64(rapid.IntRange(0, 1).Draw(t, "svBump"))
		}
		w.releases = append(w.releases, simRelease{
			version: v, parsed: ParseVersion(v), sv: sv, ready: true,
			failP:   rapid.SampledFrom([]int{0, 0, 10, 60}).Draw(t, "failP"),
			revertP: rapid.SampledFrom([]int{0, 0, 20}).Draw(t, "revertP"),
		})
	}
	for range rapid.IntRange(8, 16).Draw(t, "devices") {
		w.enroll("2.0.0", 5)
	}
	return w
}

func (w *world) logf(format string, args ...any) {
	w.t.Logf("[%3.0fm] %s", w.now.Sub(start).Minutes(), fmt.Sprintf(format, args...))
}

func (w *world) enroll(version string, floor int64) {
	d := &simDevice{
		id: fmt.Sprintf("d%02d", len(w.devices)), typ: "sensor", region: rapid.SampledFrom([]string{"eu", "us"}).Draw(w.t, "region"),
		version: version, floor: floor, enrolled: w.now, online: true, seen: w.now, took: map[string]bool{},
		ranks: map[string]uint64{},
	}
	if rapid.IntRange(0, 9).Draw(w.t, "otherType") == 0 {
		d.typ = "camera" // no release accepts it
	}
	switch rapid.IntRange(0, 3).Draw(w.t, "protocol") {
	case 0:
		d.ddi = true
	case 1:
		d.mender = true
		if rapid.Bool().Draw(w.t, "factoryImage") {
			d.version = unreleasedPrefix + "+factory-image"
		}
	}
	w.devices = append(w.devices, d)
	w.logf("enroll %s on %s floor %d (%s, %s)", d.id, version, floor, d.typ, d.region)
}

func (w *world) live() {
	for range lifeSteps {
		w.events()
		w.report()
		w.control()
		w.checkRollouts()
		w.devicesStep()
		w.now = w.now.Add(step)
	}
}

// events draws what people and circumstances do this step.
func (w *world) events() {
	t := w.t
	switch rapid.IntRange(0, 19).Draw(t, "event") {
	case 0, 1: // a device joins, maybe already on a newer release
		r := w.releases[rapid.IntRange(0, len(w.releases)-1).Draw(t, "joinRelease")]
		// Its floor may lag its version's, or be above it (it ran a newer
		// release before it was reflashed), which blocks some releases.
		w.enroll(r.version, r.sv+int64(rapid.IntRange(-1, 2).Draw(t, "joinFloorDelta")))
	case 2, 3: // a device goes offline or comes back
		if len(w.devices) > 0 {
			d := w.devices[rapid.IntRange(0, len(w.devices)-1).Draw(t, "toggle")]
			d.online = !d.online
			w.logf("%s online=%v", d.id, d.online)
		}
	case 4, 5, 6: // the next rollout is applied
		w.newRollout()
	case 7: // pause or resume
		if ro := w.pick("pause"); ro != nil {
			ro.paused = !ro.paused
			w.logf("%s paused=%v", ro.uid, ro.paused)
		}
	case 8, 9, 10: // approve the gate a rollout waits at
		for _, ro := range w.rollouts {
			if ro.readyWhy == ReasonAwaitingApproval {
				ro.approved = ro.waves[ro.current].Name
				w.logf("%s approve %s", ro.uid, ro.approved)
				break
			}
		}
	case 11: // abort
		if ro := w.pick("abort"); ro != nil && rapid.IntRange(0, 2).Draw(t, "reallyAbort") == 0 {
			ro.abort = true
			w.logf("%s abort", ro.uid)
		}
	case 12: // commit early
		if ro := w.pick("commit"); ro != nil {
			ro.commit = true
			w.logf("%s commit", ro.uid)
		}
	case 13: // lower the success threshold of a stuck rollout
		for _, ro := range w.rollouts {
			if ro.readyWhy == ReasonWaveCannotSucceed || ro.readyWhy == ReasonProgressDeadline {
				ro.success = 0.5
				w.logf("%s successThreshold=50%%", ro.uid)
				break
			}
		}
	case 14: // a release's key Secret goes missing, or comes back
		r := rapid.IntRange(1, len(w.releases)-1).Draw(t, "releaseToggle")
		w.releases[r].ready = !w.releases[r].ready
		w.logf("release %s ready=%v", w.releases[r].version, w.releases[r].ready)
	case 15: // the OTA server stops reporting for a while
		if w.serverDown == 0 {
			w.serverDown = rapid.IntRange(2, 8).Draw(t, "down")
			w.logf("OTA server silent for %d steps", w.serverDown)
		}
	case 16: // a device is relabelled
		if len(w.devices) > 0 {
			d := w.devices[rapid.IntRange(0, len(w.devices)-1).Draw(t, "relabel")]
			d.region = map[string]string{"eu": "us", "us": "eu"}[d.region]
			w.logf("%s region=%s", d.id, d.region)
		}
	}
}

func (w *world) pick(label string) *simRollout {
	if len(w.rollouts) == 0 {
		return nil
	}
	return w.rollouts[rapid.IntRange(0, len(w.rollouts)-1).Draw(w.t, label)]
}

func (w *world) newRollout() {
	rel := len(w.rollouts) + 1
	if rel >= len(w.releases) {
		return
	}
	t := w.t
	ro := &simRollout{
		uid: fmt.Sprintf("ro-%s", w.releases[rel].version), rel: rel, created: w.now,
		success: 0.9, minFail: 2, rollback: rapid.IntRange(0, 3).Draw(t, "rollbackOnAbort") > 0,
		contin: rapid.Bool().Draw(t, "continuous"), dlAbort: rapid.IntRange(0, 3).Draw(t, "deadlineAbort") == 0,
		region: rapid.SampledFrom([]string{"", "", "eu"}).Draw(t, "selector"), phase: Pending,
	}
	switch rapid.IntRange(0, 3).Draw(t, "waves") {
	case 0:
		ro.sizes = []WaveSize{{Count: 2}, {Percent: 50}, {Percent: 100}}
		ro.waves = []WaveSpec{{Name: "canary", Gate: &Gate{Manual: true}}, {Name: "half", Gate: &Gate{Duration: 5 * time.Minute}}, {Name: "all"}}
	case 1:
		ro.sizes = []WaveSize{{Percent: 10}, {Percent: 100}}
		ro.waves = []WaveSpec{{Name: "ten"}, {Name: "all"}}
	case 2:
		ro.sizes = []WaveSize{{Percent: 100}}
		ro.waves = []WaveSpec{{Name: "all"}}
	default:
		ro.sizes = []WaveSize{{Count: 3}, {Percent: 100}}
		ro.waves = []WaveSpec{{Name: "three", Gate: &Gate{Duration: 2 * time.Minute}}, {Name: "all"}}
	}
	w.rollouts = append(w.rollouts, ro)
	w.logf("apply rollout %s (waves %d, selector %q, rollbackOnAbort %v, continuous %v, deadlineAbort %v)", ro.uid, len(ro.waves), ro.region, ro.rollback, ro.contin, ro.dlAbort)
}

func (w *world) matches(ro *simRollout, d *simDevice) bool {
	return d.typ == "sensor" && (ro.region == "" || ro.region == d.region)
}

// view is what the OTA server's catalog makes of a rollout.
func (w *world) view(ro *simRollout) RolloutView {
	rel := w.releases[ro.rel]
	v := RolloutView{
		Phase: ro.phase, CurrentWave: ro.current, Paused: ro.paused, Abort: ro.abort,
		RollbackRequested: ro.rbReq && ro.rollback, Continuous: ro.contin,
		Committed:    !ro.abort && ro.phase != Aborted && (ro.phase == Succeeded || ro.commit),
		ReleaseReady: rel.ready, Version: rel.parsed, SecurityVersion: rel.sv, Cutoffs: ro.cutoffs,
	}
	if ro.phase == Succeeded {
		for _, s := range ro.states {
			if s.CompletedAt != nil && s.CompletedAt.After(v.SucceededAt) {
				v.SucceededAt = *s.CompletedAt
			}
		}
	}
	return v
}

// previous is the usable release with the version, as the catalog finds
// rollback targets.
func (w *world) previous(version string) RollbackTarget {
	for _, r := range w.releases {
		if r.ready && r.version == version {
			return RollbackTarget{Found: true, SecurityVersion: r.sv}
		}
	}
	return RollbackTarget{}
}

// report is the OTA server's reporter: cutoffs, timeouts, counts.
func (w *world) report() {
	if w.serverDown > 0 {
		w.serverDown--
		return
	}
	for ri, ro := range w.rollouts {
		var ranks []uint64
		for _, d := range w.devices {
			if w.matches(ro, d) {
				ranks = append(ranks, d.rank(ro.uid))
			}
		}
		slices.Sort(ranks)
		nth := map[int64]uint64{}
		for _, n := range CountRanks(ro.sizes) {
			if int(n) <= len(ranks) {
				nth[n] = ranks[n-1]
			}
		}
		ro.cutoffs = Cutoffs(ro.sizes, nth)
		for di := range w.devices {
			if r := w.records[[2]int{ri, di}]; r != nil && r.State.InProgress() && !r.RollbackOffered && w.now.Sub(r.offeredAt) > deviceTimeout {
				r.State, r.Reason = StateTimedOut, ReasonTimedOut
			}
		}
		now := w.now
		ro.reportedAt, ro.observed = &now, ro.current
		ro.counts = ro.counts[:0]
		for i := range ro.waves {
			ro.counts = append(ro.counts, w.count(ri, i))
		}
	}
}

// count is the store's view of wave i: states by record, members by wave.
func (w *world) count(ri, wave int) Counts {
	ro := w.rollouts[ri]
	byState := map[State]int64{}
	var targeted, offline int64
	for di, d := range w.devices {
		r := w.records[[2]int{ri, di}]
		if r != nil && r.Wave == wave {
			byState[r.State]++
		}
		if !w.matches(ro, d) {
			continue
		}
		mw := WaveOf(d.rank(ro.uid), ro.cutoffs)
		if r != nil {
			mw = r.Wave
		}
		if mw != wave {
			continue
		}
		targeted++
		if r == nil && w.now.Sub(d.seen) > offlineAfter {
			offline++
		}
	}
	return Tally(targeted, offline, byState)
}

// control runs the controller's Decide on every rollout.
func (w *world) control() {
	for _, ro := range w.rollouts {
		rel := w.releases[ro.rel]
		states := slices.Clone(ro.states)
		for i := range states {
			if i < len(ro.counts) {
				states[i].Counts = ro.counts[i]
			}
		}
		in := Input{
			Now: w.now, Waves: ro.waves, SuccessThreshold: ro.success, FailureThreshold: 0.2, MinFailures: ro.minFail,
			Paused: ro.paused, Abort: ro.abort, RollbackOnAbort: ro.rollback, ApprovedWave: ro.approved,
			ProgressDeadline: deadlineAfter, ProgressDeadlineAbort: ro.dlAbort, StaleAfter: staleAfter,
			Release: Release{Found: true, Ready: rel.ready, Message: "key Secret missing"},
			Phase:   ro.phase, ReadyReason: ro.readyWhy, CurrentWave: ro.current, WaveStates: states,
			AbortReason: ro.abortWhy, RollbackRequested: ro.rbReq, ObservedWave: ro.observed, ReportedAt: ro.reportedAt,
			FleetSize: 1,
		}
		d := Decide(in)
		for _, e := range d.Events {
			w.logf("%s event %s: %s", ro.uid, e.Reason, e.Message)
		}
		ro.phase, ro.current, ro.states, ro.rbReq, ro.abortWhy = d.Phase, d.CurrentWave, d.Waves, d.RollbackRequested, d.AbortReason
		ro.readyWhy, ro.ready, ro.stalled = d.Ready.Reason, d.Ready, d.Stalled
	}
}

// checkRollouts asserts I3 and I5.
func (w *world) checkRollouts() {
	for ri, ro := range w.rollouts {
		if ro.phase != Succeeded && ro.phase != Aborted {
			if !ro.ready.Present || ro.ready.Reason == "" || ro.ready.Message == "" {
				w.t.Fatalf("I3: %s in %s with no Ready reason: %+v", ro.uid, ro.phase, ro.ready)
			}
			if s := ro.states[ro.current]; ro.phase == Progressing && s.StartedAt != nil && s.CompletedAt == nil &&
				w.now.Sub(*s.StartedAt) >= deadlineAfter && !(ro.stalled.Present && ro.stalled.True) {
				w.t.Fatalf("I3: %s wave %s open since %s, past its deadline, and not Stalled: %+v", ro.uid, s.Name, s.StartedAt, ro.ready)
			}
		}
		if ro.reportedAt == nil || !ro.reportedAt.Equal(w.now) {
			continue
		}
		for i, got := range ro.counts {
			if want := w.recount(ri, i); got != want {
				w.t.Fatalf("I5: %s wave %d counts %+v, recount %+v", ro.uid, i, got, want)
			}
		}
	}
}

// recount classifies every device of wave i directly.
func (w *world) recount(ri, wave int) Counts {
	ro := w.rollouts[ri]
	var c Counts
	for di, d := range w.devices {
		r := w.records[[2]int{ri, di}]
		member := w.matches(ro, d)
		mw := -1
		if member {
			mw = WaveOf(d.rank(ro.uid), ro.cutoffs)
		}
		if r != nil {
			mw = r.Wave
		}
		if member && mw == wave {
			c.Targeted++
			if r == nil && w.now.Sub(d.seen) > offlineAfter {
				c.Offline++
			}
		}
		if r == nil || r.Wave != wave {
			continue
		}
		switch r.State {
		case StateOffered, StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateConfirmed:
			c.InProgress++
			c.Offered++
		case StateSucceeded:
			c.Succeeded++
			c.Offered++
		case StateCurrent:
			c.Succeeded++
		case StateSkipped:
			c.Skipped++
		case StateFailed:
			c.Failed++
			c.Offered++
		case StateTimedOut:
			c.TimedOut++
			c.Offered++
		case StateCanceled:
			c.Canceled++
			c.Offered++
		case StateRolledBack:
			c.RolledBack++
			c.Offered++
		case StateRollbackFailed:
			c.RollbackFailed++
			c.Offered++
		default:
			w.t.Fatalf("unknown state %q", r.State)
		}
	}
	return c
}

func (w *world) devicesStep() {
	for di, d := range w.devices {
		if !d.online {
			continue
		}
		d.seen = w.now
		w.checkIn(di, d)
		w.advance(di, d)
	}
}

// checkIn is GET /v1/update: the server decides, writes, answers; the
// device acts on the answer.
func (w *world) checkIn(di int, d *simDevice) {
	boot := fmt.Sprint(d.boot)
	if d.mender {
		boot = "mender"
	}
	dv := DeviceView{Version: ParseVersion(d.version), Floor: d.floor, Boot: boot, EnrolledAt: d.enrolled}
	cands := make([]Candidate, 0, len(w.rollouts))
	idx := make([]int, 0, len(w.rollouts))
	for ri, ro := range w.rollouts {
		r := w.records[[2]int{ri, di}]
		m := w.matches(ro, d)
		if r == nil && !m {
			continue
		}
		c := Candidate{View: w.view(ro), Rank: d.rank(ro.uid), Matches: m}
		if r != nil {
			rc := r.Record
			c.Record = &rc
			if r.PreviousVersion != "" {
				c.Previous = w.previous(r.PreviousVersion)
			}
		}
		cands = append(cands, c)
		idx = append(idx, ri)
	}
	out := CheckIn(dv, cands)
	for _, wr := range out.Writes {
		key := [2]int{idx[wr.Candidate], di}
		r := w.records[key]
		if r == nil || wr.New {
			r = &simRecord{offeredAt: w.now}
			w.records[key] = r
		}
		r.Record = wr.Record
	}
	w.checkAnswer(di, d, cands, idx, out)
	a := out.Answer
	if a.Action == Nothing {
		return
	}
	ri := idx[a.Candidate]
	ro := w.rollouts[ri]
	rel := w.releases[ro.rel]
	switch a.Action {
	case Offer, Resend:
		if d.work == nil || d.work.ro != ri || d.work.rollback {
			if d.mender && strings.HasPrefix(d.version, unreleasedPrefix) {
				unreleasedOffers.Add(1)
			}
			d.work = &simWork{ro: ri, target: rel.version, sv: rel.sv}
			w.logf("%s takes %s from %s", d.id, rel.version, ro.uid)
		}
	case Rollback:
		r := w.records[[2]int{ri, di}]
		if d.work == nil || !d.work.rollback || d.work.ro != ri {
			d.work = &simWork{ro: ri, target: r.PreviousVersion, sv: w.previousSV(r.PreviousVersion), rollback: true}
			w.logf("%s rolls back to %s from %s", d.id, r.PreviousVersion, ro.uid)
		}
	case Cancel:
		switch {
		case d.work == nil || d.work.ro != ri:
		case d.ddi && d.work.step >= 1 && rapid.Bool().Draw(w.t, "rejectCancel"):
			// Installing already: a DDI client says it cannot stop.
			r := w.records[[2]int{ri, di}]
			if next, changed := CancelRejected(r.Record); changed {
				r.Record = next
				w.logf("%s rejects the cancel of %s: installing", d.id, ro.uid)
				cancelRejections.Add(1)
			}
		case d.work.step < 2:
			d.work = nil
			w.logf("%s canceled by %s", d.id, ro.uid)
		}
	case Commit:
		if rel.version != d.version {
			w.t.Fatalf("commit of %s to %s running %s", rel.version, d.id, d.version)
		}
		d.floor = max(d.floor, rel.sv)
		w.logf("%s commits floor %d", d.id, d.floor)
	}
}

func (w *world) previousSV(version string) int64 {
	return w.previous(version).SecurityVersion
}

// checkAnswer asserts I1, I2 and I4 on one answer.
func (w *world) checkAnswer(di int, d *simDevice, cands []Candidate, idx []int, out Outcome) {
	a := out.Answer
	running := ParseVersion(d.version)
	switch a.Action {
	case Offer, Resend:
		v := cands[a.Candidate].View
		if v.Version.Compare(running) <= 0 {
			w.t.Fatalf("I1: %s offered %s while running %s", d.id, v.Version, d.version)
		}
		if v.SecurityVersion < d.floor {
			w.t.Fatalf("I2: %s offered %s (sv %d) below its floor %d", d.id, v.Version, v.SecurityVersion, d.floor)
		}
	case Rollback:
		ri := idx[a.Candidate]
		r := w.records[[2]int{ri, di}]
		if !d.took[w.rollouts[ri].uid+"|"+r.Version] {
			w.t.Fatalf("I1: %s offered a rollback to %s by %s, which never updated it to %s", d.id, r.PreviousVersion, w.rollouts[ri].uid, r.Version)
		}
		if sv := w.previousSV(r.PreviousVersion); sv < d.floor {
			w.t.Fatalf("I2: %s rolled back to %s (sv %d) below its floor %d", d.id, r.PreviousVersion, sv, d.floor)
		}
	}
	if a.Action != Nothing && a.Action != Commit && a.Action != Offer {
		return
	}
	// I4: with no business left in any rollout, the device gets the
	// highest release among the rollouts that are offering, whose fleet
	// includes it with its wave open, that it can install.
	best := ""
	for ci := range cands {
		r := w.records[[2]int{idx[ci], di}]
		if r != nil && (r.State.InProgress() || r.RollbackOffered && r.State != StateRolledBack && r.State != StateRollbackFailed && r.State != StateSkipped) {
			if a.Action == Offer && ci == a.Candidate {
				continue
			}
			return // busy
		}
	}
	for ci, c := range cands {
		v := c.View
		r := w.records[[2]int{idx[ci], di}]
		if !(a.Action == Offer && ci == a.Candidate) && r != nil && !r.reconsidered() {
			continue
		}
		late := v.Phase == Succeeded && !v.Continuous && d.enrolled.After(v.SucceededAt)
		wave := WaveOf(c.Rank, v.Cutoffs)
		if !c.Matches || !v.Offering() || late || v.Cutoffs == nil || wave < 0 || wave > v.CurrentWave ||
			v.Version.Compare(running) <= 0 || v.SecurityVersion < d.floor {
			continue
		}
		if best == "" || v.Version.Compare(ParseVersion(best)) > 0 {
			best = v.Version.String()
		}
	}
	switch {
	case best == "" && a.Action == Offer:
		w.t.Fatalf("I4: %s offered %s, but no rollout could offer", d.id, cands[a.Candidate].View.Version)
	case best != "" && a.Action != Offer:
		w.t.Fatalf("I4: %s on %s (floor %d) could install %s but got %d (%s)", d.id, d.version, d.floor, best, a.Action, a.Reason)
	case best != "" && cands[a.Candidate].View.Version.String() != best:
		w.t.Fatalf("I4: %s offered %s, not the newest %s", d.id, cands[a.Candidate].View.Version, best)
	}
}

// advance moves the device's update on by one step and reports, as the
// agent does: download, install (or fail), reboot (or revert), confirm.
func (w *world) advance(di int, d *simDevice) {
	wk := d.work
	if wk == nil {
		return
	}
	ro := w.rollouts[wk.ro]
	rel := w.releases[ro.rel]
	wk.step++
	switch wk.step {
	case 1:
		w.reportState(di, d, StateDownloading, "")
	case 2:
		if !wk.rollback && rapid.IntRange(0, 99).Draw(w.t, "installFails") < rel.failP {
			w.reportState(di, d, StateFailed, "install: broken image")
			d.work = nil
			if d.mender && rapid.Bool().Draw(w.t, "inconsistent") {
				// No module rollback: the device runs a half-written
				// image, which no release is.
				d.version = unreleasedPrefix + "+" + wk.target + "-INCONSISTENT"
				inconsistentFailures.Add(1)
				w.logf("%s left inconsistent on %s", d.id, d.version)
			}
			return
		}
		w.reportState(di, d, StateInstalled, "")
		if !wk.rollback && d.work != nil {
			d.took[ro.uid+"|"+wk.target] = true
		}
	case 3:
		d.boot++
		if !wk.rollback && rapid.IntRange(0, 99).Draw(w.t, "reverts") < rel.revertP {
			w.logf("%s booted back into %s", d.id, d.version)
			d.work = nil
			return
		}
		d.version = wk.target
		if wk.rollback {
			w.reportState(di, d, StateRolledBack, "")
		} else {
			w.reportState(di, d, StateSucceeded, "")
		}
		d.work = nil
	}
}

// reportState is POST /v1/status; a refused report stops the device's work.
func (w *world) reportState(di int, d *simDevice, s State, reason string) {
	if d.work == nil {
		return
	}
	r := w.records[[2]int{d.work.ro, di}]
	if r == nil {
		w.t.Fatalf("%s reports %s in %s with no record", d.id, s, w.rollouts[d.work.ro].uid)
	}
	next, _, err := ApplyReport(r.Record, s, reason)
	switch {
	case errors.Is(err, ErrCanceled), errors.Is(err, ErrFinal):
		if s != StateSucceeded && s != StateRolledBack {
			d.work = nil
		}
		return
	case err != nil:
		w.t.Fatalf("%s report %s after %s: %v", d.id, s, r.State, err)
	}
	r.Record = next
}

func (d *simDevice) rank(uid string) uint64 {
	r, ok := d.ranks[uid]
	if !ok {
		r = Rank(uid, d.id)
		d.ranks[uid] = r
	}
	return r
}
