package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unique"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

func scanDevice(row pgx.Row) (devicestore.Device, error) { return scanDeviceFor(row, nil, nil) }

// scanDeviceFor reads a device to cache in c (labels shared with other
// cached devices), or not when c is nil; with hasRecords, the query's
// last column says whether the device has any record.
func scanDeviceFor(row pgx.Row, c *deviceCache, hasRecords *bool) (devicestore.Device, error) {
	var d devicestore.Device
	var labels []byte
	var enrolled, seen int64
	dest := []any{&d.ID, &d.Type, &labels, &d.KEM, &d.PublicKey, &d.TokenHash, &d.Version, &d.SecurityFloor, &enrolled, &seen, &d.Seq, &d.Namespace, &d.Enrollment}
	if hasRecords != nil {
		dest = append(dest, hasRecords)
	}
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return d, devicestore.ErrNotFound
		}
		return d, fmt.Errorf("postgres: read device: %w", err)
	}
	var l map[string]string
	var err error
	if c != nil {
		l, err = c.decodeLabels(labels)
		// A fleet has few tenants: cached devices share their names.
		d.Namespace, d.Enrollment = intern(d.Namespace), intern(d.Enrollment)
	} else {
		l, err = decLabels(labels)
	}
	if err != nil {
		return d, err
	}
	d.Labels, d.EnrolledAt, d.LastSeen = l, fromNanos(enrolled), fromNanos(seen)
	return d, nil
}

func encLabels(l map[string]string) (string, error) {
	if l == nil {
		l = map[string]string{}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("postgres: encode labels: %w", err)
	}
	return string(b), nil
}

func decLabels(b []byte) (map[string]string, error) {
	var l map[string]string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("postgres: decode labels: %w", err)
	}
	if l == nil {
		l = map[string]string{}
	}
	return l, nil
}

// Enroll implements devicestore.Store.
func (s *Store) Enroll(ctx context.Context, d devicestore.Device) (devicestore.Device, bool, error) {
	return s.EnrollWithin(ctx, d, 0)
}

// EnrollWithin implements devicestore.Store. Enrollments serialize on one
// advisory lock so that Seq order is commit order (see the package
// comment); a new device is counted against its enrollment's quota by the
// statement that inserts it (qInsertDevice), in the same transaction.
func (s *Store) EnrollWithin(ctx context.Context, d devicestore.Device, maxDevices int64) (devicestore.Device, bool, error) {
	// The same limits as the SQLite store, so a device one store accepts
	// the other does too.
	if err := devindex.Check(d); err != nil {
		return d, false, fmt.Errorf("postgres: enroll: %w", err)
	}
	labels, err := encLabels(d.Labels)
	if err != nil {
		return d, false, err
	}
	var known bool
	var out devicestore.Device
	err = s.tx(ctx, "enroll", writeTx, func(tx pgx.Tx) error {
		var kem, ns string
		var pub []byte
		b := &pgx.Batch{}
		b.Queue(qLock, enrollLock)
		b.Queue(qLockOfflineShared, offlineLock)
		b.Queue(qEnrollKey, d.ID)
		br := tx.SendBatch(ctx, b)
		_, err := br.Exec()
		if err == nil {
			_, err = br.Exec()
		}
		if err == nil {
			err = br.QueryRow().Scan(&kem, &pub, &ns)
		}
		_ = br.Close()
		known = err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: enroll %s: %w", d.ID, err)
		}
		if known && (kem != d.KEM || !bytes.Equal(pub, d.PublicKey)) {
			return devicestore.ErrKeyMismatch
		}
		if known && ns != d.Namespace {
			return fmt.Errorf("postgres: enroll %s in namespace %q: %w", d.ID, d.Namespace, devicestore.ErrTenantMismatch)
		}
		b = &pgx.Batch{}
		if known {
			b.Queue(qReenroll, d.ID, d.Type, labels, d.TokenHash, d.Version, d.SecurityFloor, nanos(d.LastSeen))
		} else {
			b.Queue(qInsertDevice, d.ID, d.Type, labels, d.KEM, d.PublicKey, d.TokenHash, d.Version, d.SecurityFloor, nanos(d.EnrolledAt), nanos(d.LastSeen),
				d.Namespace, d.Enrollment, maxDevices)
			// A touch racing the deletion of a device with this ID may
			// have left its last-seen time: it is not the new device's.
			b.Queue(qDelSeen, d.ID)
		}
		// The device's last-seen time may have moved either way: its
		// offline flags are re-evaluated with its last-seen row locked, so
		// a concurrent touch lands before (and is read) or after (and
		// clears what it must).
		b.Queue(qLockSeen, d.ID)
		b.Queue(qReflagDevice, d.ID)
		// Read back in the transaction, so the caller sees its own write.
		b.Queue(qDeviceByID, d.ID)
		br = tx.SendBatch(ctx, b)
		defer br.Close()
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("postgres: enroll %s: %w", d.ID, err)
		}
		if !known && tag.RowsAffected() == 0 {
			// The rest of the batch found no device: the rollback
			// only releases the locks.
			return fmt.Errorf("postgres: enroll %s through %s/%s (at most %d devices): %w", d.ID, d.Namespace, d.Enrollment, maxDevices, devicestore.ErrQuotaExceeded)
		}
		if !known {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("postgres: enroll %s: stale last-seen: %w", d.ID, err)
			}
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: enroll %s: lock last-seen: %w", d.ID, err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: enroll %s: offline flags: %w", d.ID, err)
		}
		out, err = scanDevice(br.QueryRow())
		return err
	})
	s.invalidate(d.ID) // whether or not it committed
	if err != nil {
		return d, false, err
	}
	return out, !known, nil
}

// DeviceByToken implements devicestore.Store, from the device cache when
// it holds the token (see the package comment).
func (s *Store) DeviceByToken(ctx context.Context, tokenHash []byte) (devicestore.Device, error) {
	c := s.cache
	if c == nil {
		d, err := scanDevice(s.pool.QueryRow(ctx, qDeviceByToken, tokenHash))
		return d, unavailable(err)
	}
	if d, ok := c.get(tokenHash); ok {
		return d, nil
	}
	gen, live := c.begin()
	if !live {
		d, err := scanDevice(s.pool.QueryRow(ctx, qDeviceByToken, tokenHash))
		return d, unavailable(err)
	}
	var hasRecords bool
	d, err := scanDeviceFor(s.pool.QueryRow(ctx, qDeviceByTokenToCache, tokenHash), c, &hasRecords)
	if err != nil {
		return d, unavailable(err)
	}
	c.put(gen, d, !hasRecords)
	return d, nil
}

// invalidate drops a device this store wrote from its cache at once,
// rather than when its own notification comes back.
func (s *Store) invalidate(id string) {
	if s.cache != nil {
		s.cache.invalidate(id)
	}
}

// Device implements devicestore.Store.
func (s *Store) Device(ctx context.Context, id string) (devicestore.Device, error) {
	d, err := scanDevice(s.pool.QueryRow(ctx, qDeviceByID, id))
	return d, unavailable(err)
}

// SetRunning implements devicestore.Store.
func (s *Store) SetRunning(ctx context.Context, id, version string, floor int64, at time.Time) error {
	defer s.invalidate(id) // whether or not it committed
	return s.tx(ctx, "set running version of "+id, writeTx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(qLockOfflineShared, offlineLock)
		b.Queue(qSetRunning, id, version, floor, nanos(at))
		b.Queue(qClearSeen, []string{id}, []int64{nanos(at)})
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: set running version of %s: lock offline flags: %w", id, err)
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("postgres: set running version of %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return devicestore.ErrNotFound
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: set running version of %s: offline flags: %w", id, err)
		}
		return nil
	})
}

// Touch implements devicestore.Store: one statement for the whole batch;
// last-seen times only move forward.
func (s *Store) Touch(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ats := make([]int64, len(ids))
	for i, id := range ids {
		ats[i] = nanos(seen[id])
	}
	// Devices seen again are no longer offline: one probe of the small
	// fleet_offline index per device, almost always empty.
	err := s.tx(ctx, fmt.Sprintf("touch %d devices", len(ids)), writeTx, func(tx pgx.Tx) error {
		var b batch
		b.queue("lock offline flags", qLockOfflineShared, offlineLock)
		b.queue(fmt.Sprintf("touch %d devices", len(ids)), qTouch, ids, ats)
		b.queue("clear offline flags", qClearSeen, ids, ats)
		return b.exec(ctx, tx)
	})
	if err == nil && s.cache != nil {
		s.cache.touch(seen)
	}
	return err
}

// DevicesSince implements devicestore.Store.
func (s *Store) DevicesSince(ctx context.Context, after int64, n int) ([]devicestore.DeviceRef, error) {
	rows, err := s.pool.Query(ctx, qDevicesSince, after, limit(n))
	if err != nil {
		return nil, unavailable(fmt.Errorf("postgres: devices since %d: %w", after, err))
	}
	defer rows.Close()
	var out []devicestore.DeviceRef
	for rows.Next() {
		var d devicestore.DeviceRef
		var labels []byte
		if err := rows.Scan(&d.ID, &d.Type, &labels, &d.Seq, &d.Namespace); err != nil {
			return nil, fmt.Errorf("postgres: devices since %d: %w", after, err)
		}
		if d.Labels, err = decLabels(labels); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(fmt.Errorf("postgres: devices since %d: %w", after, err))
	}
	return out, nil
}

// EnrolledThrough implements devicestore.Store: one primary-key read.
func (s *Store) EnrolledThrough(ctx context.Context, namespace, enrollment string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, qEnrolledThrough, namespace, enrollment).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(fmt.Errorf("postgres: devices enrolled through %s/%s: %w", namespace, enrollment, err))
	}
	return n, nil
}

// intern returns the canonical copy of s, so equal strings held by many
// cached devices share their bytes.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}
