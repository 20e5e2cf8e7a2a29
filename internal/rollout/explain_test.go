package rollout

import (
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

func TestExplain(t *testing.T) {
	notOffering := with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Phase = Paused; c.View.Paused = true })
	noCutoffs := with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Cutoffs = nil })
	closedWave := with2(cand("2.1.0", 0), func(c *Candidate) { c.View.Cutoffs = []uint64{0, MaxRank}; c.Rank = 5 })
	throttled := with2(cand("2.1.0", 0), func(c *Candidate) { c.Throttled = true })
	undeliverable := with2(cand("2.1.0", 0), func(c *Candidate) { c.Undeliverable = "skipped: raw image" })
	lateJoiner := with2(cand("2.1.0", 0), func(c *Candidate) {
		c.View.Phase, c.View.SucceededAt = Succeeded, t0.Add(-1)
	})
	notMatching := with2(cand("2.1.0", 0), func(c *Candidate) {
		c.Matches = false
		c.Record = rec(StateSucceeded, "2.1.0", "2.0.0")
	})
	inProgress := with2(cand("2.1.0", 0), func(c *Candidate) { c.Record = rec(StateDownloading, "2.1.0", "2.0.0") })
	failed := with2(cand("2.1.0", 0), func(c *Candidate) {
		c.Record = rec(StateFailed, "2.1.0", "2.0.0")
		c.Record.Reason = ReasonReverted
	})
	cases := []struct {
		name   string
		d      DeviceView
		cands  []Candidate
		kinds  []VerdictKind
		reason []string
		action Action
	}{
		{"offer", dev("2.0.0", 0), []Candidate{cand("2.1.0", 0)}, []VerdictKind{VerdictActs}, []string{"Offer"}, Offer},
		{"not newer", dev("2.2.0", 0), []Candidate{cand("2.1.0", 0)}, []VerdictKind{VerdictSkip}, []string{ReasonSkipNotNewer}, Nothing},
		{"below floor", dev("2.0.0", 3), []Candidate{cand("2.1.0", 2)}, []VerdictKind{VerdictSkip}, []string{ReasonSkipBelowFloor}, Nothing},
		{"bad version", dev("factory", 0), []Candidate{cand("2.1.0", 0)}, []VerdictKind{VerdictSkip}, []string{ReasonSkipBadVersion}, Nothing},
		{"undeliverable", dev("2.0.0", 0), []Candidate{undeliverable}, []VerdictKind{VerdictSkip}, []string{"skipped: raw image"}, Nothing},
		{"current", dev("2.1.0", 0), []Candidate{cand("2.1.0", 0)}, []VerdictKind{VerdictCurrent}, []string{ReasonAlreadyCurrent}, Nothing},
		{"not offering", dev("2.0.0", 0), []Candidate{notOffering}, []VerdictKind{VerdictWait}, []string{WaitNotOffering}, Nothing},
		{"no cutoffs", dev("2.0.0", 0), []Candidate{noCutoffs}, []VerdictKind{VerdictWait}, []string{WaitCutoffs}, Nothing},
		{"wave not open", dev("2.0.0", 0), []Candidate{closedWave}, []VerdictKind{VerdictWait}, []string{WaitWaveNotOpen}, Nothing},
		{"throttled", dev("2.0.0", 0), []Candidate{throttled}, []VerdictKind{VerdictWait}, []string{WaitThrottled}, Nothing},
		{"joined late", dev("2.0.0", 0), []Candidate{lateJoiner}, []VerdictKind{VerdictWait}, []string{WaitJoinedLate}, Nothing},
		{"no longer selected", dev("2.1.0", 0), []Candidate{notMatching}, []VerdictKind{VerdictDone}, []string{"succeeded"}, Nothing},
		{"failed", dev("2.0.0", 0), []Candidate{failed}, []VerdictKind{VerdictDone}, []string{"failed: " + ReasonReverted}, Nothing},
		{"resend; a newer rollout would offer", dev("2.0.0", 0), []Candidate{inProgress, cand("2.2.0", 0)},
			[]VerdictKind{VerdictActs, VerdictOffer}, []string{"Resend", ReasonOtherOwner}, Resend},
		{"the higher version acts; the other conflicts", dev("2.0.0", 0), []Candidate{cand("2.1.0", 0), cand("2.2.0", 0)},
			[]VerdictKind{VerdictOffer, VerdictActs}, []string{ReasonOtherOwner, "Offer"}, Offer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := Explain(tc.d, tc.cands)
			if ex.Outcome.Answer.Action != tc.action {
				t.Fatalf("action %v, want %v", ex.Outcome.Answer.Action, tc.action)
			}
			for i, v := range ex.Verdicts {
				if v.Kind != tc.kinds[i] || v.Reason != tc.reason[i] {
					t.Errorf("candidate %d: %s %q, want %s %q", i, v.Kind, v.Reason, tc.kinds[i], tc.reason[i])
				}
			}
		})
	}
}

// Explain decides exactly as CheckIn, and its verdicts agree with the
// outcome: one Acts verdict, for the answering rollout, exactly when the
// action is not Nothing; an Offer verdict for each conflict.
func TestExplainAgreesWithCheckIn(t *testing.T) {
	states := []State{StateOffered, StateDownloading, StateInstalled, StateSucceeded, StateCurrent, StateFailed, StateTimedOut, StateCanceled, StateSkipped, StateRolledBack}
	versions := []string{"1.0.0", "2.0.0", "2.1.0", "3.0.0", "factory"}
	rapid.Check(t, func(rt *rapid.T) {
		d := dev(rapid.SampledFrom(versions).Draw(rt, "version"), rapid.Int64Range(0, 3).Draw(rt, "floor"))
		n := rapid.IntRange(0, 4).Draw(rt, "candidates")
		var cands []Candidate
		for range n {
			c := cand(rapid.SampledFrom(versions[:4]).Draw(rt, "release"), rapid.Int64Range(0, 3).Draw(rt, "sv"))
			c.Matches = rapid.Bool().Draw(rt, "matches")
			c.Rank = rapid.Uint64().Draw(rt, "rank")
			c.View.CurrentWave = rapid.IntRange(0, 1).Draw(rt, "wave")
			c.View.Cutoffs = []uint64{MaxRank / 2, MaxRank}
			c.View.Abort = rapid.IntRange(0, 5).Draw(rt, "abort") == 0
			c.Throttled = rapid.IntRange(0, 5).Draw(rt, "throttled") == 0
			if rapid.Bool().Draw(rt, "hasRecord") {
				c.Record = rec(rapid.SampledFrom(states).Draw(rt, "state"), c.View.Version.String(), "1.0.0")
				if c.Record.State == StateSkipped {
					c.Record.Reason = ReasonSkipBelowFloor
				}
			} else if !c.Matches {
				continue
			}
			cands = append(cands, c)
		}
		ex := Explain(d, cands)
		if want := CheckIn(d, cands); !reflect.DeepEqual(ex.Outcome, want) {
			rt.Fatalf("Explain's outcome %+v differs from CheckIn's %+v", ex.Outcome, want)
		}
		acts := 0
		for i, v := range ex.Verdicts {
			if v.Kind == VerdictActs {
				acts++
				if i != ex.Outcome.Answer.Candidate {
					rt.Fatalf("candidate %d acts, the answer is for %d", i, ex.Outcome.Answer.Candidate)
				}
			}
			if v.Reason == "" && v.Kind != VerdictCurrent {
				rt.Fatalf("candidate %d: verdict %s without a reason", i, v.Kind)
			}
		}
		if want := 0; ex.Outcome.Answer.Action != Nothing {
			want = 1
			if acts != want {
				rt.Fatalf("%d Acts verdicts for action %v", acts, ex.Outcome.Answer.Action)
			}
		} else if acts != 0 {
			rt.Fatalf("%d Acts verdicts for Nothing", acts)
		}
		for _, i := range ex.Outcome.Conflicts {
			if ex.Verdicts[i].Kind != VerdictOffer {
				rt.Fatalf("conflict %d has verdict %s", i, ex.Verdicts[i].Kind)
			}
		}
	})
}
