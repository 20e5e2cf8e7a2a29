package rollout

import (
	"slices"
	"testing"
	"time"
)

// cand is a candidate whose every wave is open, releasing version v at
// security version sv.
func cand(v string, sv int64) Candidate {
	return Candidate{
		View: RolloutView{Phase: Progressing, ReleaseReady: true, Version: ParseVersion(v), SecurityVersion: sv,
			Cutoffs: []uint64{MaxRank}},
		Matches: true,
	}
}

func dev(v string, floor int64) DeviceView {
	return DeviceView{Version: ParseVersion(v), Floor: floor, EnrolledAt: t0}
}

func with2(c Candidate, f func(*Candidate)) Candidate { f(&c); return c }

func rec(s State, version, prev string) *Record {
	return &Record{State: s, Version: version, PreviousVersion: prev}
}

func TestCheckIn(t *testing.T) {
	type write struct {
		cand   int
		state  State
		reason string
	}
	cases := []struct {
		name   string
		d      DeviceView
		cands  []Candidate
		action Action
		owner  int
		writes []write
		reason string // answer reason, when Nothing
	}{
		{"offer a newer release", dev("2.0.0", 5), []Candidate{cand("2.1.0", 5)}, Offer, 0, []write{{0, StateOffered, ""}}, ""},
		// Failure 1: a device enrolling on 2.2.0 is never offered 2.1.0.
		{"never a downgrade: the device runs a newer version", dev("2.2.0", 7), []Candidate{cand("2.1.0", 7)}, Nothing, -1, []write{{0, StateSkipped, ReasonSkipNotNewer}}, WaitNone},
		{"semver, not string order: 2.10 is newer than 2.9", dev("2.9.0", 0), []Candidate{cand("2.10.0", 0)}, Offer, 0, []write{{0, StateOffered, ""}}, ""},
		{"already current: counted, no offer", dev("2.1.0", 5), []Candidate{cand("2.1.0", 5)}, Nothing, -1, []write{{0, StateCurrent, ReasonAlreadyCurrent}}, WaitNone},
		{"below the floor: let go, with the reason", dev("2.0.0", 8), []Candidate{cand("2.1.0", 7)}, Nothing, -1, []write{{0, StateSkipped, ReasonSkipBelowFloor}}, WaitNone},
		{"a version that is not semver: let go", dev("factory", 0), []Candidate{cand("2.1.0", 7)}, Nothing, -1, []write{{0, StateSkipped, ReasonSkipBadVersion}}, WaitNone},
		{"undeliverable: let go with the front's reason", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.Undeliverable = "skipped: raw image" })}, Nothing, -1,
			[]write{{0, StateSkipped, "skipped: raw image"}}, WaitNone},
		{"undeliverable but already current: counted current", dev("2.1.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.Undeliverable = "skipped: raw image" })}, Nothing, -1,
			[]write{{0, StateCurrent, ReasonAlreadyCurrent}}, WaitNone},
		{"undeliverable release, deliverable fix-forward: the fix-forward offers", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.2.0", 0), func(c *Candidate) { c.Undeliverable = "skipped: raw image" }), cand("2.1.0", 0)}, Offer, 1,
			[]write{{0, StateSkipped, "skipped: raw image"}, {1, StateOffered, ""}}, ""},
		// Failure 2: an older rollout that cannot act lets go, and the
		// fix-forward reaches the device.
		{"held by nobody: the fix-forward reaches a device the old rollout skips", dev("2.0.0", 8),
			[]Candidate{cand("2.1.0", 7), cand("2.2.1", 8)}, Offer, 1,
			[]write{{0, StateSkipped, ReasonSkipBelowFloor}, {1, StateOffered, ""}}, ""},
		{"highest version wins among rollouts that may offer", dev("2.0.0", 0),
			[]Candidate{cand("2.1.0", 0), cand("2.2.1", 0)}, Offer, 1, []write{{1, StateOffered, ""}}, ""},
		{"same version: the oldest rollout acts, the other counts a conflict", dev("2.0.0", 0),
			[]Candidate{cand("2.1.0", 0), cand("2.1.0", 0)}, Offer, 0, []write{{0, StateOffered, ""}}, ""},
		{"an aborted rollout without rollback never holds", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.2.0", 0), func(c *Candidate) { c.View.Phase = Aborted }), cand("2.2.1", 0)}, Offer, 1, []write{{1, StateOffered, ""}}, ""},
		{"a rollout whose release is not Ready never holds a new device", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.ReleaseReady = false }), cand("2.2.1", 0)}, Offer, 1, []write{{1, StateOffered, ""}}, ""},
		{"unfinished business wins over a newer offer", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.Record = rec(StateDownloading, "2.1.0", "2.0.0") }), cand("2.2.1", 0)}, Resend, 0, nil, ""},
		{"installed, waiting for the reboot: nothing, held", DeviceView{Version: ParseVersion("2.0.0"), Boot: "b1"},
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) {
				c.Record = rec(StateInstalled, "2.1.0", "2.0.0")
				c.Record.OfferBoot = "b1"
			}), cand("2.2.1", 0)}, Nothing, 0, nil, WaitInstalling},
		{"wave not open", dev("2.0.0", 0), []Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Cutoffs = []uint64{0, MaxRank}; c.Rank = 5 })}, Nothing, -1, nil, WaitWaveNotOpen},
		{"cutoffs not computed", dev("2.0.0", 0), []Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Cutoffs = nil })}, Nothing, -1, nil, WaitCutoffs},
		{"spec.paused: no new offers", dev("2.0.0", 0), []Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Paused = true })}, Nothing, -1, nil, WaitNotOffering},
		{"spec.paused: updates in progress go on", dev("2.0.0", 0), []Candidate{with2(cand("2.1.0", 0), func(c *Candidate) {
			c.View.Paused = true
			c.Record = rec(StateOffered, "2.1.0", "2.0.0")
		})}, Resend, 0, nil, ""},
		{"throttled: wait, and another rollout may offer", dev("2.0.0", 0),
			[]Candidate{cand("2.1.0", 0), with2(cand("2.2.1", 0), func(c *Candidate) { c.Throttled = true })}, Offer, 0, []write{{0, StateOffered, ""}}, ""},
		{"device not in the fleet and no record: ignored", dev("2.0.0", 0), []Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.Matches = false })}, Nothing, -1, nil, WaitNone},

		{"skipped as not newer, then rolled back below the release: offered after all", dev("2.0.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) {
				c.Record = &Record{State: StateSkipped, Version: "2.1.0", Reason: ReasonSkipNotNewer}
			})},
			Offer, 0, []write{{0, StateOffered, ""}}, ""},
		{"skipped below the floor stays skipped", dev("2.0.0", 8),
			[]Candidate{with2(cand("2.1.0", 7), func(c *Candidate) {
				c.Record = &Record{State: StateSkipped, Version: "2.1.0", Reason: ReasonSkipBelowFloor}
			})},
			Nothing, -1, nil, WaitNone},
		{"skipped as not newer, still not newer: no write", dev("2.2.0", 0),
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) {
				c.Record = &Record{State: StateSkipped, Version: "2.1.0", Reason: ReasonSkipNotNewer}
			})},
			Nothing, -1, nil, WaitNone},

		// Snapshot and continuous targeting after success.
		{"snapshot: a device enrolled after success is not offered", DeviceView{Version: ParseVersion("2.0.0"), EnrolledAt: t0.Add(time.Hour)},
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Phase = Succeeded; c.View.SucceededAt = t0 })}, Nothing, -1, nil, WaitJoinedLate},
		{"snapshot: a device enrolled before success still is", DeviceView{Version: ParseVersion("2.0.0"), EnrolledAt: t0.Add(-time.Hour)},
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Phase = Succeeded; c.View.SucceededAt = t0 })}, Offer, 0, []write{{0, StateOffered, ""}}, ""},
		{"continuous: late devices are offered, never downgraded", DeviceView{Version: ParseVersion("2.0.0"), EnrolledAt: t0.Add(time.Hour)},
			[]Candidate{with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Phase = Succeeded; c.View.SucceededAt = t0; c.View.Continuous = true })}, Offer, 0, []write{{0, StateOffered, ""}}, ""},

		// Abort.
		{"abort cancels an update not yet installing", dev("2.0.0", 0), []Candidate{with2(cand("2.2.0", 0), func(c *Candidate) {
			c.View.Phase = Aborted
			c.Record = rec(StateDownloaded, "2.2.0", "2.0.0")
		})}, Cancel, 0, []write{{0, StateCanceled, ReasonAborted}}, ""},
		{"abort lets an install finish", dev("2.0.0", 0), []Candidate{with2(cand("2.2.0", 0), func(c *Candidate) {
			c.View.Phase = Aborted
			c.Record = rec(StateInstalling, "2.2.0", "2.0.0")
		})}, Nothing, 0, nil, WaitInstalling},
		{"rollback after abort, across a securityVersion bump before the commit", dev("2.2.0", 7), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.RollbackRequested = Aborted, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
			c.Previous = RollbackTarget{Found: true, SecurityVersion: 7}
		})}, Rollback, 0, []write{{0, StateSucceeded, ""}}, ""},
		{"rollback: no target, let go", dev("2.2.0", 7), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.RollbackRequested = Aborted, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		}), cand("2.2.1", 8)}, Offer, 1, []write{{0, StateSkipped, ReasonNoRollback}, {1, StateOffered, ""}}, ""},
		{"rollback: target below the committed floor, let go", dev("2.2.0", 8), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.RollbackRequested = Aborted, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
			c.Previous = RollbackTarget{Found: true, SecurityVersion: 7}
		})}, Nothing, -1, []write{{0, StateSkipped, ReasonRollbackFloor}}, WaitNone},
		{"rollback: the device moved on to a newer release, let go", dev("2.3.0", 0), []Candidate{with2(cand("2.2.0", 0), func(c *Candidate) {
			c.View.Phase, c.View.RollbackRequested = Aborted, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
			c.Previous = RollbackTarget{Found: true}
		})}, Nothing, -1, []write{{0, StateSkipped, ReasonRollbackMoved}}, WaitNone},
		{"timed out, then back on the release: succeeded, then rolled back", dev("2.2.0", 0), []Candidate{with2(cand("2.2.0", 0), func(c *Candidate) {
			c.View.Phase, c.View.RollbackRequested = Aborted, true
			c.Record = rec(StateTimedOut, "2.2.0", "2.1.0")
			c.Previous = RollbackTarget{Found: true}
		})}, Rollback, 0, []write{{0, StateSucceeded, ""}, {0, StateSucceeded, ""}}, ""},

		// Commit.
		{"committed rollout raises the floor of a device running its release", dev("2.2.0", 7), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.Committed = Succeeded, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		})}, Commit, 0, nil, ""},
		{"no commit once the floor is there", dev("2.2.0", 8), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.Committed = Succeeded, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		})}, Nothing, -1, nil, WaitNone},
		{"no commit before the rollout commits", dev("2.2.0", 7), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		})}, Nothing, -1, nil, WaitNone},
		{"an offer goes before a commit", dev("2.2.0", 7), []Candidate{with2(cand("2.2.0", 8), func(c *Candidate) {
			c.View.Phase, c.View.Committed = Succeeded, true
			c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		}), cand("2.3.0", 8)}, Offer, 1, []write{{1, StateOffered, ""}}, ""},

		// Floor rose while offered.
		{"floor rose above an offered release: failed, let go", dev("2.0.0", 9), []Candidate{with2(cand("2.1.0", 7), func(c *Candidate) {
			c.Record = rec(StateDownloading, "2.1.0", "2.0.0")
		})}, Nothing, -1, []write{{0, StateFailed, ReasonFloorRose}}, WaitNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := CheckIn(tc.d, tc.cands)
			if out.Answer.Action != tc.action || out.Answer.Candidate != tc.owner {
				t.Fatalf("answer %+v, want action %d for candidate %d", out.Answer, tc.action, tc.owner)
			}
			if tc.action == Nothing && out.Answer.Reason != tc.reason {
				t.Errorf("reason %q, want %q", out.Answer.Reason, tc.reason)
			}
			var got []write
			for _, w := range out.Writes {
				got = append(got, write{w.Candidate, w.Record.State, w.Record.Reason})
			}
			if !slices.Equal(got, tc.writes) {
				t.Errorf("writes %+v, want %+v", got, tc.writes)
			}
			// Invariants of every answer: no offer of a version at or
			// below the running one, none below the floor.
			if a := out.Answer; a.Action == Offer || a.Action == Resend {
				v := tc.cands[a.Candidate].View
				if v.Version.Compare(tc.d.Version) <= 0 || v.SecurityVersion < tc.d.Floor {
					t.Errorf("offered %s (sv %d) to a device on %s (floor %d)", v.Version, v.SecurityVersion, tc.d.Version, tc.d.Floor)
				}
			}
			// Deciding again on the written records writes nothing more
			// (except a commit, which changes the device, not a record).
			again := tc.cands
			again = append([]Candidate(nil), again...)
			for _, w := range out.Writes {
				r := w.Record
				again[w.Candidate].Record = &r
			}
			if out2 := CheckIn(tc.d, again); len(out2.Writes) != 0 && out.Answer.Action != Nothing {
				t.Errorf("not idempotent: second decision writes %+v", out2.Writes)
			}
		})
	}
}

// TestCheckInRollbackMarksTheRecord: the rollback write sets
// RollbackOffered, and the rolled-back check-in ends it.
func TestCheckInRollbackMarksTheRecord(t *testing.T) {
	c := with2(cand("2.2.0", 8), func(c *Candidate) {
		c.View.Phase, c.View.RollbackRequested = Aborted, true
		c.Record = rec(StateSucceeded, "2.2.0", "2.1.0")
		c.Previous = RollbackTarget{Found: true, SecurityVersion: 7}
	})
	out := CheckIn(dev("2.2.0", 7), []Candidate{c})
	if len(out.Writes) != 1 || !out.Writes[0].Record.RollbackOffered {
		t.Fatalf("writes %+v", out.Writes)
	}
	r := out.Writes[0].Record
	c.Record = &r
	out = CheckIn(dev("2.1.0", 7), []Candidate{c})
	if out.Answer.Action != Nothing || len(out.Writes) != 1 || out.Writes[0].Record.State != StateRolledBack {
		t.Fatalf("after the rollback: %+v", out)
	}
}
