package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

type scanner interface{ Scan(...any) error }

func scanDevice(row scanner) (devicestore.Device, error) {
	var d devicestore.Device
	var labels string
	var enrolled, seen int64
	if err := row.Scan(&d.ID, &d.Type, &labels, &d.KEM, &d.PublicKey, &d.TokenHash, &d.Version, &d.SecurityFloor, &enrolled, &seen, &d.Seq, &d.Namespace, &d.Enrollment); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, devicestore.ErrNotFound
		}
		return d, fmt.Errorf("sqlite: read device: %w", err)
	}
	l, err := decLabels(labels)
	if err != nil {
		return d, err
	}
	d.Labels, d.EnrolledAt, d.LastSeen = l, fromNanos(enrolled), fromNanos(seen)
	return d, nil
}

// Enroll implements devicestore.Store.
func (s *Store) Enroll(ctx context.Context, d devicestore.Device) (devicestore.Device, bool, error) {
	return s.EnrollWithin(ctx, d, 0)
}

// EnrollWithin implements devicestore.Store. A new device is counted in
// enrollment_counts by the statement that checks the quota, in the
// enrollment's transaction; writes are serialized on the one writer
// connection, so the count is exact.
func (s *Store) EnrollWithin(ctx context.Context, d devicestore.Device, maxDevices int64) (devicestore.Device, bool, error) {
	if err := devindex.Check(d); err != nil {
		return d, false, fmt.Errorf("sqlite: enroll: %w", err)
	}
	labels, err := encLabels(d.Labels)
	if err != nil {
		return d, false, err
	}
	var known bool
	var out devicestore.Device
	var indexErr error
	index := func() {
		if s.idx != nil {
			indexErr = s.idx.Put(out)
		}
	}
	err = s.writeThen(ctx, "enroll", func(ctx context.Context, tx *sql.Tx) error {
		var kem, ns string
		var pub []byte
		err := tx.StmtContext(ctx, s.ws.enrollKey).QueryRowContext(ctx, d.ID).Scan(&kem, &pub, &ns)
		known = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: enroll %s: %w", d.ID, err)
		}
		if known && (kem != d.KEM || !bytes.Equal(pub, d.PublicKey)) {
			return devicestore.ErrKeyMismatch
		}
		if known && ns != d.Namespace {
			return fmt.Errorf("sqlite: enroll %s in namespace %q: %w", d.ID, d.Namespace, devicestore.ErrTenantMismatch)
		}
		if !known {
			var n int64
			err := tx.StmtContext(ctx, s.ws.countEnrolled).QueryRowContext(ctx, d.Namespace, d.Enrollment, maxDevices).Scan(&n)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: enroll %s through %s/%s (at most %d devices): %w", d.ID, d.Namespace, d.Enrollment, maxDevices, devicestore.ErrQuotaExceeded)
			}
			if err != nil {
				return fmt.Errorf("sqlite: enroll %s: count enrollment: %w", d.ID, err)
			}
		}
		var seq int64
		if err := tx.StmtContext(ctx, s.ws.maxSeq).QueryRowContext(ctx).Scan(&seq); err != nil {
			return fmt.Errorf("sqlite: enroll %s: next seq: %w", d.ID, err)
		}
		d.Seq = seq + 1
		if known {
			_, err = tx.StmtContext(ctx, s.ws.reenroll).ExecContext(ctx, d.Type, labels, d.TokenHash, d.Version, d.SecurityFloor, nanos(d.LastSeen), d.Seq, d.ID)
		} else {
			// A touch racing the deletion of a device with this ID may
			// have left its last-seen time: it is not the new device's.
			if _, err := tx.StmtContext(ctx, s.ws.delSeen).ExecContext(ctx, d.ID); err != nil {
				return fmt.Errorf("sqlite: enroll %s: %w", d.ID, err)
			}
			_, err = tx.StmtContext(ctx, s.ws.insertDevice).ExecContext(ctx, d.ID, d.Type, labels, d.KEM, d.PublicKey, d.TokenHash, d.Version, d.SecurityFloor, nanos(d.EnrolledAt), nanos(d.LastSeen), d.Seq, d.Namespace, d.Enrollment)
		}
		if err != nil {
			return fmt.Errorf("sqlite: enroll %s: %w", d.ID, err)
		}
		// The device's last-seen time may have moved either way.
		if _, err := tx.StmtContext(ctx, s.ws.reflagDevice).ExecContext(ctx, d.ID); err != nil {
			return fmt.Errorf("sqlite: enroll %s: offline flags: %w", d.ID, err)
		}
		// Read back inside the transaction, so the caller sees its own write.
		out, err = scanDevice(tx.StmtContext(ctx, s.ws.deviceByID).QueryRowContext(ctx, d.ID))
		return err
	}, index)
	if err != nil {
		return d, false, err
	}
	if indexErr != nil {
		// Committed but not indexed: refuse to go on answering from a
		// stale index.
		return d, false, fmt.Errorf("sqlite: enroll %s: %w", d.ID, indexErr)
	}
	return out, !known, nil
}

func (s *Store) fromIndex(d devicestore.Device, ok bool, err error) (devicestore.Device, error) {
	if err != nil {
		return d, fmt.Errorf("sqlite: %w", err)
	}
	if !ok {
		return d, devicestore.ErrNotFound
	}
	return d, nil
}

// DeviceByToken implements devicestore.Store.
func (s *Store) DeviceByToken(ctx context.Context, tokenHash []byte) (devicestore.Device, error) {
	if s.idx != nil {
		return s.fromIndex(s.idx.ByToken(tokenHash))
	}
	return scanDevice(s.rs.deviceByToken.QueryRowContext(pointCtx(ctx), tokenHash))
}

// Device implements devicestore.Store.
func (s *Store) Device(ctx context.Context, id string) (devicestore.Device, error) {
	if s.idx != nil {
		return s.fromIndex(s.idx.ByID(id))
	}
	return scanDevice(s.rs.deviceByID.QueryRowContext(pointCtx(ctx), id))
}

// SetRunning implements devicestore.Store.
func (s *Store) SetRunning(ctx context.Context, id, version string, floor int64, at time.Time) error {
	var index func()
	if s.idx != nil {
		index = func() { s.idx.SetRunning(id, version, floor, at) }
	}
	return s.writeThen(ctx, "set running", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.ws.setRunning).ExecContext(ctx, version, floor, nanos(at), id)
		if err != nil {
			return fmt.Errorf("sqlite: set running version of %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return devicestore.ErrNotFound
		}
		if _, err := tx.StmtContext(ctx, s.ws.clearSeen).ExecContext(ctx, id, nanos(at)); err != nil {
			return fmt.Errorf("sqlite: set running version of %s: offline flags: %w", id, err)
		}
		return nil
	}, index)
}

// Touch implements devicestore.Store: one transaction for the whole batch.
func (s *Store) Touch(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	err := s.tx(ctx, "touch", func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, s.ws.touch)
		if s.idx != nil {
			// A device the index knows exists, so its row needs no
			// existence check. (One deleted between its deletion's commit
			// and its removal from the index leaves a last-seen row, which
			// nothing reads: reads join devices, and enrolling the ID
			// again drops it.)
			st = tx.StmtContext(ctx, s.ws.touchKnown)
		}
		// A device seen again is no longer offline. Flags are only set
		// while a device's last-seen is before its rollout's cursor, so a
		// device the index last saw at or after every cursor has none and
		// needs no probe: in a fleet that polls, almost every device.
		var latest sql.NullInt64
		if err := tx.StmtContext(ctx, s.ws.latestCursor).QueryRowContext(ctx).Scan(&latest); err != nil {
			return fmt.Errorf("sqlite: touch: offline cursors: %w", err)
		}
		clear := tx.StmtContext(ctx, s.ws.clearSeen)
		for id, at := range seen {
			probe := latest.Valid
			if s.idx != nil {
				prev, ok := s.idx.SeenAt(id)
				if !ok {
					continue
				}
				probe = probe && prev < latest.Int64
			}
			if _, err := st.ExecContext(ctx, id, nanos(at)); err != nil {
				return fmt.Errorf("sqlite: touch %s: %w", id, err)
			}
			if !probe {
				continue
			}
			if _, err := clear.ExecContext(ctx, id, nanos(at)); err != nil {
				return fmt.Errorf("sqlite: touch %s: offline flags: %w", id, err)
			}
		}
		return nil
	})
	if err == nil && s.idx != nil {
		s.idx.Touch(seen) // last-seen only moves forward, so order does not matter
	}
	return err
}

// DevicesSince implements devicestore.Store.
func (s *Store) DevicesSince(ctx context.Context, after int64, limit int) ([]devicestore.DeviceRef, error) {
	rows, err := s.rs.devicesSince.QueryContext(ctx, after, limit)
	var out []devicestore.DeviceRef
	err = eachRow(rows, err, fmt.Sprintf("devices since %d", after), func(row scanner) error {
		var d devicestore.DeviceRef
		var labels string
		if err := row.Scan(&d.ID, &d.Type, &labels, &d.Seq, &d.Namespace); err != nil {
			return err
		}
		var err error
		d.Labels, err = decLabels(labels)
		out = append(out, d)
		return err
	})
	return out, err
}

// EnrolledThrough implements devicestore.Store: one primary-key read.
func (s *Store) EnrolledThrough(ctx context.Context, namespace, enrollment string) (int64, error) {
	var n int64
	err := s.rs.enrolledThrough.QueryRowContext(ctx, namespace, enrollment).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: devices enrolled through %s/%s: %w", namespace, enrollment, err)
	}
	return n, nil
}
