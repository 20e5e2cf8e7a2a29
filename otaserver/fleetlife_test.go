package otaserver_test

import (
	"context"
	"sync"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// racingStore runs before once, just before the first UpdateRecords after
// it is set: a write that lands between a check-in's read and its write.
type racingStore struct {
	devicestore.Store
	once   sync.Once
	before func()
}

func (r *racingStore) UpdateRecords(ctx context.Context, id string, decide func([]devicestore.Record) ([]devicestore.RecordWrite, error)) error {
	if r.before != nil {
		r.once.Do(r.before)
	}
	return r.Store.UpdateRecords(ctx, id, decide)
}

// TestDelayedCheckInNeverOverwrites: a check-in that read the record
// before a report moved it on decides again on the newer record inside the
// write transaction. Here the abort would cancel a device it read as
// "downloaded", but the device's "installing" landed first: the device is
// not told to cancel, and the record keeps "installing".
func TestDelayedCheckInNeverOverwrites(t *testing.T) {
	var h *harness
	var dev string
	race := &racingStore{}
	h = newHarnessWrapped(t, 1000, func(s devicestore.Store) devicestore.Store { race.Store = s; return race })
	d := h.device("racer", true)
	dev = d.ID
	if r, _, _ := d.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("offer: %d %s", r.Status, r.Body)
	}
	for i, st := range []protov1.State{protov1.StateDownloading, protov1.StateDownloaded} {
		if r, _ := d.Report(ctx, protov1.StatusReport{ReportID: "r" + string(rune('0'+i)), Rollout: "ns/ro", State: st}); r.Status != 200 {
			t.Fatalf("report %s: %d %s", st, r.Status, r.Body)
		}
	}
	h.rollout.Spec.Abort = true
	h.rollout.Status.Phase = otav1.RolloutAborted
	h.rebuild()
	race.before = func() {
		_, err := h.store.ApplyReport(ctx, devicestore.Report{DeviceID: dev, ReportID: "late", RolloutUID: string(h.rollout.UID), At: h.clock()},
			func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
				r.State = rollout.StateInstalling
				return r, nil, nil
			})
		if err != nil {
			t.Error(err)
		}
	}
	r, u, _ := d.Check(ctx, "")
	if r.Status != 204 {
		t.Fatalf("check-in after the race: %d %+v, want 204 (the device is installing, too late to cancel)", r.Status, u)
	}
	rec, err := h.store.Record(ctx, string(h.rollout.UID), dev)
	if err != nil || rec.State != rollout.StateInstalling {
		t.Fatalf("record %+v %v, want installing", rec, err)
	}
}

// TestCommitAfterSuccess: once the rollout succeeded, a device running the
// release below its securityVersion is told to commit, with a signed
// commit assignment; once its floor is there, nothing more.
func TestCommitAfterSuccess(t *testing.T) {
	h := newHarness(t, 1000)
	d := h.device("committer", true)
	if r, _, _ := d.Check(ctx, ""); r.Status != 200 {
		t.Fatalf("offer: %d", r.Status)
	}
	if r, _ := d.Report(ctx, protov1.StatusReport{ReportID: "s", Rollout: "ns/ro", State: protov1.StateSucceeded}); r.Status != 200 {
		t.Fatalf("report: %d %s", r.Status, r.Body)
	}
	d.Version, d.Boot = "2.0.0", "after-reboot"
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("not committed yet: %d %s", r.Status, r.Body)
	}
	h.rollout.Status.Phase = otav1.RolloutSucceeded
	h.rebuild()
	r, u, _ := d.Check(ctx, "0123456789abcdef")
	if r.Status != 200 || u.Action != "commit" {
		t.Fatalf("after success: %d %s", r.Status, r.Body)
	}
	a, err := d.Verify(h.verifier, u.Assignment)
	if err != nil || !a.Commit || a.Rollback || a.Version != "2.0.0" || a.SecurityVersion != 5 || a.Nonce != "0123456789abcdef" {
		t.Fatalf("commit assignment %+v %v", a, err)
	}
	d.SecurityFloor = 5
	if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
		t.Fatalf("committed device: %d %s", r.Status, r.Body)
	}
}

// TestNeverDowngrades: a device that enrolls on a newer version than the
// rollout's release is let go with the reason, never offered it; one on
// the release is recorded current without an offer.
func TestNeverDowngrades(t *testing.T) {
	h := newHarness(t, 1000)
	for _, tc := range []struct {
		version string
		state   rollout.State
		reason  string
	}{
		{"2.1.0", rollout.StateSkipped, rollout.ReasonSkipNotNewer},
		{"2.0.0", rollout.StateCurrent, rollout.ReasonAlreadyCurrent},
	} {
		d := h.device("on-"+tc.version, true)
		d.Version = tc.version
		if r, _, _ := d.Check(ctx, ""); r.Status != 204 {
			t.Fatalf("device on %s: %d %s", tc.version, r.Status, r.Body)
		}
		rec, err := h.store.Record(ctx, string(h.rollout.UID), d.ID)
		if err != nil || rec.State != tc.state || rec.Reason != tc.reason {
			t.Fatalf("device on %s: record %+v %v", tc.version, rec, err)
		}
	}
}
