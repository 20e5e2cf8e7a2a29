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

// keepFailures bounds the failure log per rollout; status shows 20.
const keepFailures = 100

func scanRecord(row scanner) (devicestore.Record, error) {
	var r devicestore.Record
	var state string
	var offered, updated int64
	err := row.Scan(&r.RolloutUID, &r.DeviceID, &r.Wave, &state, &r.Release, &r.Version, &r.Blob, &r.PreviousVersion, &offered, &updated, &r.Reason, &r.RollbackRelease, &r.RollbackBlob, &r.OfferBoot)
	if errors.Is(err, sql.ErrNoRows) {
		return r, devicestore.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: read record: %w", err)
	}
	r.State, r.OfferedAt, r.UpdatedAt = rollout.State(state), fromNanos(offered), fromNanos(updated)
	return r, nil
}

// Record implements devicestore.Store.
func (s *Store) Record(ctx context.Context, rolloutUID, deviceID string) (devicestore.Record, error) {
	return scanRecord(s.rs.record.QueryRowContext(pointCtx(ctx), rolloutUID, deviceID))
}

// Records implements devicestore.Store.
func (s *Store) Records(ctx context.Context, deviceID string) ([]devicestore.Record, error) {
	if s.idx != nil && !s.idx.MayHaveRecords(deviceID) {
		return nil, nil // most devices of a fleet, most of the time
	}
	rows, err := s.rs.recordsByDev.QueryContext(pointCtx(ctx), deviceID)
	return readRecords(rows, err, deviceID)
}

// readRecords reads the rows of recordsByDev.
func readRecords(rows *sql.Rows, err error, deviceID string) ([]devicestore.Record, error) {
	var out []devicestore.Record
	err = eachRow(rows, err, "records of "+deviceID, func(row scanner) error {
		r, err := scanRecord(row)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func (s *Store) putRecordTx(ctx context.Context, tx *sql.Tx, r devicestore.Record, f *devicestore.Failure) error {
	if s.idx != nil {
		// Marked before the commit: a reader that finds no mark can trust
		// there is no record.
		s.idx.MarkRecords(r.DeviceID)
	}
	_, err := tx.StmtContext(ctx, s.ws.upsertRecord).ExecContext(ctx, r.RolloutUID, r.DeviceID, r.Wave, string(r.State), r.Release, r.Version, r.Blob, r.PreviousVersion, nanos(r.OfferedAt), nanos(r.UpdatedAt), r.Reason, r.RollbackRelease, r.RollbackBlob, r.OfferBoot)
	if err != nil {
		return fmt.Errorf("sqlite: write record %s/%s: %w", r.RolloutUID, r.DeviceID, err)
	}
	// An offered device stays in its wave, whatever later fleet changes do
	// to the count-wave cutoffs.
	rank := rollout.Rank(r.RolloutUID, r.DeviceID)
	if _, err := tx.StmtContext(ctx, s.ws.pinFleet).ExecContext(ctx, r.RolloutUID, r.DeviceID, encRank(rank), r.Wave); err != nil {
		return fmt.Errorf("sqlite: pin %s in fleet of %s: %w", r.DeviceID, r.RolloutUID, err)
	}
	if _, err := tx.StmtContext(ctx, s.ws.delConflict).ExecContext(ctx, r.RolloutUID, r.DeviceID); err != nil {
		return fmt.Errorf("sqlite: clear conflict: %w", err)
	}
	if f != nil {
		if _, err := tx.StmtContext(ctx, s.ws.addFailure).ExecContext(ctx, r.RolloutUID, f.DeviceID, f.Wave, f.Reason, nanos(f.At)); err != nil {
			return fmt.Errorf("sqlite: log failure: %w", err)
		}
	}
	return nil
}

// PutRecord implements devicestore.Store.
func (s *Store) PutRecord(ctx context.Context, r devicestore.Record, f *devicestore.Failure) error {
	return s.write(ctx, "put record", func(ctx context.Context, tx *sql.Tx) error { return s.putRecordTx(ctx, tx, r, f) })
}

// ApplyReport implements devicestore.Store.
func (s *Store) ApplyReport(ctx context.Context, rep devicestore.Report, update func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error)) (devicestore.Record, error) {
	var out devicestore.Record
	err := s.write(ctx, "apply report", func(ctx context.Context, tx *sql.Tx) error {
		var one int
		err := tx.StmtContext(ctx, s.ws.reportSeen).QueryRowContext(ctx, rep.DeviceID, rep.ReportID).Scan(&one)
		if err == nil {
			return devicestore.ErrDuplicateReport
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: check report %s: %w", rep.ReportID, err)
		}
		cur, err := scanRecord(tx.StmtContext(ctx, s.ws.record).QueryRowContext(ctx, rep.RolloutUID, rep.DeviceID))
		if err != nil {
			return err
		}
		next, f, err := update(cur)
		if err != nil {
			return err
		}
		if err := s.putRecordTx(ctx, tx, next, f); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, s.ws.addReport).ExecContext(ctx, rep.DeviceID, rep.ReportID, nanos(rep.At)); err != nil {
			return fmt.Errorf("sqlite: store report %s: %w", rep.ReportID, err)
		}
		out = next
		return nil
	})
	return out, err
}

// UpdateRecords implements devicestore.Store: the device's records are
// read in the write transaction, so decide sees every write committed
// before it and none can slip in between.
func (s *Store) UpdateRecords(ctx context.Context, deviceID string, decide func([]devicestore.Record) ([]devicestore.RecordWrite, error)) error {
	return s.write(ctx, "update records", func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, s.ws.recordsByDev).QueryContext(ctx, deviceID)
		recs, err := readRecords(rows, err, deviceID)
		if err != nil {
			return err
		}
		writes, err := decide(recs)
		if err != nil {
			return err
		}
		if len(writes) > 0 {
			// Writes are serialized: a delete committed before this
			// transaction is seen here, and none can come between.
			var one int
			err := tx.StmtContext(ctx, s.ws.deviceExists).QueryRowContext(ctx, deviceID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: update records of %s: %w", deviceID, devicestore.ErrDeviceDeleted)
			}
			if err != nil {
				return fmt.Errorf("sqlite: update records of %s: %w", deviceID, err)
			}
		}
		for _, w := range writes {
			if w.Record.DeviceID != deviceID {
				return fmt.Errorf("sqlite: update records of %s: a write for device %s", deviceID, w.Record.DeviceID)
			}
			if err := s.putRecordTx(ctx, tx, w.Record, w.Failure); err != nil {
				return err
			}
		}
		return nil
	})
}

// ExpireOffers implements devicestore.Store. It also trims the rollout's
// failure log, as it runs once per reporting cycle.
func (s *Store) ExpireOffers(ctx context.Context, rolloutUID string, deadline, now time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, "expire offers", func(tx *sql.Tx) error {
		type hit struct {
			id   string
			wave int
		}
		var hits []hit
		for _, st := range rollout.InProgressStates {
			rows, err := tx.StmtContext(ctx, s.ws.expire).QueryContext(ctx, rollout.ReasonTimedOut, nanos(now), rolloutUID, string(st), nanos(deadline))
			err = eachRow(rows, err, "expire offers of "+rolloutUID, func(row scanner) error {
				var h hit
				if err := row.Scan(&h.id, &h.wave); err != nil {
					return err
				}
				hits = append(hits, h)
				return nil
			})
			if err != nil {
				return err
			}
		}
		add := tx.StmtContext(ctx, s.ws.addFailure)
		for _, h := range hits {
			if _, err := add.ExecContext(ctx, rolloutUID, h.id, h.wave, rollout.ReasonTimedOut, nanos(now)); err != nil {
				return fmt.Errorf("sqlite: log timeout: %w", err)
			}
		}
		n = int64(len(hits))
		if _, err := tx.StmtContext(ctx, s.ws.trimFai).ExecContext(ctx, rolloutUID, rolloutUID, keepFailures); err != nil {
			return fmt.Errorf("sqlite: trim failures of %s: %w", rolloutUID, err)
		}
		return nil
	})
	return n, err
}

// RecentFailures implements devicestore.Store.
func (s *Store) RecentFailures(ctx context.Context, rolloutUID string, limit int) ([]devicestore.Failure, error) {
	rows, err := s.rs.recentFailures.QueryContext(ctx, rolloutUID, limit)
	var out []devicestore.Failure
	err = eachRow(rows, err, "failures of "+rolloutUID, func(row scanner) error {
		var f devicestore.Failure
		var at int64
		if err := row.Scan(&f.DeviceID, &f.Wave, &f.Reason, &at); err != nil {
			return err
		}
		f.At = fromNanos(at)
		out = append(out, f)
		return nil
	})
	return out, err
}

// ForgetRollout implements devicestore.Store.
func (s *Store) ForgetRollout(ctx context.Context, rolloutUID string) error {
	return s.tx(ctx, "forget rollout", func(tx *sql.Tx) error {
		// Counters last: the deletes before them run the counter triggers.
		for _, table := range []string{"records", "fleet", "conflicts", "failures", "offline_cursors", "rollout_state", "counters"} {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE rollout_uid = ?", rolloutUID); err != nil {
				return fmt.Errorf("sqlite: forget %s in %s: %w", rolloutUID, table, err)
			}
		}
		return nil
	})
}

// WrappedKey implements devicestore.Store.
func (s *Store) WrappedKey(ctx context.Context, deviceID, blob string) ([]byte, error) {
	var w []byte
	err := s.rs.wrappedKey.QueryRowContext(pointCtx(ctx), deviceID, blob).Scan(&w)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, devicestore.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: wrapped key: %w", err)
	}
	return w, nil
}

// PutWrappedKey implements devicestore.Store.
func (s *Store) PutWrappedKey(ctx context.Context, deviceID, blob string, wrapped []byte) error {
	return s.write(ctx, "cache wrapped key", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, s.ws.putWrapped).ExecContext(ctx, deviceID, blob, wrapped); err != nil {
			return fmt.Errorf("sqlite: cache wrapped key: %w", err)
		}
		return nil
	})
}

// PruneReports implements devicestore.Store.
func (s *Store) PruneReports(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.ws.pruneReports.ExecContext(ctx, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune reports: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
