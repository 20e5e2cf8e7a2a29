// Package storetest is the conformance suite every devicestore.Store
// implementation must pass.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Run runs the suite; open returns a fresh, empty store per subtest.
func Run(t *testing.T, open func(t *testing.T) devicestore.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, devicestore.Store)
	}{
		{"Enroll", testEnroll},
		{"DevicesSince", testDevicesSince},
		{"Records", testRecords},
		{"ApplyReport", testApplyReport},
		{"Fleet", testFleet},
		{"Expire", testExpire},
		{"WrappedKeys", testWrappedKeys},
		{"UpdateRecords", testUpdateRecords},
		{"Offline", testOffline},
		{"RolloutState", testRolloutState},
		{"CountsMatchRecount", testCountsMatchRecount},
		{"TenancyRoundTrip", testTenancyRoundTrip},
		{"TenantMismatch", testTenantMismatch},
		{"ReenrollKeepsEnrollment", testReenrollKeepsEnrollment},
		{"QuotaConcurrent", testQuotaConcurrent},
		{"TenantValidation", testTenantValidation},
		{"QuotaModel", testQuotaModel},
		{"ListDevices", testListDevices},
		{"ListDevicesPaging", testListDevicesPaging},
		{"RecordsOf", testRecordsOf},
		{"DeleteDevice", testDeleteDevice},
		{"DeleteDeviceSeq", testDeleteDeviceSeq},
		{"DeleteModel", testDeleteModel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// NewDevice returns a device for tests.
func NewDevice(id string, labels map[string]string) devicestore.Device {
	return devicestore.Device{
		ID: id, Type: "sensor-v1", Labels: labels, KEM: "x25519",
		PublicKey: []byte("pk-" + id), TokenHash: hash("tok-" + id),
		Version: "1.0.0", SecurityFloor: 1, EnrolledAt: t0, LastSeen: t0,
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testEnroll(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	d, created, err := s.Enroll(ctx, NewDevice("d1", map[string]string{"region": "eu"}))
	must(t, err)
	if !created || d.Seq == 0 || d.Labels["region"] != "eu" || !d.EnrolledAt.Equal(t0) {
		t.Fatalf("enrolled %+v", d)
	}
	got, err := s.DeviceByToken(ctx, hash("tok-d1"))
	must(t, err)
	if got.ID != "d1" || got.Version != "1.0.0" {
		t.Fatalf("by token: %+v", got)
	}
	// Same key: token rotates, old token stops working.
	again := NewDevice("d1", map[string]string{"region": "us"})
	again.TokenHash = hash("tok2")
	d2, created, err := s.Enroll(ctx, again)
	must(t, err)
	if created || d2.Seq <= d.Seq || d2.Labels["region"] != "us" {
		t.Fatalf("re-enrolled %+v", d2)
	}
	if _, err := s.DeviceByToken(ctx, hash("tok-d1")); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("old token: %v", err)
	}
	other := NewDevice("d1", nil)
	other.PublicKey = []byte("another key")
	if _, _, err := s.Enroll(ctx, other); !errors.Is(err, devicestore.ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	must(t, s.SetRunning(ctx, "d1", "2.0.0", 5, t0.Add(time.Minute)))
	must(t, s.Touch(ctx, map[string]time.Time{"d1": t0.Add(time.Hour)}))
	got, err = s.Device(ctx, "d1")
	must(t, err)
	if got.Version != "2.0.0" || got.SecurityFloor != 5 || !got.LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after SetRunning/Touch: %+v", got)
	}
	if err := s.SetRunning(ctx, "nope", "1", 0, t0); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("SetRunning unknown: %v", err)
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("Device unknown: %v", err)
	}
}

func testDevicesSince(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	for i := range 5 {
		_, _, err := s.Enroll(ctx, NewDevice(fmt.Sprintf("d%d", i), nil))
		must(t, err)
	}
	page, err := s.DevicesSince(ctx, 0, 3)
	must(t, err)
	if len(page) != 3 || page[0].ID != "d0" || page[2].ID != "d2" {
		t.Fatalf("page 1: %+v", page)
	}
	page, err = s.DevicesSince(ctx, page[2].Seq, 3)
	must(t, err)
	if len(page) != 2 || page[1].ID != "d4" {
		t.Fatalf("page 2: %+v", page)
	}
	// Re-enrolling moves a device to the end.
	_, _, err = s.Enroll(ctx, NewDevice("d0", map[string]string{"x": "y"}))
	must(t, err)
	page, err = s.DevicesSince(ctx, page[1].Seq, 10)
	must(t, err)
	if len(page) != 1 || page[0].ID != "d0" || page[0].Labels["x"] != "y" {
		t.Fatalf("after re-enroll: %+v", page)
	}
}

func rec(uid, dev string, wave int, st rollout.State) devicestore.Record {
	return devicestore.Record{
		RolloutUID: uid, DeviceID: dev, Wave: wave, State: st, Release: "ns/rel", Version: "2.0.0",
		Blob: "b", PreviousVersion: "1.0.0", OfferedAt: t0, UpdatedAt: t0, OfferBoot: "boot-" + dev,
	}
}

func testRecords(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	if _, err := s.Record(ctx, "r1", "d1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	must(t, s.SetConflict(ctx, "r1", "d1", true))
	must(t, s.PutRecord(ctx, rec("r1", "d1", 0, rollout.StateOffered), nil))
	must(t, s.PutRecord(ctx, rec("r2", "d1", 1, rollout.StateFailed), &devicestore.Failure{DeviceID: "d1", Wave: 1, Reason: "boom", At: t0}))
	r, err := s.Record(ctx, "r1", "d1")
	must(t, err)
	if r.State != rollout.StateOffered || r.PreviousVersion != "1.0.0" || !r.OfferedAt.Equal(t0) || r.OfferBoot != "boot-d1" {
		t.Fatalf("record %+v", r)
	}
	all, err := s.Records(ctx, "d1")
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("records: %+v", all)
	}
	c, err := s.Counts(ctx, "r1", time.Time{})
	must(t, err)
	// Offering pins the device into the fleet and clears its conflict.
	if c.FleetSize != 1 || c.Conflicts != 0 || c.Waves[0].States[rollout.StateOffered] != 1 || c.Waves[0].Targeted != 1 {
		t.Fatalf("counts r1: %+v %+v", c, c.Waves[0])
	}
	f, err := s.RecentFailures(ctx, "r2", 20)
	must(t, err)
	if len(f) != 1 || f[0].Reason != "boom" || f[0].Wave != 1 {
		t.Fatalf("failures: %+v", f)
	}
	must(t, s.ForgetRollout(ctx, "r2"))
	if _, err := s.Record(ctx, "r2", "d1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("after forget: %v", err)
	}
}

func testApplyReport(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	must(t, s.PutRecord(ctx, rec("r1", "d1", 0, rollout.StateOffered), nil))
	step := func(st rollout.State) func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
		return func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
			r.State = st
			return r, nil, nil
		}
	}
	rep := devicestore.Report{DeviceID: "d1", ReportID: "rep-1", RolloutUID: "r1", At: t0}
	r, err := s.ApplyReport(ctx, rep, step(rollout.StateDownloading))
	must(t, err)
	if r.State != rollout.StateDownloading {
		t.Fatalf("state %s", r.State)
	}
	if _, err := s.ApplyReport(ctx, rep, step(rollout.StateFailed)); !errors.Is(err, devicestore.ErrDuplicateReport) {
		t.Fatalf("replay: %v", err)
	}
	// A refused update stores nothing, not even the report ID.
	refuse := errors.New("refused")
	rep2 := devicestore.Report{DeviceID: "d1", ReportID: "rep-2", RolloutUID: "r1", At: t0}
	if _, err := s.ApplyReport(ctx, rep2, func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
		return devicestore.Record{}, nil, refuse
	}); !errors.Is(err, refuse) {
		t.Fatalf("refused: %v", err)
	}
	if _, err := s.ApplyReport(ctx, rep2, step(rollout.StateDownloaded)); err != nil {
		t.Fatalf("retry after refusal: %v", err)
	}
	// Report IDs are scoped per device.
	must(t, s.PutRecord(ctx, rec("r1", "d2", 0, rollout.StateOffered), nil))
	if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: "d2", ReportID: "rep-1", RolloutUID: "r1", At: t0}, step(rollout.StateDownloading)); err != nil {
		t.Fatalf("same ID other device: %v", err)
	}
	if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: "d3", ReportID: "x", RolloutUID: "r1", At: t0}, step(rollout.StateDownloading)); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("no record: %v", err)
	}
	n, err := s.PruneReports(ctx, t0.Add(time.Second))
	must(t, err)
	if n != 3 {
		t.Fatalf("pruned %d, want 3", n)
	}
}

func testFleet(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var members []devicestore.FleetMember
	for i := range 10 {
		id := fmt.Sprintf("d%d", i)
		_, _, err := s.Enroll(ctx, NewDevice(id, nil))
		must(t, err)
		members = append(members, devicestore.FleetMember{DeviceID: id, Rank: uint64(i+1) * 1000, Wave: 1})
	}
	// Fleet sync only adds enrolled devices.
	members = append(members, devicestore.FleetMember{DeviceID: "never-enrolled", Rank: 500, Wave: 1})
	must(t, s.SyncFleet(ctx, "r1", members, nil))
	if r, ok, err := s.NthRank(ctx, "r1", 1); err != nil || !ok || r != 1000 {
		t.Fatalf("lowest rank %d %v %v: a device never enrolled joined the fleet", r, ok, err)
	}
	r, ok, err := s.NthRank(ctx, "r1", 3)
	must(t, err)
	if !ok || r != 3000 {
		t.Fatalf("3rd rank %d %v", r, ok)
	}
	if _, ok, _ := s.NthRank(ctx, "r1", 11); ok {
		t.Fatal("11th rank of 10 devices")
	}
	// d0 is offered in wave 1 (pinned): reassignment leaves it there.
	must(t, s.PutRecord(ctx, rec("r1", "d0", 1, rollout.StateOffered), nil))
	must(t, s.AssignWaves(ctx, "r1", []uint64{3000, 6000, rollout.MaxRank}))
	c, err := s.Counts(ctx, "r1", time.Time{})
	must(t, err)
	got := []int64{c.Waves[0].Targeted, c.Waves[1].Targeted, c.Waves[2].Targeted}
	if got[0] != 2 || got[1] != 4 || got[2] != 4 || c.FleetSize != 10 {
		t.Fatalf("targeted %v size %d", got, c.FleetSize)
	}
	// Re-syncing an offered device does not unpin it; removal does.
	must(t, s.SyncFleet(ctx, "r1", []devicestore.FleetMember{{DeviceID: "d0", Rank: 1000, Wave: 0}}, []string{"d9"}))
	c, err = s.Counts(ctx, "r1", time.Time{})
	must(t, err)
	if c.FleetSize != 9 || c.Waves[1].Targeted != 4 || c.Waves[2].Targeted != 3 {
		t.Fatalf("after resync: size %d w1 %d w2 %d", c.FleetSize, c.Waves[1].Targeted, c.Waves[2].Targeted)
	}
	must(t, s.SetConflict(ctx, "r1", "d5", true))
	must(t, s.SetConflict(ctx, "r1", "d5", true))
	must(t, s.SetConflict(ctx, "r1", "d6", true))
	must(t, s.SetConflict(ctx, "r1", "d6", false))
	c, err = s.Counts(ctx, "r1", time.Time{})
	must(t, err)
	if c.Conflicts != 1 {
		t.Fatalf("conflicts %d", c.Conflicts)
	}
}

func testExpire(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	old := rec("r1", "d1", 0, rollout.StateDownloading)
	must(t, s.PutRecord(ctx, old, nil))
	fresh := rec("r1", "d2", 0, rollout.StateOffered)
	fresh.OfferedAt = t0.Add(time.Hour)
	must(t, s.PutRecord(ctx, fresh, nil))
	done := rec("r1", "d3", 0, rollout.StateSucceeded)
	must(t, s.PutRecord(ctx, done, nil))
	n, err := s.ExpireOffers(ctx, "r1", t0.Add(time.Minute), t0.Add(2*time.Hour))
	must(t, err)
	if n != 1 {
		t.Fatalf("expired %d", n)
	}
	r, err := s.Record(ctx, "r1", "d1")
	must(t, err)
	if r.State != rollout.StateTimedOut || r.Reason != rollout.ReasonTimedOut {
		t.Fatalf("record %+v", r)
	}
	f, err := s.RecentFailures(ctx, "r1", 20)
	must(t, err)
	if len(f) != 1 || f[0].DeviceID != "d1" {
		t.Fatalf("failures %+v", f)
	}
}

func testWrappedKeys(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	if _, err := s.WrappedKey(ctx, "d1", "b"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	must(t, s.PutWrappedKey(ctx, "d1", "b", []byte("wrapped")))
	w, err := s.WrappedKey(ctx, "d1", "b")
	must(t, err)
	if string(w) != "wrapped" {
		t.Fatalf("got %q", w)
	}
	if _, err := s.WrappedKey(ctx, "d2", "b"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("other device: %v", err)
	}
	must(t, s.Ping(ctx))
}

// testUpdateRecords: decide sees the records as committed, its writes land
// in the same transaction, and an error from it stores nothing.
func testUpdateRecords(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	// A device that is not stored (deleted while its check-in was in
	// flight) gets no record.
	err := s.UpdateRecords(ctx, "d1", func([]devicestore.Record) ([]devicestore.RecordWrite, error) {
		return []devicestore.RecordWrite{{Record: rec("r1", "d1", 0, rollout.StateOffered)}}, nil
	})
	if !errors.Is(err, devicestore.ErrDeviceDeleted) {
		t.Fatalf("writes for a device not stored: %v, want ErrDeviceDeleted", err)
	}
	if recs, err := s.Records(ctx, "d1"); err != nil || len(recs) != 0 {
		t.Fatalf("records of a device not stored: %+v %v", recs, err)
	}
	// Nothing to write needs no device.
	must(t, s.UpdateRecords(ctx, "d1", func([]devicestore.Record) ([]devicestore.RecordWrite, error) { return nil, nil }))
	if _, _, err := s.Enroll(ctx, NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	must(t, s.PutRecord(ctx, rec("r1", "d1", 0, rollout.StateOffered), nil))
	var seen []devicestore.Record
	must(t, s.UpdateRecords(ctx, "d1", func(recs []devicestore.Record) ([]devicestore.RecordWrite, error) {
		seen = recs
		r := recs[0]
		r.State = rollout.StateCanceled
		n := rec("r2", "d1", 1, rollout.StateSkipped)
		n.Reason = "why"
		return []devicestore.RecordWrite{{Record: r}, {Record: n, Failure: &devicestore.Failure{DeviceID: "d1", Wave: 1, Reason: "why", At: t0}}}, nil
	}))
	if len(seen) != 1 || seen[0].State != rollout.StateOffered {
		t.Fatalf("decide saw %+v", seen)
	}
	r1, err := s.Record(ctx, "r1", "d1")
	must(t, err)
	r2, err := s.Record(ctx, "r2", "d1")
	must(t, err)
	if r1.State != rollout.StateCanceled || r2.State != rollout.StateSkipped || r2.Reason != "why" {
		t.Fatalf("after update: %+v %+v", r1, r2)
	}
	if f, _ := s.RecentFailures(ctx, "r2", 20); len(f) != 1 {
		t.Fatalf("failure not logged: %+v", f)
	}
	if c, err := s.Counts(ctx, "r2", time.Time{}); err != nil || c.Skipped["why"] != 1 || len(c.Skipped) != 1 {
		t.Fatalf("skip reasons: %+v %v", c.Skipped, err)
	}
	refuse := errors.New("refused")
	if err := s.UpdateRecords(ctx, "d1", func(recs []devicestore.Record) ([]devicestore.RecordWrite, error) {
		if len(recs) != 2 {
			t.Errorf("second decide saw %d records", len(recs))
		}
		r := recs[0]
		r.State = rollout.StateFailed
		return []devicestore.RecordWrite{{Record: r}}, refuse
	}); !errors.Is(err, refuse) {
		t.Fatalf("refused decide: %v", err)
	}
	if r, _ := s.Record(ctx, "r1", "d1"); r.State != rollout.StateCanceled {
		t.Fatalf("a refused decide stored %+v", r)
	}
	if err := s.UpdateRecords(ctx, "d1", func([]devicestore.Record) ([]devicestore.RecordWrite, error) {
		return []devicestore.RecordWrite{{Record: rec("r3", "d2", 0, rollout.StateOffered)}}, nil
	}); err == nil {
		t.Fatal("a write for another device was stored")
	}
	// A device with no record yet gets its first one.
	if _, _, err := s.Enroll(ctx, NewDevice("d9", nil)); err != nil {
		t.Fatal(err)
	}
	must(t, s.UpdateRecords(ctx, "d9", func(recs []devicestore.Record) ([]devicestore.RecordWrite, error) {
		if len(recs) != 0 {
			t.Errorf("new device has records %+v", recs)
		}
		return []devicestore.RecordWrite{{Record: rec("r1", "d9", 0, rollout.StateOffered)}}, nil
	}))
	all, err := s.Records(ctx, "d9")
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("records of d9: %+v", all)
	}
}

// testOffline: members with no record not seen since the cutoff are
// offline, whatever made them seen (enrollment, running version, touch).
func testOffline(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var members []devicestore.FleetMember
	for i := range 5 {
		id := fmt.Sprintf("d%d", i)
		_, _, err := s.Enroll(ctx, NewDevice(id, nil))
		must(t, err)
		members = append(members, devicestore.FleetMember{DeviceID: id, Rank: uint64(i+1) * 1000, Wave: i % 2})
	}
	must(t, s.SyncFleet(ctx, "r1", members, nil))
	// d0: touched after the cutoff; d1: new running version after it;
	// d2: has a record (never offline); d3, d4: silent since enrollment.
	must(t, s.Touch(ctx, map[string]time.Time{"d0": t0.Add(2 * time.Hour)}))
	must(t, s.SetRunning(ctx, "d1", "1.1.0", 1, t0.Add(2*time.Hour)))
	must(t, s.PutRecord(ctx, rec("r1", "d2", 0, rollout.StateOffered), nil))
	c, err := s.Counts(ctx, "r1", t0.Add(time.Hour))
	must(t, err)
	// Waves: d0, d2, d4 in wave 0; d1, d3 in wave 1.
	if c.Waves[0].Offline != 1 || c.Waves[1].Offline != 1 {
		t.Fatalf("offline w0 %d w1 %d, want 1 and 1", c.Waves[0].Offline, c.Waves[1].Offline)
	}
	c, err = s.Counts(ctx, "r1", t0)
	must(t, err)
	if c.Waves[0].Offline != 0 || c.Waves[1].Offline != 0 {
		t.Fatalf("nothing is offline before enrollment: %+v %+v", c.Waves[0], c.Waves[1])
	}
}
