package rollout

import "time"

// RolloutView is what the per-device rules read from a Rollout and its
// release.
type RolloutView struct {
	Phase       Phase
	CurrentWave int
	Paused      bool // spec.paused
	Abort       bool // spec.abort
	// RollbackRequested is status.rollbackRequested with spec.rollbackOnAbort.
	RollbackRequested bool
	// Committed: the rollout Succeeded, or spec.commit is set, and it is
	// not aborted. Devices that succeeded then get their floor raised.
	Committed bool
	// Continuous is spec.targetSelection Continuous: after success, devices
	// that joined later are still offered the release.
	Continuous bool
	// SucceededAt is when the rollout succeeded (zero while it has not).
	SucceededAt time.Time
	// ReleaseReady: the release is Ready with an artifact built for its
	// current generation, and its content key is loaded.
	ReleaseReady    bool
	Version         Version
	SecurityVersion int64
	// Cutoffs per wave; nil while count-wave cutoffs are not computed yet.
	Cutoffs []uint64
}

// Aborted reports whether the rollout stopped for good.
func (r RolloutView) Aborted() bool { return r.Abort || r.Phase == Aborted }

// Offering reports whether the rollout may make new offers at all.
func (r RolloutView) Offering() bool {
	if !r.ReleaseReady || r.Paused || r.Abort {
		return false
	}
	switch r.Phase {
	case Progressing, Paused, Succeeded:
		return true
	}
	return false
}

// DeviceView is what the server knows of a device at a check-in.
type DeviceView struct {
	Version    Version // running version, as this check-in says
	Floor      int64   // committed security floor, as this check-in says
	Boot       string  // the check-in's boot, "" when not sent
	EnrolledAt time.Time
}

// RollbackTarget is the release a rollback would offer, if any exists.
type RollbackTarget struct {
	Found           bool
	SecurityVersion int64
}

// Candidate is a rollout that may act on the device: its fleet includes
// the device (Matches), or the device has a record in it.
type Candidate struct {
	View     RolloutView
	Rank     uint64 // Rank(rollout UID, device ID)
	Matches  bool
	Record   *Record // nil: none yet
	Previous RollbackTarget
	// Throttled: the rollout's offer rate limit has no room now.
	Throttled bool
	// Undeliverable, when not "", says why the release can never reach
	// the device through the protocol it speaks (a raw image for a
	// hawkBit DDI client): the rollout lets go of it with that reason.
	Undeliverable string
}

// Action is what the server answers a check-in with.
type Action int

// Actions.
const (
	// Nothing to do now (204).
	Nothing Action = iota
	// Offer the release for the first time.
	Offer
	// Resend the assignment of an update in progress.
	Resend
	// Cancel an update that has not started installing.
	Cancel
	// Rollback offers the device its previous release.
	Rollback
	// Commit tells the device to raise its security floor to the release
	// it runs: the rollout that installed it has committed.
	Commit
)

// Answer is the server's reply to a check-in.
type Answer struct {
	Action Action
	// Candidate is the index of the rollout the answer is for, -1 for none.
	Candidate int
	// Reason explains Nothing, for logs and explanations.
	Reason string
}

// Write is a record the check-in creates or changes.
type Write struct {
	Candidate int
	Record    Record
	// New: the record did not exist.
	New bool
	// Failure: log Record.Reason in the rollout's failure log.
	Failure bool
}

// Outcome is everything one check-in decides.
type Outcome struct {
	Answer Answer
	Writes []Write
	// Conflicts are rollouts that would have offered their release but
	// another rollout acts on the device.
	Conflicts []int
}

// Reasons for Nothing.
const (
	WaitNone           = "no rollout has anything for the device"
	WaitNotOffering    = "rollout not offering"
	WaitCutoffs        = "wave cutoffs not computed yet"
	WaitWaveNotOpen    = "wave not open"
	WaitThrottled      = "offer rate limit reached"
	WaitJoinedLate     = "joined after the rollout succeeded (targetSelection Snapshot)"
	WaitInstalling     = "update in progress on the device"
	WaitReleaseNotUsed = "release not Ready"
)

// ReasonRollbackMoved: the device no longer runs the aborted rollout's
// release (a later rollout updated it), so there is nothing to roll back.
const ReasonRollbackMoved = "skipped: rollback: the device no longer runs this release"

// CheckIn decides one check-in. cands are the device's candidate rollouts
// in catalog order (oldest first).
//
// The ownership rule (docs/rollouts.md): a rollout with unfinished
// business with the device (an update in progress, a rollback due or in
// progress) acts on it, the first such in catalog order; otherwise the
// rollout offering the highest version among those that may offer now
// acts (the oldest on a tie, so a device does not change hands between
// rollouts of the same version). A rollout that can never act on the device
// lets go of it with a final record (skipped, with the reason); a device
// already running a rollout's release is recorded current. When nothing is
// offered, a committed rollout whose release the device runs above its
// floor tells it to commit.
func CheckIn(d DeviceView, cands []Candidate) Outcome {
	var out Outcome
	out.Answer = Answer{Action: Nothing, Candidate: -1, Reason: WaitNone}
	var buf [4]*Record // most devices have few candidates: no allocation
	recs := buf[:0]
	if len(cands) > len(buf) {
		recs = make([]*Record, 0, len(cands))
	}
	recs = recs[:len(cands)]
	for i, c := range cands {
		if c.Record == nil {
			continue
		}
		r := *c.Record
		if next, changed := Observe(r, d.Version.String(), d.Boot); changed {
			r = next
			out.Writes = append(out.Writes, Write{Candidate: i, Record: r, Failure: r.State == StateFailed})
		}
		recs[i] = &r
	}

	owner := -1
	for i, c := range cands {
		if recs[i] == nil {
			continue
		}
		ans, w, holds := unfinished(d, c, *recs[i])
		if w != nil {
			w.Candidate = i
			out.Writes = append(out.Writes, *w)
			recs[i] = &w.Record
		}
		if holds {
			owner = i
			ans.Candidate = i
			out.Answer = ans
			break
		}
	}

	best := -1
	for i, c := range cands {
		if !c.Matches || recs[i] != nil && !recs[i].reconsidered() {
			continue
		}
		f := fresh(d, c)
		switch f.kind {
		case freshWait:
			if owner < 0 && best < 0 && out.Answer.Reason == WaitNone {
				out.Answer.Reason = f.reason
			}
		case freshSkip, freshCurrent:
			r := Record{State: StateSkipped, Wave: f.wave, Version: c.View.Version.String(), PreviousVersion: d.Version.String(), Reason: f.reason}
			if f.kind == freshCurrent {
				r.State, r.PreviousVersion = StateCurrent, ""
			}
			if old := recs[i]; old != nil && old.State == r.State && old.Reason == r.Reason {
				continue
			}
			out.Writes = append(out.Writes, Write{Candidate: i, Record: r, New: true})
			recs[i] = &r
		case freshOffer:
			if owner >= 0 {
				out.Conflicts = append(out.Conflicts, i)
				continue
			}
			if best < 0 || c.View.Version.Compare(cands[best].View.Version) > 0 {
				if best >= 0 {
					out.Conflicts = append(out.Conflicts, best)
				}
				best = i
			} else {
				out.Conflicts = append(out.Conflicts, i)
			}
		}
	}
	if owner >= 0 {
		return out
	}
	if best >= 0 {
		c := cands[best]
		r := Record{
			State: StateOffered, Wave: WaveOf(c.Rank, c.View.Cutoffs), Version: c.View.Version.String(),
			PreviousVersion: d.Version.String(), OfferBoot: d.Boot,
		}
		out.Writes = append(out.Writes, Write{Candidate: best, Record: r, New: true})
		out.Answer = Answer{Action: Offer, Candidate: best}
		return out
	}
	commit := -1
	for i, c := range cands {
		r := recs[i]
		if r == nil || (r.State != StateSucceeded && r.State != StateCurrent) || !c.View.Committed || !c.View.ReleaseReady {
			continue
		}
		if c.View.SecurityVersion <= d.Floor || c.View.Version.Compare(d.Version) != 0 {
			continue
		}
		if commit < 0 || c.View.SecurityVersion > cands[commit].View.SecurityVersion {
			commit = i
		}
	}
	if commit >= 0 {
		out.Answer = Answer{Action: Commit, Candidate: commit}
	}
	return out
}

// reconsidered reports whether a record is a skip whose reason can go
// away: a device skipped for running a newer version may be rolled back
// below the release later, and one with a version that is not semver may
// be updated to one. A floor never goes down, so below-floor skips stay.
func (r *Record) reconsidered() bool {
	return r.State == StateSkipped && (r.Reason == ReasonSkipNotNewer || r.Reason == ReasonSkipBadVersion)
}

// unfinished decides for a rollout the device has a record in: whether it
// still has business with the device (holds), what to answer, and what to
// write.
func unfinished(d DeviceView, c Candidate, r Record) (ans Answer, w *Write, holds bool) {
	v := c.View
	set := func(s State, reason string, failure bool) *Write {
		n := r
		n.State, n.Reason = s, reason
		return &Write{Record: n, Failure: failure}
	}
	switch {
	case r.RollbackOffered:
		if r.State == StateRolledBack || r.State == StateRollbackFailed || r.State == StateSkipped {
			return ans, nil, false
		}
		if reason, ok := rollbackBlocked(d, c, r); !ok {
			return ans, set(StateSkipped, reason, false), false
		}
		return Answer{Action: Rollback}, nil, true

	case r.State.InProgress():
		if v.Aborted() {
			if r.State.Cancelable() {
				return Answer{Action: Cancel}, set(StateCanceled, ReasonAborted, false), true
			}
			if v.RollbackRequested && r.State.TookRelease() {
				return rollback(d, c, r)
			}
			return Answer{Reason: WaitInstalling}, nil, true
		}
		if v.SecurityVersion < d.Floor {
			// Never sign an assignment below the floor (the device would
			// refuse it): fail the update visibly and let go.
			return ans, set(StateFailed, ReasonFloorRose, true), false
		}
		if !v.ReleaseReady {
			return Answer{Reason: WaitReleaseNotUsed}, nil, true
		}
		if r.State == StateInstalled || r.State == StateConfirmed {
			return Answer{Reason: WaitInstalling}, nil, true
		}
		return Answer{Action: Resend}, nil, true

	case v.Aborted() && v.RollbackRequested && r.State.TookRelease():
		return rollback(d, c, r)
	}
	return ans, nil, false
}

// rollback offers the device its previous release, or lets go of it with
// the reason it cannot.
func rollback(d DeviceView, c Candidate, r Record) (Answer, *Write, bool) {
	n := r
	if reason, ok := rollbackBlocked(d, c, r); !ok {
		n.State, n.Reason = StateSkipped, reason
		return Answer{}, &Write{Record: n}, false
	}
	n.RollbackOffered, n.Reason = true, ""
	return Answer{Action: Rollback}, &Write{Record: n}, true
}

// rollbackBlocked says why a rollback cannot be offered (ok false).
func rollbackBlocked(d DeviceView, c Candidate, r Record) (reason string, ok bool) {
	switch {
	case !c.Previous.Found:
		return ReasonNoRollback, false
	case c.Previous.SecurityVersion < d.Floor:
		return ReasonRollbackFloor, false
	case d.Version.Compare(ParseVersion(r.Version)) != 0 && r.State != StateInstalled && r.State != StateConfirmed:
		// Installed but not yet booted: it still runs the previous
		// version, and the rollback keeps it there.
		return ReasonRollbackMoved, false
	}
	return "", true
}

type freshKind int

const (
	freshWait freshKind = iota
	freshSkip
	freshCurrent
	freshOffer
)

type freshDecision struct {
	kind   freshKind
	wave   int
	reason string
}

// fresh decides for a rollout whose fleet includes the device and that has
// no record of it.
func fresh(d DeviceView, c Candidate) freshDecision {
	v := c.View
	switch {
	case !v.Offering():
		return freshDecision{reason: WaitNotOffering}
	case v.Phase == Succeeded && !v.Continuous && !v.SucceededAt.IsZero() && d.EnrolledAt.After(v.SucceededAt):
		return freshDecision{reason: WaitJoinedLate}
	case v.Cutoffs == nil:
		return freshDecision{reason: WaitCutoffs}
	}
	wave := WaveOf(c.Rank, v.Cutoffs)
	switch {
	case wave < 0 || wave > v.CurrentWave:
		return freshDecision{reason: WaitWaveNotOpen}
	case d.Version.Compare(v.Version) == 0:
		return freshDecision{kind: freshCurrent, wave: wave, reason: ReasonAlreadyCurrent}
	case c.Undeliverable != "":
		return freshDecision{kind: freshSkip, wave: wave, reason: c.Undeliverable}
	case !d.Version.Valid():
		return freshDecision{kind: freshSkip, wave: wave, reason: ReasonSkipBadVersion}
	case v.Version.Compare(d.Version) < 0:
		return freshDecision{kind: freshSkip, wave: wave, reason: ReasonSkipNotNewer}

	case v.SecurityVersion < d.Floor:
		return freshDecision{kind: freshSkip, wave: wave, reason: ReasonSkipBelowFloor}
	case c.Throttled:
		return freshDecision{reason: WaitThrottled}
	}
	return freshDecision{kind: freshOffer, wave: wave}
}
