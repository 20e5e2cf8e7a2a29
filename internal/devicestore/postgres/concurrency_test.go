package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/pgtest"
	"github.com/otaflow/otaflow/internal/rollout"
)

// replicas opens n stores on one fresh database at once, each with its
// own pool, as n OTA server replicas starting together would: the first
// migrates, the others wait for it.
func replicas(t *testing.T, n int) []*Store {
	t.Helper()
	dsn := pgtest.Start(t)
	out := make([]*Store, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range out {
		wg.Go(func() {
			out[i], errs[i] = Open(context.Background(), dsn, Options{MaxConns: 4})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = out[i].Close() })
	}
	// Each migration applied once.
	var rows, distinct int
	err := out[0].pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version_id) FROM "+versionTable).Scan(&rows, &distinct)
	if err != nil || rows != distinct {
		t.Fatalf("version table: %d rows, %d versions (%v)", rows, distinct, err)
	}
	return out
}

func baseRecord(uid, dev string) devicestore.Record {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return devicestore.Record{RolloutUID: uid, DeviceID: dev, State: rollout.StateOffered, Release: "ns/rel", Version: "2.0.0",
		Blob: "0", Reason: "0", PreviousVersion: "1.0.0", OfferedAt: t0, UpdatedAt: t0}
}

func incr(s string) string {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return strconv.Itoa(n + 1)
}

// TestReplicasNoLostUpdates drives check-ins (UpdateRecords) and reports
// (ApplyReport) for the same few devices from several replicas at once.
// Each check-in increments a counter in the record's Reason and creates
// or increments a second rollout's record; each report increments another
// in its Blob; every report ID is sent by three replicas. Any lost update,
// phantom insert or double-applied report shows in the final counters.
func TestReplicasNoLostUpdates(t *testing.T) {
	ctx := context.Background()
	const (
		nReplicas = 4
		nDevices  = 5
		checkIns  = 30 // per device
		reports   = 15 // per device, each sent thrice
	)
	rs := replicas(t, nReplicas)
	for d := range nDevices {
		if _, _, err := rs[0].Enroll(ctx, storetest.NewDevice(fmt.Sprint("d", d), nil)); err != nil {
			t.Fatal(err)
		}
		if err := rs[0].PutRecord(ctx, baseRecord("r1", fmt.Sprint("d", d)), nil); err != nil {
			t.Fatal(err)
		}
	}
	var applied, dups, checked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, nDevices*(checkIns+3*reports))
	for d := range nDevices {
		dev := fmt.Sprint("d", d)
		for i := range checkIns {
			s := rs[(d+i)%nReplicas]
			wg.Go(func() {
				err := s.UpdateRecords(ctx, dev, func(recs []devicestore.Record) ([]devicestore.RecordWrite, error) {
					var w []devicestore.RecordWrite
					var r2 *devicestore.Record
					for _, r := range recs {
						switch r.RolloutUID {
						case "r1":
							r.Reason = incr(r.Reason)
							w = append(w, devicestore.RecordWrite{Record: r})
						case "r2":
							r2 = &r
						}
					}
					if r2 == nil {
						// The first check-in creates it; a phantom would
						// make two "first" check-ins.
						n := baseRecord("r2", dev)
						n.Reason = "1"
						w = append(w, devicestore.RecordWrite{Record: n, Failure: &devicestore.Failure{DeviceID: dev, Reason: "created"}})
					} else {
						r2.Reason = incr(r2.Reason)
						w = append(w, devicestore.RecordWrite{Record: *r2})
					}
					return w, nil
				})
				if err == nil {
					checked.Add(1)
				}
				errs <- err
			})
		}
		for i := range reports {
			for k := range 3 {
				s := rs[(d+i+k)%nReplicas]
				wg.Go(func() {
					rep := devicestore.Report{DeviceID: dev, ReportID: fmt.Sprint("rep-", i), RolloutUID: "r1", At: time.Unix(100, 0)}
					_, err := s.ApplyReport(ctx, rep, func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
						r.Blob = incr(r.Blob)
						return r, nil, nil
					})
					switch {
					case err == nil:
						applied.Add(1)
					case errors.Is(err, devicestore.ErrDuplicateReport):
						dups.Add(1)
						err = nil
					}
					errs <- err
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if applied.Load() != nDevices*reports || dups.Load() != 2*nDevices*reports {
		t.Errorf("applied %d reports and refused %d duplicates, want %d and %d", applied.Load(), dups.Load(), nDevices*reports, 2*nDevices*reports)
	}
	if checked.Load() != nDevices*checkIns {
		t.Errorf("%d check-ins stored, want %d", checked.Load(), nDevices*checkIns)
	}
	for d := range nDevices {
		dev := fmt.Sprint("d", d)
		r1, err := rs[1].Record(ctx, "r1", dev)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := rs[2].Record(ctx, "r2", dev)
		if err != nil {
			t.Fatal(err)
		}
		if r1.Reason != strconv.Itoa(checkIns) || r1.Blob != strconv.Itoa(reports) || r2.Reason != strconv.Itoa(checkIns) {
			t.Errorf("%s: r1 check-ins %s reports %s, r2 check-ins %s; want %d, %d, %d", dev, r1.Reason, r1.Blob, r2.Reason, checkIns, reports, checkIns)
		}
	}
	if f, err := rs[3].RecentFailures(ctx, "r2", 100); err != nil || len(f) != nDevices {
		t.Errorf("r2 failure log has %d entries (%v), want one per device", len(f), err)
	}
	// Every report ID was stored exactly once.
	if n, err := rs[0].PruneReports(ctx, time.Unix(101, 0)); err != nil || n != nDevices*reports {
		t.Errorf("pruned %d report IDs (%v), want %d", n, err, nDevices*reports)
	}
}

// TestReplicasExpireOnce: replicas expiring the same rollout at once time
// out each record once and log one failure for it.
func TestReplicasExpireOnce(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 4)
	const n = 200
	for i := range n {
		r := baseRecord("r1", fmt.Sprintf("d%03d", i))
		r.State = rollout.InProgressStates[i%len(rollout.InProgressStates)]
		if err := rs[0].PutRecord(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, s := range rs {
		for range 2 {
			wg.Go(func() {
				k, err := s.ExpireOffers(ctx, "r1", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
				if err != nil {
					t.Error(err)
				}
				total.Add(k)
			})
		}
	}
	wg.Wait()
	if total.Load() != n {
		t.Fatalf("expired %d records in all, want %d", total.Load(), n)
	}
	c, err := rs[0].Counts(ctx, "r1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Waves[0].States[rollout.StateTimedOut] != n {
		t.Fatalf("timed out %d, want %d: %+v", c.Waves[0].States[rollout.StateTimedOut], n, c.Waves[0].States)
	}
	// One failure per record (all at the same time, so the trim to
	// keepFailures, strictly older ones, keeps them all).
	f, err := rs[0].RecentFailures(ctx, "r1", -1)
	if err != nil || len(f) != n {
		t.Fatalf("failure log has %d entries (%v), want %d", len(f), err, n)
	}
}

// TestReplicasSeqOrder: while replicas enroll devices concurrently, a
// fleet sync paging DevicesSince from its last Seq sees every device: a
// sequence number is never visible before a smaller one that will still
// commit.
func TestReplicasSeqOrder(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 4)
	const perReplica = 40
	var wg sync.WaitGroup
	for i, s := range rs {
		wg.Go(func() {
			for k := range perReplica {
				if _, _, err := s.Enroll(ctx, storetest.NewDevice(fmt.Sprintf("r%d-d%d", i, k), nil)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[string]bool{}
	var after int64
	page := func() {
		refs, err := rs[0].DevicesSince(ctx, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			if r.Seq <= after {
				t.Fatalf("seq %d after cursor %d", r.Seq, after)
			}
			seen[r.ID] = true
			after = r.Seq
		}
	}
	for {
		select {
		case <-done:
			for range 4 * perReplica {
				page()
			}
			if len(seen) != len(rs)*perReplica {
				t.Fatalf("fleet sync saw %d devices, want %d", len(seen), len(rs)*perReplica)
			}
			return
		default:
			page()
		}
	}
}

// TestReplicasQuota: replicas enrolling new devices through one
// enrollment at once create exactly its quota between them, however the
// enrollments interleave; each replica reads the same count.
func TestReplicasQuota(t *testing.T) {
	rs := replicas(t, 4)
	stores := make([]devicestore.Store, len(rs))
	for i, s := range rs {
		stores[i] = s
	}
	storetest.QuotaRace(t, stores, "team-r", "line-1", 60, 23)
	var rows int64
	if err := rs[0].pool.QueryRow(context.Background(), `SELECT count(*) FROM devices WHERE namespace = 'team-r' AND enrollment = 'line-1'`).Scan(&rows); err != nil || rows != 23 {
		t.Fatalf("%d devices stored (%v), want 23", rows, err)
	}
}

// TestReplicasDeleteDuringSync: while one replica deletes devices, check
// them in (offers, reports, touches) and conflicts are written on others,
// and another keeps syncing fleets from a device page read before any
// deletion, the deleted devices end in no fleet and no count, and the
// counters equal a recount.
func TestReplicasDeleteDuringSync(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 3)
	const n = 60
	for i := range n {
		if _, _, err := rs[0].Enroll(ctx, storetest.NewDevice(fmt.Sprintf("d%02d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	page, err := rs[0].DevicesSince(ctx, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	members := func(uid string) []devicestore.FleetMember {
		var up []devicestore.FleetMember
		for _, r := range page {
			up = append(up, devicestore.FleetMember{DeviceID: r.ID, Rank: rollout.Rank(uid, r.ID), Wave: int(rollout.Rank(uid, r.ID) % 3)})
		}
		return up
	}
	cut := time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var deleting atomic.Bool
	deleting.Store(true)
	wg.Go(func() { // deletes every even device
		defer deleting.Store(false)
		for i := 0; i < n; i += 2 {
			if err := rs[1].DeleteDevice(ctx, fmt.Sprintf("d%02d", i)); err != nil {
				t.Errorf("delete d%02d: %v", i, err)
				return
			}
		}
	})
	wg.Go(func() { // fleet syncs and counts
		for deleting.Load() {
			for _, uid := range []string{"r1", "r2"} {
				if err := rs[0].SyncFleet(ctx, uid, members(uid), nil); err != nil {
					t.Errorf("sync %s: %v", uid, err)
					return
				}
				if _, err := rs[0].Counts(ctx, uid, cut); err != nil {
					t.Errorf("counts of %s: %v", uid, err)
					return
				}
			}
		}
	})
	wg.Go(func() { // check-ins on every device, deleted or not
		for k := 0; deleting.Load(); k++ {
			id := fmt.Sprintf("d%02d", k%n)
			if err := rs[2].PutRecord(ctx, baseRecord("r1", id), nil); err != nil {
				t.Errorf("offer %s: %v", id, err)
				return
			}
			if err := rs[2].Touch(ctx, map[string]time.Time{id: cut.Add(time.Duration(k%3-1) * time.Minute)}); err != nil {
				t.Errorf("touch %s: %v", id, err)
				return
			}
			if err := rs[2].SetConflict(ctx, "r2", id, k%2 == 0); err != nil {
				t.Errorf("conflict %s: %v", id, err)
				return
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	// Records written by check-ins that raced a deletion (the device was
	// read before it) stay, pinning their device: a store keeps what it is
	// told. Everything else of the deleted devices is gone.
	for _, uid := range []string{"r1", "r2"} {
		if err := rs[0].SyncFleet(ctx, uid, members(uid), nil); err != nil {
			t.Fatal(err)
		}
		got, err := rs[0].Counts(ctx, uid, cut)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rs[1].Recount(ctx, uid, cut)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ncounts  %s\nrecount %s", uid, waves(got), waves(want))
		}
	}
	var stray int
	if err := rs[0].pool.QueryRow(ctx, `SELECT count(*) FROM fleet f WHERE NOT f.pinned AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = f.device_id)`).Scan(&stray); err != nil || stray != 0 {
		t.Fatalf("%d fleet members synced for deleted devices (%v)", stray, err)
	}
	for i := 0; i < n; i += 2 {
		if _, err := rs[0].Device(ctx, fmt.Sprintf("d%02d", i)); !errors.Is(err, devicestore.ErrNotFound) {
			t.Fatalf("d%02d after deletion: %v", i, err)
		}
	}
}

// waves formats counts with their waves' counters.
func waves(c devicestore.Counts) string {
	s := fmt.Sprintf("size=%d conflicts=%d skipped=%v", c.FleetSize, c.Conflicts, c.Skipped)
	for i := range 3 {
		if w := c.Waves[i]; w != nil {
			s += fmt.Sprintf(" w%d%+v", i, *w)
		}
	}
	return s
}
