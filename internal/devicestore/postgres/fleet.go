package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// SyncFleet implements devicestore.Store: one upsert and one delete,
// whatever the batch size. Members listed twice keep their last entry, as
// if upserted one after the other; members also removed end up removed.
func (s *Store) SyncFleet(ctx context.Context, rolloutUID string, upsert []devicestore.FleetMember, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	last := make(map[string]int, len(upsert))
	for i, m := range upsert {
		last[m.DeviceID] = i
	}
	ids := make([]string, 0, len(last))
	for id := range last {
		ids = append(ids, id)
	}
	// One lock order for concurrent syncs.
	slices.Sort(ids)
	ranks := make([]int64, len(ids))
	waves := make([]int32, len(ids))
	for i, id := range ids {
		m := upsert[last[id]]
		ranks[i], waves[i] = encRank(m.Rank), int32(m.Wave)
	}
	remove = slices.Sorted(slices.Values(remove))
	return s.tx(ctx, "sync fleet", writeTx, func(tx pgx.Tx) error {
		var b batch
		// New members' offline flags are set from last-seen times: no
		// touch may commit unseen meanwhile (see offlineLock).
		b.queue("lock offline flags", qLock, offlineLock)
		if len(ids) > 0 {
			b.queue(fmt.Sprintf("add %d devices to fleet of %s", len(ids), rolloutUID), qUpsertFleet, rolloutUID, ids, ranks, waves)
		}
		if len(remove) > 0 {
			b.queue(fmt.Sprintf("remove %d devices from fleet of %s", len(remove), rolloutUID), qDeleteFleet, rolloutUID, remove)
		}
		return b.exec(ctx, tx)
	})
}

// NthRank implements devicestore.Store.
func (s *Store) NthRank(ctx context.Context, rolloutUID string, n int64) (uint64, bool, error) {
	if n < 1 {
		return 0, false, fmt.Errorf("postgres: nth rank: n=%d < 1", n)
	}
	var v int64
	err := s.pool.QueryRow(ctx, qNthRank, rolloutUID, n-1).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, unavailable(fmt.Errorf("postgres: nth rank of %s: %w", rolloutUID, err))
	}
	return decRank(v), true, nil
}

// AssignWaves implements devicestore.Store: one indexed range update per
// wave, touching only unpinned rows whose wave changes.
func (s *Store) AssignWaves(ctx context.Context, rolloutUID string, cutoffs []uint64) error {
	var b batch
	lo := uint64(0)
	for i, hi := range cutoffs {
		if i > 0 {
			if hi == cutoffs[i-1] {
				continue // empty wave
			}
			lo = cutoffs[i-1] + 1
		}
		b.queue(fmt.Sprintf("assign wave %d of %s", i, rolloutUID), qAssignWave, i, rolloutUID, encRank(lo), encRank(hi))
		if hi == rollout.MaxRank {
			break
		}
	}
	return s.tx(ctx, "assign waves", writeTx, func(tx pgx.Tx) error { return b.exec(ctx, tx) })
}

// SetConflict implements devicestore.Store.
func (s *Store) SetConflict(ctx context.Context, rolloutUID, deviceID string, conflict bool) error {
	q := qDelConflict
	if conflict {
		q = qAddConflict
	}
	_, err := s.exec(ctx, "set conflict "+rolloutUID+"/"+deviceID, q, rolloutUID, deviceID)
	return err
}

// Recount implements devicestore.Store by counting the rollout's fleet
// and records (what Counts did before counters): every counter from one
// snapshot, in one round trip.
func (s *Store) Recount(ctx context.Context, rolloutUID string, offlineBefore time.Time) (devicestore.Counts, error) {
	var c devicestore.Counts
	err := s.tx(ctx, "counts of "+rolloutUID, readTx, func(tx pgx.Tx) error {
		c = devicestore.Counts{Waves: map[int]*devicestore.WaveCounts{}}
		wave := c.Wave
		b := &pgx.Batch{}
		b.Queue(qFleetSize, rolloutUID).QueryRow(func(row pgx.Row) error { return row.Scan(&c.FleetSize) })
		b.Queue(qConflicts, rolloutUID).QueryRow(func(row pgx.Row) error { return row.Scan(&c.Conflicts) })
		b.Queue(qTargeted, rolloutUID).Query(func(rows pgx.Rows) error {
			return eachRow(rows, func() error {
				var i int
				var n int64
				err := rows.Scan(&i, &n)
				wave(i).Targeted = n
				return err
			})
		})
		b.Queue(qStateCounts, rolloutUID).Query(func(rows pgx.Rows) error {
			return eachRow(rows, func() error {
				var i int
				var st string
				var n int64
				err := rows.Scan(&i, &st, &n)
				wave(i).States[rollout.State(st)] = n
				return err
			})
		})
		b.Queue(qOffline, rolloutUID, nanos(offlineBefore)).Query(func(rows pgx.Rows) error {
			return eachRow(rows, func() error {
				var i int
				var n int64
				err := rows.Scan(&i, &n)
				wave(i).Offline = n
				return err
			})
		})
		b.Queue(qSkipReasons, rolloutUID).Query(func(rows pgx.Rows) error {
			return eachRow(rows, func() error {
				var reason string
				var n int64
				if err := rows.Scan(&reason, &n); err != nil {
					return err
				}
				if c.Skipped == nil {
					c.Skipped = map[string]int64{}
				}
				c.Skipped[reason] = n
				return nil
			})
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: counts of %s: %w", rolloutUID, err)
		}
		return nil
	})
	if err != nil {
		return devicestore.Counts{}, err
	}
	c.Normalize()
	return c, nil
}

func eachRow(rows pgx.Rows, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	return rows.Err()
}
