package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// SyncFleet implements devicestore.Store.
func (s *Store) SyncFleet(ctx context.Context, rolloutUID string, upsert []devicestore.FleetMember, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	return s.tx(ctx, "sync fleet", func(tx *sql.Tx) error {
		up := tx.StmtContext(ctx, s.ws.upsertFleet)
		for _, m := range upsert {
			if _, err := up.ExecContext(ctx, rolloutUID, m.DeviceID, encRank(m.Rank), m.Wave); err != nil {
				return fmt.Errorf("sqlite: add %s to fleet of %s: %w", m.DeviceID, rolloutUID, err)
			}
		}
		del := tx.StmtContext(ctx, s.ws.deleteFleet)
		for _, id := range remove {
			if _, err := del.ExecContext(ctx, rolloutUID, id); err != nil {
				return fmt.Errorf("sqlite: remove %s from fleet of %s: %w", id, rolloutUID, err)
			}
		}
		return nil
	})
}

// NthRank implements devicestore.Store.
func (s *Store) NthRank(ctx context.Context, rolloutUID string, n int64) (uint64, bool, error) {
	if n < 1 {
		return 0, false, fmt.Errorf("sqlite: nth rank: n=%d < 1", n)
	}
	var v int64
	err := s.rs.nthRank.QueryRowContext(ctx, rolloutUID, n-1).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: nth rank of %s: %w", rolloutUID, err)
	}
	return decRank(v), true, nil
}

// AssignWaves implements devicestore.Store: one indexed range update per
// wave, touching only unpinned rows whose wave changes.
func (s *Store) AssignWaves(ctx context.Context, rolloutUID string, cutoffs []uint64) error {
	return s.tx(ctx, "assign waves", func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, s.ws.assignWave)
		lo := uint64(0)
		for i, hi := range cutoffs {
			if i > 0 {
				if hi == cutoffs[i-1] {
					continue // empty wave
				}
				lo = cutoffs[i-1] + 1
			}
			if _, err := st.ExecContext(ctx, i, rolloutUID, encRank(lo), encRank(hi), i); err != nil {
				return fmt.Errorf("sqlite: assign wave %d of %s: %w", i, rolloutUID, err)
			}
			if hi == rollout.MaxRank {
				break
			}
		}
		return nil
	})
}

// SetConflict implements devicestore.Store.
func (s *Store) SetConflict(ctx context.Context, rolloutUID, deviceID string, conflict bool) error {
	st := s.ws.delConflict
	if conflict {
		st = s.ws.addConflict
	}
	return s.write(ctx, "set conflict", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, rolloutUID, deviceID); err != nil {
			return fmt.Errorf("sqlite: set conflict %s/%s: %w", rolloutUID, deviceID, err)
		}
		return nil
	})
}

// Recount implements devicestore.Store with covering-index GROUP BYs over
// the rollout's fleet and records: what Counts computed before counters.
func (s *Store) Recount(ctx context.Context, rolloutUID string, offlineBefore time.Time) (devicestore.Counts, error) {
	c := devicestore.Counts{Waves: map[int]*devicestore.WaveCounts{}}
	wave := c.Wave
	if err := s.rs.fleetSize.QueryRowContext(ctx, rolloutUID).Scan(&c.FleetSize); err != nil {
		return c, fmt.Errorf("sqlite: fleet size of %s: %w", rolloutUID, err)
	}
	if err := s.rs.conflicts.QueryRowContext(ctx, rolloutUID).Scan(&c.Conflicts); err != nil {
		return c, fmt.Errorf("sqlite: conflicts of %s: %w", rolloutUID, err)
	}
	rows, err := s.rs.targeted.QueryContext(ctx, rolloutUID)
	err = eachRow(rows, err, "targeted of "+rolloutUID, func(row scanner) error {
		var i int
		var n int64
		if err := row.Scan(&i, &n); err != nil {
			return err
		}
		wave(i).Targeted = n
		return nil
	})
	if err != nil {
		return c, err
	}
	rows, err = s.rs.stateCounts.QueryContext(ctx, rolloutUID)
	err = eachRow(rows, err, "states of "+rolloutUID, func(row scanner) error {
		var i int
		var st string
		var n int64
		if err := row.Scan(&i, &st, &n); err != nil {
			return err
		}
		wave(i).States[rollout.State(st)] = n
		return nil
	})
	if err != nil {
		return c, err
	}
	rows, err = s.rs.offline.QueryContext(ctx, rolloutUID, nanos(offlineBefore))
	err = eachRow(rows, err, "offline of "+rolloutUID, func(row scanner) error {
		var i int
		var n int64
		if err := row.Scan(&i, &n); err != nil {
			return err
		}
		wave(i).Offline = n
		return nil
	})
	if err != nil {
		return c, err
	}
	rows, err = s.rs.skipReasons.QueryContext(ctx, rolloutUID)
	err = eachRow(rows, err, "skip reasons of "+rolloutUID, func(row scanner) error {
		var reason string
		var n int64
		if err := row.Scan(&reason, &n); err != nil {
			return err
		}
		if c.Skipped == nil {
			c.Skipped = map[string]int64{}
		}
		c.Skipped[reason] = n
		return nil
	})
	if err != nil {
		return c, err
	}
	c.Normalize()
	return c, nil
}

var _ devicestore.Store = (*Store)(nil)
