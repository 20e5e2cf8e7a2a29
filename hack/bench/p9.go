package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/reporter"
)

const p9Prefix = "p9-"

// p9Cycles is how many reporter cycles are timed per case (after as many
// untimed warm-up cycles as p9Warm).
const (
	p9Cycles = 15
	p9Warm   = 3
)

// p9Fleet is one fleet of P9: a seeded store of n devices (half of them
// match the rollout's selector), its reporter after the first cycle, and
// 1,000 records (the same whatever n).
type p9Fleet struct {
	n     int
	store *sqlite.Store
	rep   *reporter.Reporter
	uid   string
	next  int // the next device to enroll
	close func()
}

func newP9Fleet(ctx context.Context, dir string, fx *Fixture, n int, res *Results) (*p9Fleet, error) {
	db := filepath.Join(dir, fmt.Sprintf("fleet-%d.db", n))
	seedTime, err := seed(ctx, db, p9Prefix, n)
	if err != nil {
		return nil, err
	}
	removeDB := func() {
		for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
			_ = os.Remove(db + suffix)
		}
	}
	store, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		removeDB()
		return nil, err
	}
	f := &p9Fleet{n: n, store: store, next: n, uid: "uid-p9", close: func() { _ = store.Close(); removeDB() }}
	snap := fx.Snapshot()
	ro := *snap.Rollouts[0]
	ro.UID = f.uid
	snap.Rollouts[0] = &ro
	if f.rep, err = reporter.New(reporter.Config{Catalog: staticCatalog{snap}, Store: store}); err != nil {
		f.close()
		return nil, err
	}
	start := time.Now()
	f.rep.Cycle(ctx) // syncs the whole fleet and flags offline members once
	first := time.Since(start)
	if _, ok := f.rep.Cutoffs(ro.UID); !ok {
		f.close()
		return nil, fmt.Errorf("fleet %d: no cutoffs after the first cycle", n)
	}
	now := time.Now()
	for i := range 1000 {
		r := devicestore.Record{RolloutUID: ro.UID, DeviceID: deviceID(p9Prefix, 2*i), State: rollout.StateOffered,
			Release: benchNS + "/fw-2", Version: "2.0.0", Blob: fx.BlobDigest, PreviousVersion: runningVer, OfferedAt: now, UpdatedAt: now}
		if err := store.PutRecord(ctx, r, nil); err != nil {
			f.close()
			return nil, err
		}
	}
	res.raw("P9 fleet %d: seed %s, first cycle (full fleet sync, offline flags) %s", n, seedTime.Round(time.Millisecond), first.Round(time.Millisecond))
	return f, nil
}

// change makes the busy case's writes before cycle k (untimed): 5
// enrollments, 20 offers or reports, 100 last-seen touches — the same
// number whatever the fleet size.
func (f *p9Fleet) change(ctx context.Context, fx *Fixture, k int) error {
	now := time.Now()
	for range 5 {
		if _, _, err := f.store.Enroll(ctx, benchDevice(p9Prefix, f.next, now)); err != nil {
			return err
		}
		f.next++
	}
	for j := range 20 {
		id := deviceID(p9Prefix, 2*(1000+k*20+j))
		r := devicestore.Record{RolloutUID: f.uid, DeviceID: id, State: rollout.StateOffered,
			Release: benchNS + "/fw-2", Version: "2.0.0", Blob: fx.BlobDigest, PreviousVersion: runningVer, OfferedAt: now, UpdatedAt: now}
		if j%2 == 1 { // a report on an existing offer
			r.DeviceID, r.State = deviceID(p9Prefix, 2*j), rollout.StateDownloading
		}
		if err := f.store.PutRecord(ctx, r, nil); err != nil {
			return err
		}
	}
	seen := map[string]time.Time{}
	for j := range 100 {
		seen[deviceID(p9Prefix, (k*100+j)%f.n)] = now
	}
	return f.store.Touch(ctx, seen)
}

// p9Time times cycles of the fleets in turn (small, large, small, …), so
// the machine's noise falls on both alike, and returns each fleet's
// median. busy makes the changes before each cycle.
func p9Time(ctx context.Context, fx *Fixture, fleets []*p9Fleet, busy bool) ([]time.Duration, error) {
	ds := make([][]float64, len(fleets))
	for k := range p9Warm + p9Cycles {
		for i, f := range fleets {
			if busy {
				if err := f.change(ctx, fx, k); err != nil {
					return nil, err
				}
			}
			t := time.Now()
			f.rep.Cycle(ctx)
			if k >= p9Warm {
				ds[i] = append(ds[i], float64(time.Since(t)))
			}
		}
	}
	out := make([]time.Duration, len(fleets))
	for i := range ds {
		out[i] = time.Duration(median(ds[i]))
	}
	return out, nil
}

// runP9: the reporter's per-cycle store cost for one rollout, with a
// small fleet and a large one in the same run: counters are maintained by
// writes, fleet sync reads from a stored cursor and offline counting moves
// a cursor over last-seen times, so the cost must not grow with the fleet.
func runP9(ctx context.Context, c config, res *Results) error {
	dir := filepath.Join(c.WorkDir, "p9")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 64<<10, 1)
	if err != nil {
		return err
	}
	small, err := newP9Fleet(ctx, dir, fx, c.P9Small, res)
	if err != nil {
		return err
	}
	defer small.close()
	large, err := newP9Fleet(ctx, dir, fx, c.P9Large, res)
	if err != nil {
		return err
	}
	defer large.close()
	fleets := []*p9Fleet{small, large}
	idle, err := p9Time(ctx, fx, fleets, false)
	if err != nil {
		return err
	}
	busy, err := p9Time(ctx, fx, fleets, true)
	if err != nil {
		return err
	}
	si, li, sb, lb := idle[0], idle[1], busy[0], busy[1]
	for i, f := range fleets {
		res.raw("P9 fleet %d: idle cycle %s, busy cycle %s (median of %d, cycles alternating with the other fleet's)", f.n, idle[i].Round(time.Microsecond), busy[i].Round(time.Microsecond), p9Cycles)
	}
	ri, rb := float64(li)/float64(si), float64(lb)/float64(sb)
	ratio := max(ri, rb)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	res.add(Row{ID: "P9", Measure: fmt.Sprintf("reporter cycle store cost, one rollout, fleet of %d vs %d devices (SQLite): idle / a few changes", c.P9Large, c.P9Small),
		Figure:   fmt.Sprintf("%s / %s (%d)", ms(li), ms(lb), c.P9Large),
		Baseline: fmt.Sprintf("%s / %s (%d)", ms(si), ms(sb), c.P9Small),
		Ratio:    fmt.Sprintf("%.2f / %.2f", ri, rb), Target: "≤ 1.5×", Result: passIf(ratio <= 1.5),
		Command: fmt.Sprintf("go run ./hack/bench --only=p9 --p9-small=%d --p9-large=%d", c.P9Small, c.P9Large),
		Notes: fmt.Sprintf("reporter.Cycle with no API client, median of %d cycles after %d warm-up ones, the two fleets' cycles alternating; \"a few changes\": 5 enrollments, 20 offers or reports, 100 touches before each cycle (untimed); "+
			"the first cycle (whole-fleet sync) is in the per-run figures", p9Cycles, p9Warm)})
	return nil
}
