package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// DeleteDevice implements devicestore.Store in one transaction (one round
// trip). It takes the device's lock, as every write of its records does,
// and offlineLock shared, which a fleet sync holds exclusive: a sync
// either ran before (its members are deleted here) or runs after and
// finds no device to add. The counter triggers decrement what the
// device's records, fleet memberships (offline flags included) and
// conflicts counted. Every replica's cache drops the device on the
// devices trigger's notification (migration 3); this one's at once.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	defer s.invalidate(id) // whether or not it committed
	return s.tx(ctx, "delete device "+id, writeTx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(qLock, deviceLock(id))
		b.Queue(qLockOfflineShared, offlineLock)
		b.Queue(qDeleteDevice, id)
		rest := []struct{ what, sql string }{
			{"last-seen time", qDelSeen},
			{"records", qDelRecordsOf},
			{"fleet memberships", qDelFleetOf},
			{"conflicts", qDelConflictsOf},
			{"wrapped keys", qDelKeysOf},
			{"report IDs", qDelReportsOf},
		}
		for _, r := range rest {
			b.Queue(r.sql, id)
		}
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		for _, what := range []string{"lock device", "lock offline flags"} {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("postgres: delete device %s: %s: %w", id, what, err)
			}
		}
		var n int64
		if err := br.QueryRow().Scan(&n); err != nil {
			return fmt.Errorf("postgres: delete device %s: %w", id, err)
		}
		if n == 0 {
			// The rollback undoes the rest of the batch (rows of an ID
			// with no device: records written for it, say).
			return fmt.Errorf("postgres: delete device %s: %w", id, devicestore.ErrNotFound)
		}
		for _, r := range rest {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("postgres: delete device %s: %s: %w", id, r.what, err)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("postgres: delete device %s: %w", id, err)
		}
		return nil
	})
}
