package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Counts implements devicestore.Store from the counters the triggers of
// migration 2 maintain (summed over their shards). The offline counters
// follow the rollout's offline cursor, which Counts first moves to
// offlineBefore under the exclusive offline lock: only members whose
// device's last-seen time lies between the old and the new cursor change
// flag, so a cycle costs what changed since the previous one, not the
// fleet. The first Counts of a rollout flags its whole fleet once.
func (s *Store) Counts(ctx context.Context, rolloutUID string, offlineBefore time.Time) (devicestore.Counts, error) {
	var c devicestore.Counts
	before := nanos(offlineBefore)
	err := s.tx(ctx, "counts of "+rolloutUID, writeTx, func(tx pgx.Tx) error {
		var cur int64
		b := &pgx.Batch{}
		b.Queue(qLock, offlineLock)
		b.Queue(qOfflineCursor, rolloutUID)
		br := tx.SendBatch(ctx, b)
		_, err := br.Exec()
		if err == nil {
			err = br.QueryRow().Scan(&cur)
		}
		if cerr := br.Close(); cerr != nil && (err == nil || errors.Is(err, pgx.ErrNoRows)) {
			err = cerr
		}
		var w batch
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			w.queue("flag offline members of "+rolloutUID, qFlagAll, rolloutUID, before)
			w.queue("set offline cursor of "+rolloutUID, qPutCursor, rolloutUID, before)
		case err != nil:
			return fmt.Errorf("postgres: offline cursor of %s: %w", rolloutUID, err)
		case cur != before:
			// Moving forward, members last seen in [cur, before) went
			// offline; moving back, those in [before, cur) are no longer.
			lo, hi, flag := cur, before, true
			if before < cur {
				lo, hi, flag = before, cur, false
			}
			w.queue("move offline cursor of "+rolloutUID, qFlagWindow, rolloutUID, lo, hi, flag)
			w.queue("set offline cursor of "+rolloutUID, qPutCursor, rolloutUID, before)
		}
		if err := w.exec(ctx, tx); err != nil {
			return err
		}
		c = devicestore.Counts{Waves: map[int]*devicestore.WaveCounts{}}
		rows, err := tx.Query(ctx, qCounters, rolloutUID)
		if err != nil {
			return fmt.Errorf("postgres: counters of %s: %w", rolloutUID, err)
		}
		err = eachRow(rows, func() error {
			var kind, key string
			var wave int
			var n int64
			if err := rows.Scan(&kind, &wave, &key, &n); err != nil {
				return err
			}
			return addCounter(&c, kind, wave, key, n)
		})
		if err != nil {
			return fmt.Errorf("postgres: counters of %s: %w", rolloutUID, err)
		}
		return nil
	})
	if err != nil {
		return devicestore.Counts{}, err
	}
	c.Normalize()
	return c, nil
}

// addCounter adds one (summed) counters row to c.
func addCounter(c *devicestore.Counts, kind string, wave int, key string, n int64) error {
	switch kind {
	case "t":
		c.Wave(wave).Targeted += n
		c.FleetSize += n
	case "o":
		c.Wave(wave).Offline += n
	case "s":
		c.Wave(wave).States[rollout.State(key)] += n
	case "k":
		if c.Skipped == nil {
			c.Skipped = map[string]int64{}
		}
		c.Skipped[key] += n
	case "c":
		c.Conflicts += n
	default:
		return fmt.Errorf("unknown counter kind %q", kind)
	}
	return nil
}

// RolloutState implements devicestore.Store.
func (s *Store) RolloutState(ctx context.Context, rolloutUID string) (devicestore.RolloutState, error) {
	var st devicestore.RolloutState
	var cutoffs string
	var at int64
	err := s.pool.QueryRow(ctx, qRolloutState, rolloutUID).Scan(&st.SelectorKey, &st.FleetSeq, &cutoffs, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, devicestore.ErrNotFound
	}
	if err != nil {
		return st, unavailable(fmt.Errorf("postgres: rollout state of %s: %w", rolloutUID, err))
	}
	if st.Cutoffs, err = devicestore.DecodeCutoffs(cutoffs); err != nil {
		return st, fmt.Errorf("postgres: rollout state of %s: %w", rolloutUID, err)
	}
	st.UpdatedAt = fromNanos(at)
	return st, nil
}

// PutRolloutState implements devicestore.Store.
func (s *Store) PutRolloutState(ctx context.Context, rolloutUID string, st devicestore.RolloutState) error {
	cutoffs, err := devicestore.EncodeCutoffs(st.Cutoffs)
	if err != nil {
		return fmt.Errorf("postgres: rollout state of %s: %w", rolloutUID, err)
	}
	_, err = s.exec(ctx, "put rollout state of "+rolloutUID, qPutState, rolloutUID, st.SelectorKey, st.FleetSeq, cutoffs, nanos(st.UpdatedAt))
	return err
}
