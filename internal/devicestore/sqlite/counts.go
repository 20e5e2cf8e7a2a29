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

// Counts implements devicestore.Store from the counters the triggers of
// migration 5 maintain. The offline counters follow the rollout's offline
// cursor, which Counts first moves to offlineBefore: only members whose
// device's last-seen time lies between the old and the new cursor change
// flag, so a cycle costs what changed since the previous one, not the
// fleet. The first Counts of a rollout flags its whole fleet once.
//
// It runs on the writer, in one transaction, so the counters read are
// those of the cursor just set.
func (s *Store) Counts(ctx context.Context, rolloutUID string, offlineBefore time.Time) (devicestore.Counts, error) {
	var c devicestore.Counts
	err := s.tx(ctx, "counts of "+rolloutUID, func(tx *sql.Tx) error {
		if err := s.moveOfflineCursor(ctx, tx, rolloutUID, nanos(offlineBefore)); err != nil {
			return err
		}
		c = devicestore.Counts{Waves: map[int]*devicestore.WaveCounts{}}
		rows, err := tx.StmtContext(ctx, s.ws.counters).QueryContext(ctx, rolloutUID)
		return eachRow(rows, err, "counters of "+rolloutUID, func(row scanner) error {
			var kind, key string
			var wave int
			var n int64
			if err := row.Scan(&kind, &wave, &key, &n); err != nil {
				return err
			}
			return addCounter(&c, kind, wave, key, n)
		})
	})
	if err != nil {
		return devicestore.Counts{}, err
	}
	c.Normalize()
	return c, nil
}

// addCounter adds one counters row to c.
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

// moveOfflineCursor sets the rollout's offline cursor to before, flagging
// or clearing the members whose device's last-seen time lies between the
// old cursor and the new one (an index range on each last-seen column).
func (s *Store) moveOfflineCursor(ctx context.Context, tx *sql.Tx, rolloutUID string, before int64) error {
	var cur int64
	err := tx.StmtContext(ctx, s.ws.offlineCursor).QueryRowContext(ctx, rolloutUID).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.StmtContext(ctx, s.ws.flagAll).ExecContext(ctx, rolloutUID, before); err != nil {
			return fmt.Errorf("sqlite: flag offline members of %s: %w", rolloutUID, err)
		}
	case err != nil:
		return fmt.Errorf("sqlite: offline cursor of %s: %w", rolloutUID, err)
	case cur == before:
		return nil
	default:
		// Moving forward, members last seen in [cur, before) went offline;
		// moving back, those in [before, cur) are no longer.
		lo, hi, flag := cur, before, 1
		if before < cur {
			lo, hi, flag = before, cur, 0
		}
		if _, err := tx.StmtContext(ctx, s.ws.flagWindow).ExecContext(ctx, rolloutUID, lo, hi, flag); err != nil {
			return fmt.Errorf("sqlite: move offline cursor of %s: %w", rolloutUID, err)
		}
	}
	if _, err := tx.StmtContext(ctx, s.ws.putCursor).ExecContext(ctx, rolloutUID, before); err != nil {
		return fmt.Errorf("sqlite: set offline cursor of %s: %w", rolloutUID, err)
	}
	return nil
}

// RolloutState implements devicestore.Store.
func (s *Store) RolloutState(ctx context.Context, rolloutUID string) (devicestore.RolloutState, error) {
	var st devicestore.RolloutState
	var cutoffs string
	var at int64
	err := s.rs.rolloutState.QueryRowContext(ctx, rolloutUID).Scan(&st.SelectorKey, &st.FleetSeq, &cutoffs, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return st, devicestore.ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("sqlite: rollout state of %s: %w", rolloutUID, err)
	}
	if st.Cutoffs, err = devicestore.DecodeCutoffs(cutoffs); err != nil {
		return st, fmt.Errorf("sqlite: rollout state of %s: %w", rolloutUID, err)
	}
	st.UpdatedAt = fromNanos(at)
	return st, nil
}

// PutRolloutState implements devicestore.Store.
func (s *Store) PutRolloutState(ctx context.Context, rolloutUID string, st devicestore.RolloutState) error {
	cutoffs, err := devicestore.EncodeCutoffs(st.Cutoffs)
	if err != nil {
		return fmt.Errorf("sqlite: rollout state of %s: %w", rolloutUID, err)
	}
	return s.write(ctx, "put rollout state", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, s.ws.putState).ExecContext(ctx, rolloutUID, st.SelectorKey, st.FleetSeq, cutoffs, nanos(st.UpdatedAt)); err != nil {
			return fmt.Errorf("sqlite: put rollout state of %s: %w", rolloutUID, err)
		}
		return nil
	})
}
