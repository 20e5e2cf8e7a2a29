package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// countsMatch fails unless Counts equals Recount for the rollout at cut,
// and returns them.
func countsMatch(t tb, s devicestore.Store, uid string, cut time.Time) devicestore.Counts {
	t.Helper()
	ctx := context.Background()
	got, err := s.Counts(ctx, uid, cut)
	if err != nil {
		t.Fatalf("counts of %s: %v", uid, err)
	}
	want, err := s.Recount(ctx, uid, cut)
	if err != nil {
		t.Fatalf("recount of %s: %v", uid, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s at %s:\nCounts  %s\nRecount %s", uid, cut.Format(time.TimeOnly), fmtCounts(got), fmtCounts(want))
	}
	return got
}

func totals(c devicestore.Counts) (offline int64, states map[rollout.State]int64) {
	states = map[rollout.State]int64{}
	for _, w := range c.Waves {
		offline += w.Offline
		for st, n := range w.States {
			states[st] += n
		}
	}
	return offline, states
}

// syncFrom is the reporter's fleet sync from a DevicesSince page read
// earlier: every device listed joins the rollout's fleet.
func syncFrom(t tb, s devicestore.Store, uid string, refs []devicestore.DeviceRef) {
	t.Helper()
	var up []devicestore.FleetMember
	for _, r := range refs {
		rank := rollout.Rank(uid, r.ID)
		up = append(up, devicestore.FleetMember{DeviceID: r.ID, Rank: rank, Wave: int(rank % 3)})
	}
	if err := s.SyncFleet(context.Background(), uid, up, nil); err != nil {
		t.Fatalf("sync fleet of %s: %v", uid, err)
	}
}

// testDeleteDevice deletes a device in each state a device can hold in a
// rollout (offered, in progress, succeeded, failed, skipped, offline,
// conflict), checking after each that it is gone from every read, every
// fleet and every count (Counts equal to Recount), and from its
// enrollment's quota count; the failure log keeps its history.
func testDeleteDevice(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	cut := t0.Add(time.Hour)
	seen := t0.Add(2 * time.Hour)
	victims := []string{"del-offered", "del-progress", "del-succeeded", "del-failed", "del-skipped", "del-offline", "del-conflict"}
	keep := []string{"keep-1", "keep-2"}
	devs := map[string]devicestore.Device{}
	for i, id := range append(slices.Clone(victims), keep...) {
		d := TenantDevice(id, "team-d", []string{"e1", "e2"}[i%2])
		got, created, err := s.EnrollWithin(ctx, d, 100)
		must(t, err)
		if !created {
			t.Fatalf("%s not created", id)
		}
		devs[id] = got
		if id != "del-offline" {
			must(t, s.Touch(ctx, map[string]time.Time{id: seen}))
		}
	}
	refs, err := s.DevicesSince(ctx, 0, -1)
	must(t, err)
	syncFrom(t, s, "r1", refs)
	syncFrom(t, s, "r2", []devicestore.DeviceRef{{ID: "del-failed"}, {ID: "del-offline"}, {ID: "keep-1"}})
	put := func(uid, id string, st rollout.State, f *devicestore.Failure) {
		t.Helper()
		r := rec(uid, id, int(rollout.Rank(uid, id)%3), st)
		if st == rollout.StateSkipped {
			r.Reason = "not newer"
		}
		must(t, s.PutRecord(ctx, r, f))
	}
	put("r1", "del-offered", rollout.StateOffered, nil)
	put("r1", "del-progress", rollout.StateOffered, nil)
	put("r1", "del-succeeded", rollout.StateSucceeded, nil)
	put("r1", "del-failed", rollout.StateFailed, &devicestore.Failure{DeviceID: "del-failed", Reason: "boom", At: t0})
	put("r2", "del-failed", rollout.StateOffered, nil)
	put("r1", "del-skipped", rollout.StateSkipped, nil)
	put("r1", "keep-2", rollout.StateSucceeded, nil)
	if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: "del-progress", ReportID: "rep-1", RolloutUID: "r1", At: t0},
		func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
			r.State = rollout.StateDownloading
			return r, nil, nil
		}); err != nil {
		t.Fatal(err)
	}
	must(t, s.SetConflict(ctx, "r1", "del-conflict", true))
	must(t, s.SetConflict(ctx, "r2", "del-conflict", true)) // not a member of r2
	must(t, s.PutWrappedKey(ctx, "del-offered", "blob", []byte("wrapped")))

	// Before: every victim counts somewhere.
	c1, c2 := countsMatch(t, s, "r1", cut), countsMatch(t, s, "r2", cut)
	off1, st1 := totals(c1)
	off2, _ := totals(c2)
	if c1.FleetSize != 9 || c2.FleetSize != 3 || off1 != 1 || off2 != 1 || c1.Conflicts != 1 || c2.Conflicts != 1 ||
		st1[rollout.StateDownloading] != 1 || st1[rollout.StateFailed] != 1 || c1.Skipped["not newer"] != 1 {
		t.Fatalf("before: r1 %s; r2 %s", fmtCounts(c1), fmtCounts(c2))
	}
	for _, id := range victims {
		// Cached by a store that caches.
		for range 2 {
			_, err := s.DeviceByToken(ctx, devs[id].TokenHash)
			must(t, err)
		}
	}
	members := map[string]map[string]bool{"r1": {}, "r2": {"del-failed": true, "del-offline": true, "keep-1": true}}
	for id := range devs {
		members["r1"][id] = true
	}
	enrolled := map[string]int64{"e1": 5, "e2": 4}
	enrolledThrough(t, s, "team-d", "e1", enrolled["e1"])
	enrolledThrough(t, s, "team-d", "e2", enrolled["e2"])

	for _, id := range victims {
		must(t, s.DeleteDevice(ctx, id))
		noDevice(t, s, devs[id])
		for _, uid := range []string{"r1", "r2"} {
			if _, err := s.Record(ctx, uid, id); !errors.Is(err, devicestore.ErrNotFound) {
				t.Fatalf("%s: record in %s after deletion: %v", id, uid, err)
			}
			delete(members[uid], id)
			c := countsMatch(t, s, uid, cut)
			if c.FleetSize != int64(len(members[uid])) {
				t.Fatalf("after deleting %s: %s has %d members, want %d", id, uid, c.FleetSize, len(members[uid]))
			}
			n := int64(len(members[uid]))
			if r, ok, err := s.NthRank(ctx, uid, n+1); err != nil || ok {
				t.Fatalf("after deleting %s: rank %d of %s: %d %v %v", id, n+1, uid, r, ok, err)
			}
			if _, ok, err := s.NthRank(ctx, uid, n); err != nil || !ok {
				t.Fatalf("after deleting %s: rank %d of %s: %v %v", id, n, uid, ok, err)
			}
		}
		enrolled[devs[id].Enrollment]--
		enrolledThrough(t, s, "team-d", "e1", enrolled["e1"])
		enrolledThrough(t, s, "team-d", "e2", enrolled["e2"])
		if listed := ListAll(t, s, devicestore.DeviceFilter{AllNamespaces: true}, 3); slices.Contains(ids(listed), id) {
			t.Fatalf("deleted %s still listed", id)
		}
		if err := s.DeleteDevice(ctx, id); !errors.Is(err, devicestore.ErrNotFound) {
			t.Fatalf("deleting %s twice: %v", id, err)
		}
	}
	// A check-in of a victim still in flight writes nothing.
	err = s.UpdateRecords(ctx, "del-offered", func([]devicestore.Record) ([]devicestore.RecordWrite, error) {
		return []devicestore.RecordWrite{{Record: rec("r1", "del-offered", 0, rollout.StateOffered)}}, nil
	})
	if !errors.Is(err, devicestore.ErrDeviceDeleted) {
		t.Fatalf("a late check-in of a deleted device: %v, want ErrDeviceDeleted", err)
	}
	// Nothing of the victims counts any more.
	c1, c2 = countsMatch(t, s, "r1", cut), countsMatch(t, s, "r2", cut)
	off1, st1 = totals(c1)
	off2, _ = totals(c2)
	if c1.FleetSize != 2 || c2.FleetSize != 1 || off1 != 0 || off2 != 0 || c1.Conflicts != 0 || c2.Conflicts != 0 ||
		c1.Skipped != nil || len(st1) != 1 || st1[rollout.StateSucceeded] != 1 {
		t.Fatalf("after: r1 %s; r2 %s", fmtCounts(c1), fmtCounts(c2))
	}
	if _, err := s.WrappedKey(ctx, "del-offered", "blob"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("wrapped key of a deleted device: %v", err)
	}
	if f, err := s.RecentFailures(ctx, "r1", 20); err != nil || len(f) != 1 || f[0].DeviceID != "del-failed" {
		t.Fatalf("failure log after deletion: %+v %v", f, err)
	}
	// The survivors are untouched.
	for _, id := range keep {
		got, err := s.Device(ctx, id)
		must(t, err)
		sameDevice(t, "survivor", got, devs[id])
	}
	if recs, err := s.Records(ctx, "keep-2"); err != nil || len(recs) != 1 {
		t.Fatalf("survivor's records: %+v %v", recs, err)
	}

	// An ID with no device is not found, and its records stay.
	if err := s.DeleteDevice(ctx, "nobody"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("deleting an unknown device: %v", err)
	}
	must(t, s.PutRecord(ctx, rec("r3", "ghost", 0, rollout.StateOffered), nil))
	if err := s.DeleteDevice(ctx, "ghost"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("deleting a device never enrolled: %v", err)
	}
	if _, err := s.Record(ctx, "r3", "ghost"); err != nil {
		t.Fatalf("a refused deletion removed a record: %v", err)
	}

	// A fleet sync from a device page read before a deletion does not
	// bring the device back.
	late, _, err := s.EnrollWithin(ctx, TenantDevice("late", "team-d", "e1"), 100)
	must(t, err)
	refs, err = s.DevicesSince(ctx, 0, -1)
	must(t, err)
	must(t, s.DeleteDevice(ctx, "late"))
	syncFrom(t, s, "r1", refs)
	if c := countsMatch(t, s, "r1", cut); c.FleetSize != 2 {
		t.Fatalf("fleet after a sync from a page listing a deleted device: %s", fmtCounts(c))
	}
	noDevice(t, s, late)

	// Enrolling a deleted ID again creates a new device, counted again,
	// in no fleet until synced.
	again := TenantDevice("del-offered", "team-d", devs["del-offered"].Enrollment)
	again.TokenHash = hash("del-offered-again")
	got, created, err := s.EnrollWithin(ctx, again, 100)
	must(t, err)
	if !created || got.Seq <= late.Seq || got.Enrollment != again.Enrollment {
		t.Fatalf("re-enrolled after deletion: %+v created=%v, want a new device after seq %d", got, created, late.Seq)
	}
	enrolledThrough(t, s, "team-d", again.Enrollment, enrolled[again.Enrollment]+1)
	if _, err := s.DeviceByToken(ctx, devs["del-offered"].TokenHash); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("the deleted device's token after re-enrollment: %v", err)
	}
	byTok, err := s.DeviceByToken(ctx, again.TokenHash)
	must(t, err)
	sameDevice(t, "re-enrolled", byTok, got)
	if recs, err := s.Records(ctx, "del-offered"); err != nil || len(recs) != 0 {
		t.Fatalf("re-enrolled device inherits records %+v %v", recs, err)
	}
	if c := countsMatch(t, s, "r1", cut); c.FleetSize != 2 {
		t.Fatalf("re-enrolled device joined a fleet unsynced: %s", fmtCounts(c))
	}
	if _, err := s.WrappedKey(ctx, "del-offered", "blob"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("re-enrolled device inherits a wrapped key: %v", err)
	}
	refs, err = s.DevicesSince(ctx, late.Seq, -1)
	must(t, err)
	if len(refs) != 1 || refs[0].ID != "del-offered" || refs[0].Seq != got.Seq {
		t.Fatalf("DevicesSince after the deleted newest device: %+v", refs)
	}
}

// testDeleteDeviceSeq: Seq is never handed out twice, even when the
// newest device is deleted, so a fleet sync whose cursor passed it still
// sees the next device; a deleted device's last-seen time does not carry
// over to a device enrolled later with its ID.
func testDeleteDeviceSeq(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	a, _, err := s.Enroll(ctx, NewDevice("a", nil))
	must(t, err)
	b, _, err := s.Enroll(ctx, NewDevice("b", nil))
	must(t, err)
	must(t, s.Touch(ctx, map[string]time.Time{"b": t0.Add(time.Hour)}))
	must(t, s.DeleteDevice(ctx, "b"))
	cursor := b.Seq // a fleet sync read b
	c, created, err := s.Enroll(ctx, NewDevice("c", nil))
	must(t, err)
	if !created || c.Seq <= b.Seq {
		t.Fatalf("c enrolled after deleting b (seq %d): seq %d", b.Seq, c.Seq)
	}
	refs, err := s.DevicesSince(ctx, cursor, 10)
	must(t, err)
	if len(refs) != 1 || refs[0].ID != "c" {
		t.Fatalf("DevicesSince(%d) after deleting the newest device: %+v", cursor, refs)
	}
	b2, created, err := s.Enroll(ctx, NewDevice("b", nil))
	must(t, err)
	if !created || b2.Seq <= c.Seq || !b2.LastSeen.Equal(t0) {
		t.Fatalf("b enrolled again: %+v created=%v, want a new device last seen at enrollment (%v)", b2, created, t0)
	}
	if got, err := s.Device(ctx, "b"); err != nil || !got.LastSeen.Equal(t0) {
		t.Fatalf("b enrolled again: %+v %v, want last seen %v", got, err, t0)
	}
	if got, err := s.Device(ctx, "a"); err != nil || got.Seq != a.Seq {
		t.Fatalf("a: %+v %v", got, err)
	}
}

// testDeleteModel runs random sequences of enrollments, offers, reports,
// touches, conflicts, fleet syncs (from device pages read earlier, so they
// may list devices deleted since) and deletions against a model of the
// live devices and fleets, checking after every step that Counts equals
// Recount for every rollout, that listing all pages returns exactly the
// live devices, that each fleet is exactly its live members and that the
// enrollment count is the live devices'. Each sequence has a tenant of
// its own, so one store serves them all.
func testDeleteModel(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var run atomic.Int64
	states := []rollout.State{rollout.StateOffered, rollout.StateDownloading, rollout.StateSucceeded,
		rollout.StateFailed, rollout.StateSkipped, rollout.StateTimedOut}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rapid.Check(t, func(rt *rapid.T) {
		ns := fmt.Sprintf("dm%d", run.Add(1))
		rollouts := []string{ns + "-r0", ns + "-r1"}
		all := make([]string, 5)
		for i := range all {
			all[i] = fmt.Sprintf("%s-d%d", ns, i)
		}
		live := map[string]devicestore.Device{}
		fleets := map[string]map[string]bool{rollouts[0]: {}, rollouts[1]: {}}
		var page []devicestore.DeviceRef // the last device page read
		var maxSeq int64
		baseSeq := int64(-1) // before this sequence's first device; -1 until it enrolls
		minute := rapid.IntRange(0, 10)
		liveID := func(rt *rapid.T) (string, bool) {
			if len(live) == 0 {
				return "", false
			}
			ids := make([]string, 0, len(live))
			for id := range live {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			return rapid.SampledFrom(ids).Draw(rt, "live device"), true
		}
		record := func(rt *rapid.T, uid, id string) devicestore.Record {
			r := rec(uid, id, rapid.IntRange(0, 2).Draw(rt, "wave"), rapid.SampledFrom(states).Draw(rt, "state"))
			r.OfferedAt = at(minute.Draw(rt, "offered"))
			if r.State == rollout.StateSkipped {
				r.Reason = rapid.SampledFrom([]string{"not newer", "below floor"}).Draw(rt, "reason")
			}
			return r
		}
		fail := func(rt *rapid.T, what string, err error) {
			rt.Helper()
			if err != nil {
				rt.Fatalf("%s: %v", what, err)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"": func(rt *rapid.T) {
				cut := at(minute.Draw(rt, "cutoff"))
				for _, uid := range rollouts {
					c := countsMatch(rt, s, uid, cut)
					if c.FleetSize != int64(len(fleets[uid])) {
						rt.Fatalf("%s: fleet size %d, want %d (%v)", uid, c.FleetSize, len(fleets[uid]), fleets[uid])
					}
				}
				n := rapid.IntRange(1, 4).Draw(rt, "page")
				listed := ListAll(rt, s, devicestore.DeviceFilter{Namespace: ns}, n)
				want := slices.Sorted(maps.Keys(live))
				if !slices.Equal(ids(listed), want) {
					rt.Fatalf("listed %v, want %v", ids(listed), want)
				}
				for _, d := range listed {
					if d.Seq != live[d.ID].Seq || !bytes.Equal(d.TokenHash, live[d.ID].TokenHash) {
						rt.Fatalf("listed %+v, want %+v", d, live[d.ID])
					}
				}
				got, err := s.EnrolledThrough(ctx, ns, "e")
				if err != nil || got != int64(len(live)) {
					rt.Fatalf("EnrolledThrough(%s) = %d %v, want %d", ns, got, err, len(live))
				}
			},
			"Enroll": func(rt *rapid.T) {
				id := rapid.SampledFrom(all).Draw(rt, "device")
				d := TenantDevice(id, ns, "e")
				d.TokenHash = hash(fmt.Sprintf("%s-%d", id, rapid.IntRange(0, 1000).Draw(rt, "token")))
				d.LastSeen = at(minute.Draw(rt, "seen"))
				got, created, err := s.Enroll(ctx, d)
				fail(rt, "enroll "+id, err)
				_, known := live[id]
				if created == known || got.Seq <= maxSeq {
					rt.Fatalf("enroll %s (known %v): created=%v seq %d after %d", id, known, created, got.Seq, maxSeq)
				}
				maxSeq = got.Seq
				if baseSeq < 0 {
					baseSeq = got.Seq - 1
				}
				live[id] = got
			},
			"ReadPage": func(rt *rapid.T) {
				// From the first device this sequence enrolled: earlier
				// sequences' devices (the store is shared) are not read,
				// so a step costs the same in the last sequence as in
				// the first.
				if baseSeq < 0 {
					page = page[:0]
					return
				}
				refs, err := s.DevicesSince(ctx, baseSeq, -1)
				fail(rt, "devices since this sequence's first", err)
				page = page[:0]
				for _, r := range refs {
					if r.Namespace == ns {
						page = append(page, r)
					}
				}
			},
			"SyncFleet": func(rt *rapid.T) {
				uid := rapid.SampledFrom(rollouts).Draw(rt, "rollout")
				var rm []string
				if rapid.Bool().Draw(rt, "remove") {
					rm = append(rm, rapid.SampledFrom(all).Draw(rt, "removed"))
				}
				var up []devicestore.FleetMember
				for _, r := range page {
					if !slices.Contains(rm, r.ID) {
						rank := rollout.Rank(uid, r.ID)
						up = append(up, devicestore.FleetMember{DeviceID: r.ID, Rank: rank, Wave: int(rank % 3)})
					}
				}
				fail(rt, "sync "+uid, s.SyncFleet(ctx, uid, up, rm))
				for _, m := range up {
					if _, ok := live[m.DeviceID]; ok {
						fleets[uid][m.DeviceID] = true
					}
				}
				for _, id := range rm {
					delete(fleets[uid], id)
				}
			},
			"Offer": func(rt *rapid.T) {
				id, ok := liveID(rt)
				if !ok {
					rt.Skip("no device")
				}
				r := record(rt, rapid.SampledFrom(rollouts).Draw(rt, "rollout"), id)
				fail(rt, "offer", s.UpdateRecords(ctx, id, func([]devicestore.Record) ([]devicestore.RecordWrite, error) {
					return []devicestore.RecordWrite{{Record: r}}, nil
				}))
				fleets[r.RolloutUID][id] = true
			},
			"Report": func(rt *rapid.T) {
				id, ok := liveID(rt)
				if !ok {
					rt.Skip("no device")
				}
				uid := rapid.SampledFrom(rollouts).Draw(rt, "rollout")
				next := record(rt, uid, id)
				rep := devicestore.Report{DeviceID: id, RolloutUID: uid, ReportID: fmt.Sprint(rapid.IntRange(0, 3).Draw(rt, "report")), At: t0}
				_, err := s.ApplyReport(ctx, rep, func(cur devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
					cur.State, cur.Reason = next.State, next.Reason
					return cur, &devicestore.Failure{DeviceID: id, Reason: "report", At: t0}, nil
				})
				switch {
				case err == nil:
					fleets[uid][id] = true // the record pins it
				case !errors.Is(err, devicestore.ErrNotFound) && !errors.Is(err, devicestore.ErrDuplicateReport):
					rt.Fatalf("report: %v", err)
				}
			},
			"Touch": func(rt *rapid.T) {
				id := rapid.SampledFrom(all).Draw(rt, "device")
				fail(rt, "touch", s.Touch(ctx, map[string]time.Time{id: at(minute.Draw(rt, "seen"))}))
			},
			"SetConflict": func(rt *rapid.T) {
				id := rapid.SampledFrom(all).Draw(rt, "device")
				fail(rt, "conflict", s.SetConflict(ctx, rapid.SampledFrom(rollouts).Draw(rt, "rollout"), id, rapid.Bool().Draw(rt, "conflict")))
			},
			"ExpireOffers": func(rt *rapid.T) {
				m := minute.Draw(rt, "deadline")
				_, err := s.ExpireOffers(ctx, rapid.SampledFrom(rollouts).Draw(rt, "rollout"), at(m), at(m+1))
				fail(rt, "expire", err)
			},
			"Delete": func(rt *rapid.T) {
				id := rapid.SampledFrom(all).Draw(rt, "device")
				err := s.DeleteDevice(ctx, id)
				d, known := live[id]
				switch {
				case known && err != nil:
					rt.Fatalf("delete %s: %v", id, err)
				case !known && !errors.Is(err, devicestore.ErrNotFound):
					rt.Fatalf("delete %s (not enrolled): %v, want ErrNotFound", id, err)
				}
				if known {
					delete(live, id)
					for _, f := range fleets {
						delete(f, id)
					}
					noDevice(rt, s, d)
				}
			},
		})
	})
}
