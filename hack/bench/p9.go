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

// p9Fleet times reporter cycles for one rollout over a fleet of n devices
// (half of them match its selector): idle (nothing changed since the last
// cycle) and busy (before each cycle, untimed: 5 enrollments, 20 offers or
// reports, 100 last-seen touches — the same number whatever n). Every
// store call of a cycle is in the time: fleet sync from the stored cursor,
// NthRank for count waves, expiry, Counts (with the offline cursor moving
// with the clock), recent failures. Status applies are off (no client).
func p9Fleet(ctx context.Context, dir string, fx *Fixture, n int, res *Results) (idle, busy time.Duration, err error) {
	db := filepath.Join(dir, fmt.Sprintf("fleet-%d.db", n))
	seedTime, err := seed(ctx, db, p9Prefix, n)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
			_ = os.Remove(db + suffix)
		}
	}()
	store, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer store.Close()
	snap := fx.Snapshot()
	ro := *snap.Rollouts[0]
	ro.UID = "uid-p9"
	snap.Rollouts[0] = &ro
	rep, err := reporter.New(reporter.Config{Catalog: staticCatalog{snap}, Store: store})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	rep.Cycle(ctx) // syncs the whole fleet and flags offline members once
	first := time.Since(start)
	if _, ok := rep.Cutoffs(ro.UID); !ok {
		return 0, 0, fmt.Errorf("fleet %d: no cutoffs after the first cycle", n)
	}
	// The same 1,000 records whatever the fleet size.
	now := time.Now()
	for i := range 1000 {
		r := devicestore.Record{RolloutUID: ro.UID, DeviceID: deviceID(p9Prefix, 2*i), State: rollout.StateOffered,
			Release: benchNS + "/fw-2", Version: "2.0.0", Blob: fx.BlobDigest, PreviousVersion: runningVer, OfferedAt: now, UpdatedAt: now}
		if err := store.PutRecord(ctx, r, nil); err != nil {
			return 0, 0, err
		}
	}
	timeCycles := func(change func(k int) error) (time.Duration, error) {
		var ds []float64
		for k := range p9Warm + p9Cycles {
			if change != nil {
				if err := change(k); err != nil {
					return 0, err
				}
			}
			t := time.Now()
			rep.Cycle(ctx)
			if k >= p9Warm {
				ds = append(ds, float64(time.Since(t)))
			}
		}
		return time.Duration(median(ds)), nil
	}
	if idle, err = timeCycles(nil); err != nil {
		return 0, 0, err
	}
	next := n
	busy, err = timeCycles(func(k int) error {
		now := time.Now()
		for range 5 {
			if _, _, err := store.Enroll(ctx, benchDevice(p9Prefix, next, now)); err != nil {
				return err
			}
			next++
		}
		for j := range 20 {
			id := deviceID(p9Prefix, 2*(1000+k*20+j))
			r := devicestore.Record{RolloutUID: ro.UID, DeviceID: id, State: rollout.StateOffered,
				Release: benchNS + "/fw-2", Version: "2.0.0", Blob: fx.BlobDigest, PreviousVersion: runningVer, OfferedAt: now, UpdatedAt: now}
			if j%2 == 1 { // a report on an existing offer
				r.DeviceID, r.State = deviceID(p9Prefix, 2*j), rollout.StateDownloading
			}
			if err := store.PutRecord(ctx, r, nil); err != nil {
				return err
			}
		}
		seen := map[string]time.Time{}
		for j := range 100 {
			seen[deviceID(p9Prefix, (k*100+j)%n)] = now
		}
		return store.Touch(ctx, seen)
	})
	if err != nil {
		return 0, 0, err
	}
	res.raw("P9 fleet %d: seed %s, first cycle (full fleet sync, offline flags) %s, idle cycle %s, busy cycle %s (median of %d)",
		n, seedTime.Round(time.Millisecond), first.Round(time.Millisecond), idle.Round(time.Microsecond), busy.Round(time.Microsecond), p9Cycles)
	return idle, busy, nil
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
	si, sb, err := p9Fleet(ctx, dir, fx, c.P9Small, res)
	if err != nil {
		return err
	}
	li, lb, err := p9Fleet(ctx, dir, fx, c.P9Large, res)
	if err != nil {
		return err
	}
	ri, rb := float64(li)/float64(si), float64(lb)/float64(sb)
	ratio := max(ri, rb)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	res.add(Row{ID: "P9", Measure: fmt.Sprintf("reporter cycle store cost, one rollout, fleet of %d vs %d devices (SQLite): idle / a few changes", c.P9Large, c.P9Small),
		Figure:   fmt.Sprintf("%s / %s (%d)", ms(li), ms(lb), c.P9Large),
		Baseline: fmt.Sprintf("%s / %s (%d)", ms(si), ms(sb), c.P9Small),
		Ratio:    fmt.Sprintf("%.2f / %.2f", ri, rb), Target: "≤ 1.5×", Result: passIf(ratio <= 1.5),
		Command: fmt.Sprintf("go run ./hack/bench --only=p9 --p9-small=%d --p9-large=%d", c.P9Small, c.P9Large),
		Notes: fmt.Sprintf("reporter.Cycle with no API client, median of %d cycles after %d warm-up ones; \"a few changes\": 5 enrollments, 20 offers or reports, 100 touches before each cycle (untimed); "+
			"the first cycle (whole-fleet sync) is in the per-run figures", p9Cycles, p9Warm)})
	return nil
}
