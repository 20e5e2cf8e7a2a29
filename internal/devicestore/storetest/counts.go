package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// testCountsMatchRecount runs random sequences of every write that changes
// a counter (enrollments and last-seen times, records through each write
// path, fleet syncs and wave assignment, conflicts, expiries, forgetting)
// and, after every step, checks that Counts equals Recount for every
// rollout at a random offline cutoff. Counts moves the rollout's offline
// cursor, so the cutoffs, forward and back, are part of what is tested.
//
// Each sequence uses rollouts and devices of its own, so one store serves
// them all.
func testCountsMatchRecount(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var run atomic.Int64
	states := []rollout.State{rollout.StateOffered, rollout.StateDownloading, rollout.StateInstalling, rollout.StateSucceeded,
		rollout.StateFailed, rollout.StateSkipped, rollout.StateCanceled, rollout.StateTimedOut}
	reasons := []string{"", "not newer", "below floor"}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rapid.Check(t, func(rt *rapid.T) {
		pre := fmt.Sprintf("m%d-", run.Add(1))
		rollouts := []string{pre + "r0", pre + "r1"}
		devices := make([]string, 6)
		for i := range devices {
			devices[i] = fmt.Sprintf("%sd%d", pre, i)
		}
		ro := rapid.SampledFrom(rollouts)
		dev := rapid.SampledFrom(devices)
		minute := rapid.IntRange(0, 12)
		wave := rapid.IntRange(0, 2)
		record := func(rt *rapid.T, uid, id string) devicestore.Record {
			r := rec(uid, id, wave.Draw(rt, "wave"), rapid.SampledFrom(states).Draw(rt, "state"))
			r.Reason = rapid.SampledFrom(reasons).Draw(rt, "reason")
			r.OfferedAt = at(minute.Draw(rt, "offered"))
			return r
		}
		check := func(rt *rapid.T, err error) {
			rt.Helper()
			if err != nil && !errors.Is(err, devicestore.ErrNotFound) && !errors.Is(err, devicestore.ErrDuplicateReport) && !errors.Is(err, devicestore.ErrDeviceDeleted) {
				rt.Fatal(err)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"": func(rt *rapid.T) {
				for _, uid := range rollouts {
					cut := at(minute.Draw(rt, "cutoff"))
					got, err := s.Counts(ctx, uid, cut)
					if err != nil {
						rt.Fatal(err)
					}
					want, err := s.Recount(ctx, uid, cut)
					if err != nil {
						rt.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						rt.Fatalf("%s at %s:\nCounts  %s\nRecount %s", uid, cut.Format(time.TimeOnly), fmtCounts(got), fmtCounts(want))
					}
				}
			},
			"Enroll": func(rt *rapid.T) {
				d := NewDevice(dev.Draw(rt, "device"), nil)
				d.LastSeen = at(minute.Draw(rt, "seen")) // may move back on re-enrollment
				_, _, err := s.Enroll(ctx, d)
				check(rt, err)
			},
			"Touch": func(rt *rapid.T) {
				seen := map[string]time.Time{}
				for range rapid.IntRange(1, 3).Draw(rt, "n") {
					seen[dev.Draw(rt, "device")] = at(minute.Draw(rt, "seen"))
				}
				check(rt, s.Touch(ctx, seen))
			},
			"SetRunning": func(rt *rapid.T) {
				check(rt, s.SetRunning(ctx, dev.Draw(rt, "device"), "1.1.0", 1, at(minute.Draw(rt, "seen"))))
			},
			"PutRecord": func(rt *rapid.T) {
				r := record(rt, ro.Draw(rt, "rollout"), dev.Draw(rt, "device"))
				var f *devicestore.Failure
				if r.State == rollout.StateFailed {
					f = &devicestore.Failure{DeviceID: r.DeviceID, Wave: r.Wave, Reason: "boom", At: r.OfferedAt}
				}
				check(rt, s.PutRecord(ctx, r, f))
			},
			"UpdateRecords": func(rt *rapid.T) {
				id := dev.Draw(rt, "device")
				writes := []devicestore.RecordWrite{{Record: record(rt, rollouts[0], id)}}
				if rapid.Bool().Draw(rt, "both") {
					writes = append(writes, devicestore.RecordWrite{Record: record(rt, rollouts[1], id)})
				}
				check(rt, s.UpdateRecords(ctx, id, func([]devicestore.Record) ([]devicestore.RecordWrite, error) { return writes, nil }))
			},
			"ApplyReport": func(rt *rapid.T) {
				uid, id := ro.Draw(rt, "rollout"), dev.Draw(rt, "device")
				next := record(rt, uid, id)
				rep := devicestore.Report{DeviceID: id, RolloutUID: uid, ReportID: fmt.Sprint(rapid.IntRange(0, 5).Draw(rt, "report")), At: t0}
				_, err := s.ApplyReport(ctx, rep, func(cur devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
					cur.State, cur.Reason = next.State, next.Reason
					return cur, nil, nil
				})
				check(rt, err)
			},
			"ExpireOffers": func(rt *rapid.T) {
				m := minute.Draw(rt, "deadline")
				_, err := s.ExpireOffers(ctx, ro.Draw(rt, "rollout"), at(m), at(m+1))
				check(rt, err)
			},
			"SyncFleet": func(rt *rapid.T) {
				uid := ro.Draw(rt, "rollout")
				var up []devicestore.FleetMember
				var rm []string
				for range rapid.IntRange(1, 4).Draw(rt, "n") {
					id := dev.Draw(rt, "device")
					if rapid.Bool().Draw(rt, "remove") {
						rm = append(rm, id)
						continue
					}
					up = append(up, devicestore.FleetMember{DeviceID: id, Rank: rollout.Rank(uid, id), Wave: wave.Draw(rt, "wave")})
				}
				check(rt, s.SyncFleet(ctx, uid, up, rm))
			},
			"AssignWaves": func(rt *rapid.T) {
				a := rapid.Uint64().Draw(rt, "cut0")
				b := rapid.Uint64Range(a, rollout.MaxRank).Draw(rt, "cut1")
				check(rt, s.AssignWaves(ctx, ro.Draw(rt, "rollout"), []uint64{a, b, rollout.MaxRank}))
			},
			"SetConflict": func(rt *rapid.T) {
				check(rt, s.SetConflict(ctx, ro.Draw(rt, "rollout"), dev.Draw(rt, "device"), rapid.Bool().Draw(rt, "conflict")))
			},
			"ForgetRollout": func(rt *rapid.T) {
				check(rt, s.ForgetRollout(ctx, ro.Draw(rt, "rollout")))
			},
		})
	})
}

func fmtCounts(c devicestore.Counts) string {
	s := fmt.Sprintf("size=%d conflicts=%d skipped=%v", c.FleetSize, c.Conflicts, c.Skipped)
	for i := range 3 {
		if w := c.Waves[i]; w != nil {
			s += fmt.Sprintf(" w%d{targeted=%d offline=%d %v}", i, w.Targeted, w.Offline, w.States)
		}
	}
	return s
}

// testRolloutState: the reporter's state round-trips and is forgotten with
// the rollout.
func testRolloutState(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	if _, err := s.RolloutState(ctx, "r1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("no state: %v", err)
	}
	st := devicestore.RolloutState{SelectorKey: "sel", FleetSeq: 42, Cutoffs: []uint64{7, 1 << 63, rollout.MaxRank}, UpdatedAt: t0}
	must(t, s.PutRolloutState(ctx, "r1", st))
	got, err := s.RolloutState(ctx, "r1")
	must(t, err)
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("state %+v, want %+v", got, st)
	}
	st = devicestore.RolloutState{SelectorKey: "sel2", FleetSeq: 43, UpdatedAt: t0.Add(time.Second)}
	must(t, s.PutRolloutState(ctx, "r1", st))
	if got, err := s.RolloutState(ctx, "r1"); err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("state %+v %v, want %+v (no cutoffs)", got, err, st)
	}
	must(t, s.ForgetRollout(ctx, "r1"))
	if _, err := s.RolloutState(ctx, "r1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("after forget: %v", err)
	}
}
