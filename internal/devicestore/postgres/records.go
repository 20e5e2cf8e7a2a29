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

// keepFailures bounds the failure log per rollout; status shows 20.
const keepFailures = 100

func scanRecord(row pgx.Row) (devicestore.Record, error) {
	var r devicestore.Record
	var state string
	var offered, updated int64
	err := row.Scan(&r.RolloutUID, &r.DeviceID, &r.Wave, &state, &r.Release, &r.Version, &r.Blob, &r.PreviousVersion, &offered, &updated, &r.Reason, &r.RollbackRelease, &r.RollbackBlob, &r.OfferBoot)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, devicestore.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("postgres: read record: %w", err)
	}
	r.State, r.OfferedAt, r.UpdatedAt = rollout.State(state), fromNanos(offered), fromNanos(updated)
	return r, nil
}

func readRecords(rows pgx.Rows, err error, deviceID string) ([]devicestore.Record, error) {
	if err != nil {
		return nil, fmt.Errorf("postgres: records of %s: %w", deviceID, err)
	}
	defer rows.Close()
	var out []devicestore.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: records of %s: %w", deviceID, err)
	}
	return out, nil
}

// Record implements devicestore.Store.
func (s *Store) Record(ctx context.Context, rolloutUID, deviceID string) (devicestore.Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, qRecord, rolloutUID, deviceID))
	return r, unavailable(err)
}

// Records implements devicestore.Store.
func (s *Store) Records(ctx context.Context, deviceID string) ([]devicestore.Record, error) {
	// Most check-ins are of devices no rollout has touched yet; the cache
	// knows them (kept by notifications, as the device itself).
	if s.cache != nil && s.cache.hasNoRecords(deviceID) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, qRecordsByDev, deviceID)
	recs, err := readRecords(rows, err, deviceID)
	return recs, unavailable(err)
}

// queuePutRecord adds the writes of a record: the record, the device
// pinned to its wave in the rollout's fleet (an offered device stays in
// its wave whatever later fleet changes do to the cutoffs), its conflict
// cleared and the failure, if any, logged.
func queuePutRecord(b *batch, r devicestore.Record, f *devicestore.Failure) {
	key := r.RolloutUID + "/" + r.DeviceID
	b.queue("write record "+key, qUpsertRecord, r.RolloutUID, r.DeviceID, r.Wave, string(r.State), r.Release, r.Version, r.Blob, r.PreviousVersion,
		nanos(r.OfferedAt), nanos(r.UpdatedAt), r.Reason, r.RollbackRelease, r.RollbackBlob, r.OfferBoot)
	b.queue("pin "+key+" in its fleet", qPinFleet, r.RolloutUID, r.DeviceID, encRank(rollout.Rank(r.RolloutUID, r.DeviceID)), r.Wave)
	b.queue("clear conflict "+key, qDelConflict, r.RolloutUID, r.DeviceID)
	if f != nil {
		b.queue("log failure of "+key, qAddFailure, r.RolloutUID, f.DeviceID, f.Wave, f.Reason, nanos(f.At))
	}
}

// PutRecord implements devicestore.Store, under the device's lock so it
// cannot land inside a concurrent UpdateRecords.
func (s *Store) PutRecord(ctx context.Context, r devicestore.Record, f *devicestore.Failure) error {
	// The device may have had no record: forget that here at once rather
	// than when the insert's notification comes back.
	defer s.invalidate(r.DeviceID)
	return s.tx(ctx, "put record", writeTx, func(tx pgx.Tx) error {
		var b batch
		b.queue("lock device "+r.DeviceID, qLock, deviceLock(r.DeviceID))
		queuePutRecord(&b, r, f)
		return b.exec(ctx, tx)
	})
}

// ApplyReport implements devicestore.Store. update may run more than once
// (on a retried deadlock).
func (s *Store) ApplyReport(ctx context.Context, rep devicestore.Report, update func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error)) (devicestore.Record, error) {
	var out devicestore.Record
	err := s.tx(ctx, "apply report", writeTx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(qLock, deviceLock(rep.DeviceID))
		b.Queue(qAddReport, rep.DeviceID, rep.ReportID, nanos(rep.At))
		b.Queue(qRecordForUpdate, rep.RolloutUID, rep.DeviceID)
		br := tx.SendBatch(ctx, b)
		_, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("postgres: apply report %s: lock device %s: %w", rep.ReportID, rep.DeviceID, err)
		}
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("postgres: apply report %s: store report ID: %w", rep.ReportID, err)
		}
		cur, err := scanRecord(br.QueryRow())
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("postgres: apply report %s: %w", rep.ReportID, cerr)
		}
		if tag.RowsAffected() == 0 {
			return devicestore.ErrDuplicateReport
		}
		if err != nil {
			return err
		}
		next, f, err := update(cur)
		if err != nil {
			return err
		}
		var w batch
		queuePutRecord(&w, next, f)
		if err := w.exec(ctx, tx); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// UpdateRecords implements devicestore.Store: under the device's lock, with
// its records locked, so decide sees every write committed before it and
// none can land between its read and its writes.
func (s *Store) UpdateRecords(ctx context.Context, deviceID string, decide func([]devicestore.Record) ([]devicestore.RecordWrite, error)) error {
	defer s.invalidate(deviceID) // as PutRecord
	return s.tx(ctx, "update records", writeTx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(qLock, deviceLock(deviceID))
		b.Queue(qLockRecords, deviceID)
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("postgres: update records: lock device %s: %w", deviceID, err)
		}
		rows, err := br.Query()
		recs, err := readRecords(rows, err, deviceID)
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("postgres: records of %s: %w", deviceID, cerr)
		}
		if err != nil {
			return err
		}
		writes, err := decide(recs)
		if err != nil {
			return err
		}
		if len(writes) > 0 {
			// DeleteDevice takes the device's lock too: a delete committed
			// before the lock was granted is seen here, none can follow.
			var exists bool
			if err := tx.QueryRow(ctx, qDeviceExists, deviceID).Scan(&exists); err != nil {
				return fmt.Errorf("postgres: update records of %s: %w", deviceID, err)
			}
			if !exists {
				return fmt.Errorf("postgres: update records of %s: %w", deviceID, devicestore.ErrDeviceDeleted)
			}
		}
		var w batch
		for _, x := range writes {
			if x.Record.DeviceID != deviceID {
				return fmt.Errorf("postgres: update records of %s: a write for device %s", deviceID, x.Record.DeviceID)
			}
			queuePutRecord(&w, x.Record, x.Failure)
		}
		return w.exec(ctx, tx)
	})
}

// ExpireOffers implements devicestore.Store. It also trims the rollout's
// failure log, as it runs once per reporting cycle.
func (s *Store) ExpireOffers(ctx context.Context, rolloutUID string, deadline, now time.Time) (int64, error) {
	states := make([]string, len(rollout.InProgressStates))
	for i, st := range rollout.InProgressStates {
		states[i] = string(st)
	}
	var n int64
	err := s.tx(ctx, "expire offers", writeTx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qExpire, rolloutUID, states, nanos(deadline), rollout.ReasonTimedOut, nanos(now)).Scan(&n); err != nil {
			return fmt.Errorf("postgres: expire offers of %s: %w", rolloutUID, err)
		}
		if _, err := tx.Exec(ctx, qTrimFailures, rolloutUID, keepFailures); err != nil {
			return fmt.Errorf("postgres: trim failures of %s: %w", rolloutUID, err)
		}
		return nil
	})
	return n, err
}

// RecentFailures implements devicestore.Store.
func (s *Store) RecentFailures(ctx context.Context, rolloutUID string, n int) ([]devicestore.Failure, error) {
	rows, err := s.pool.Query(ctx, qRecentFailures, rolloutUID, limit(n))
	if err != nil {
		return nil, unavailable(fmt.Errorf("postgres: failures of %s: %w", rolloutUID, err))
	}
	defer rows.Close()
	var out []devicestore.Failure
	for rows.Next() {
		var f devicestore.Failure
		var at int64
		if err := rows.Scan(&f.DeviceID, &f.Wave, &f.Reason, &at); err != nil {
			return nil, fmt.Errorf("postgres: failures of %s: %w", rolloutUID, err)
		}
		f.At = fromNanos(at)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(fmt.Errorf("postgres: failures of %s: %w", rolloutUID, err))
	}
	return out, nil
}

// ForgetRollout implements devicestore.Store.
func (s *Store) ForgetRollout(ctx context.Context, rolloutUID string) error {
	return s.tx(ctx, "forget rollout", writeTx, func(tx pgx.Tx) error {
		var b batch
		// Counters last: the deletes before them run the counter triggers.
		for _, table := range []string{"records", "fleet", "conflicts", "failures", "offline_cursors", "rollout_state", "counters"} {
			b.queue("forget "+rolloutUID+" in "+table, "DELETE FROM "+table+" WHERE rollout_uid = $1", rolloutUID)
		}
		return b.exec(ctx, tx)
	})
}

// WrappedKey implements devicestore.Store.
func (s *Store) WrappedKey(ctx context.Context, deviceID, blob string) ([]byte, error) {
	var w []byte
	err := s.pool.QueryRow(ctx, qWrappedKey, deviceID, blob).Scan(&w)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, devicestore.ErrNotFound
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("postgres: wrapped key: %w", err))
	}
	return w, nil
}

// PutWrappedKey implements devicestore.Store.
func (s *Store) PutWrappedKey(ctx context.Context, deviceID, blob string, wrapped []byte) error {
	_, err := s.exec(ctx, "cache wrapped key", qPutWrapped, deviceID, blob, wrapped)
	return err
}

// PruneReports implements devicestore.Store.
func (s *Store) PruneReports(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.exec(ctx, "prune reports", qPruneReports, nanos(before))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
