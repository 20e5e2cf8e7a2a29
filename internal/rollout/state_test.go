package rollout

import (
	"errors"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func TestApplyReport(t *testing.T) {
	cases := []struct {
		name     string
		cur      Record
		reported State
		want     State
		failure  bool
		err      error
	}{
		{"progress", Record{State: StateOffered}, StateDownloading, StateDownloading, false, nil},
		{"skip ahead", Record{State: StateOffered}, StateInstalled, StateInstalled, false, nil},
		{"success is confirmed, not succeeded", Record{State: StateInstalled}, StateSucceeded, StateConfirmed, false, nil},
		{"failure", Record{State: StateDownloading}, StateFailed, StateFailed, true, nil},
		{"backwards", Record{State: StateInstalling}, StateDownloading, StateInstalling, false, ErrTransition},
		{"rolledback without a rollback", Record{State: StateInstalled}, StateRolledBack, StateInstalled, false, ErrTransition},
		{"canceled must stop", Record{State: StateCanceled}, StateDownloading, StateCanceled, false, ErrCanceled},
		{"final", Record{State: StateSucceeded}, StateFailed, StateSucceeded, false, ErrFinal},
		{"skipped is final", Record{State: StateSkipped}, StateDownloading, StateSkipped, false, ErrFinal},
		{"timed out may still fail with its reason", Record{State: StateTimedOut}, StateFailed, StateFailed, false, nil},
		{"timed out: progress acknowledged", Record{State: StateTimedOut}, StateInstalled, StateTimedOut, false, nil},
		{"timed out: success waits for the check-in", Record{State: StateTimedOut}, StateSucceeded, StateTimedOut, false, nil},
		{"rollback done", Record{State: StateSucceeded, RollbackOffered: true}, StateRolledBack, StateRolledBack, false, nil},
		{"rollback failed is counted", Record{State: StateSucceeded, RollbackOffered: true}, StateFailed, StateRollbackFailed, true, nil},
		{"rollback progress ignored", Record{State: StateSucceeded, RollbackOffered: true}, StateDownloading, StateSucceeded, false, nil},
		{"rollback final", Record{State: StateRolledBack, RollbackOffered: true}, StateFailed, StateRolledBack, false, ErrFinal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, failure, err := ApplyReport(tc.cur, tc.reported, "boom")
			if !errors.Is(err, tc.err) || got.State != tc.want || failure != tc.failure {
				t.Fatalf("ApplyReport(%s, %s) = %s, %v, %v; want %s, %v, %v", tc.cur.State, tc.reported, got.State, failure, err, tc.want, tc.failure, tc.err)
			}
		})
	}
}

func TestCancelRejected(t *testing.T) {
	canceled := Record{State: StateCanceled, Reason: ReasonAborted, Version: "2.0.0", PreviousVersion: "1.0.0"}
	next, changed := CancelRejected(canceled)
	if !changed || next.State != StateInstalling || next.Reason != "" || next.Version != "2.0.0" {
		t.Fatalf("rejected cancel: got %+v changed=%v, want installing", next, changed)
	}
	for _, r := range []Record{
		{State: StateCanceled, Reason: ReasonCancelAcknowledged},
		{State: StateDownloading},
		{State: StateFailed, Reason: "x"},
		{State: StateCanceled, Reason: ReasonAborted, RollbackOffered: true},
	} {
		if got, changed := CancelRejected(r); changed || got != r {
			t.Errorf("CancelRejected(%+v) = %+v, %v; want unchanged", r, got, changed)
		}
	}
}

func TestObserve(t *testing.T) {
	rec := func(s State) Record {
		return Record{State: s, Version: "2.0.0", PreviousVersion: "1.0.0", OfferBoot: "b1"}
	}
	cases := []struct {
		name    string
		r       Record
		running string
		boot    string
		want    State
		changed bool
	}{
		{"confirmed and running the release", rec(StateConfirmed), "2.0.0", "b2", StateSucceeded, true},
		{"confirmed, back on the old version after a reboot: reverted", rec(StateConfirmed), "1.0.0", "b2", StateFailed, true},
		{"confirmed, old version from the offer's boot: a late check-in", rec(StateConfirmed), "1.0.0", "b1", StateConfirmed, false},
		{"installed, old version after a reboot: reverted", rec(StateInstalled), "1.0.0", "b2", StateFailed, true},
		{"installed, old version, no boot sent: reverted", rec(StateInstalled), "1.0.0", "", StateFailed, true},
		{"downloading, old version: nothing", rec(StateDownloading), "1.0.0", "b2", StateDownloading, false},
		{"timed out, then running the release: succeeded after all", rec(StateTimedOut), "2.0.0", "b3", StateSucceeded, true},
		{"timed out, old version: stays timed out", rec(StateTimedOut), "1.0.0", "b3", StateTimedOut, false},
		{"canceled, but running the release: installed before the cancel", rec(StateCanceled), "2.0.0", "b2", StateSucceeded, true},
		{"canceled, old version: stays canceled", rec(StateCanceled), "1.0.0", "b2", StateCanceled, false},
		{"no version: nothing", rec(StateConfirmed), "", "", StateConfirmed, false},
		{"rollback offered, back on the previous version", Record{State: StateSucceeded, RollbackOffered: true, Version: "2.0.0", PreviousVersion: "1.0.0"}, "1.0.0", "", StateRolledBack, true},
		{"rollback offered, still on the release", Record{State: StateSucceeded, RollbackOffered: true, Version: "2.0.0", PreviousVersion: "1.0.0"}, "2.0.0", "", StateSucceeded, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := Observe(tc.r, tc.running, tc.boot)
			if got.State != tc.want || changed != tc.changed {
				t.Fatalf("Observe = %s, %v; want %s, %v", got.State, changed, tc.want, tc.changed)
			}
			if got.State == StateFailed && got.Reason != ReasonReverted {
				t.Fatalf("reverted without its reason: %q", got.Reason)
			}
		})
	}
}

func TestTally(t *testing.T) {
	c := Tally(20, 2, map[State]int64{
		StateOffered: 1, StateInstalled: 2, StateSucceeded: 3, StateCurrent: 4, StateFailed: 1, StateTimedOut: 1,
		StateCanceled: 1, StateSkipped: 2, StateRolledBack: 1, StateRollbackFailed: 1,
	})
	want := Counts{Targeted: 20, Offline: 2, Offered: 11, InProgress: 3, Succeeded: 7, Failed: 1, TimedOut: 1, Canceled: 1, Skipped: 2, RolledBack: 1, RollbackFailed: 1}
	if c != want {
		t.Fatalf("Tally = %+v\nwant    %+v", c, want)
	}
	if c.Reachable() != 16 || c.Untouched() != 1 || c.Failures() != 2 {
		t.Fatalf("reachable %d untouched %d failures %d", c.Reachable(), c.Untouched(), c.Failures())
	}
}

func TestVersionOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2.1.0", "2.0.9", 1}, {"2.10.0", "2.9.0", 1}, {"2.2.0", "2.2.0-rc.1", 1}, {"2.2.0-rc.2", "2.2.0-rc.10", -1},
		{"v2.1", "2.1.0", 0}, {"2.1.0+b1", "2.1.0+b2", 0}, {"factory", "1.0.0", -1}, {"factory", "factory", 0},
	} {
		if got := ParseVersion(tc.a).Compare(ParseVersion(tc.b)); got != tc.want {
			t.Errorf("%s vs %s = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if ParseVersion("factory").Valid() || !ParseVersion("2.1").Valid() {
		t.Error("validity")
	}
	if ParseVersion("v2.1").Canonical() != "2.1.0" {
		t.Errorf("canonical %q", ParseVersion("v2.1").Canonical())
	}
}

// FuzzVersionOrder: versions from devices are arbitrary strings; their
// order must be a total preorder the rules can rely on (antisymmetric,
// reflexive, consistent with Canonical), and never panic.
func FuzzVersionOrder(f *testing.F) {
	for _, s := range [][2]string{{"2.1.0", "2.0.9"}, {"v2.1", "2.1.0"}, {"2.2.0-rc.1", "2.2.0"}, {"factory", "1.0.0"}, {"", "0.0.0"}, {"1.0.0+b", "1.0.0"}, {"99999999999999999999.0.0", "1.0"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, vb := ParseVersion(a), ParseVersion(b)
		if va.Compare(va) != 0 || vb.Compare(vb) != 0 {
			t.Fatalf("not reflexive: %q %q", a, b)
		}
		if ab, ba := va.Compare(vb), vb.Compare(va); ab != -ba {
			t.Fatalf("%q vs %q = %d, reverse %d", a, b, ab, ba)
		}
		if va.Canonical() == vb.Canonical() && va.Compare(vb) != 0 {
			t.Fatalf("%q and %q share the key %q but differ", a, b, va.Canonical())
		}
	})
}

// TestWireStates: the states the protocol carries are the rules' states,
// spelled alike, and a device may report exactly the reportable ones.
func TestWireStates(t *testing.T) {
	if len(protov1.Reportable) != len(Reportable) {
		t.Fatalf("protocol reportable %v, rules reportable %v", protov1.Reportable, Reportable)
	}
	for i, s := range protov1.Reportable {
		if string(s) != string(Reportable[i]) || !State(s).Valid() {
			t.Errorf("protocol state %q, rules state %q", s, Reportable[i])
		}
	}
}
