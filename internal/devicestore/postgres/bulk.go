package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

// bulkTable is BulkEnroll's staging table: temporary, dropped at commit
// (or rollback, so a retried transaction creates it afresh).
const bulkTable = "otaflow_bulk_devices"

const (
	qBulkTable = `CREATE TEMP TABLE ` + bulkTable + ` (
	ord            integer NOT NULL,
	id             text NOT NULL,
	type           text NOT NULL,
	labels         text NOT NULL,
	kem            text NOT NULL,
	public_key     bytea NOT NULL,
	token_hash     bytea NOT NULL,
	version        text NOT NULL,
	security_floor bigint NOT NULL,
	enrolled_at    bigint NOT NULL,
	last_seen      bigint NOT NULL,
	namespace      text NOT NULL,
	enrollment     text NOT NULL,
	inserted       boolean NOT NULL DEFAULT false
) ON COMMIT DROP`
	// Bulk loads are sized by the caller, not by a request: like
	// migrations, they run without the request statement timeout (the
	// caller's context bounds them).
	qBulkNoTimeout = `SET LOCAL statement_timeout = 0`
	// New devices only, Seq drawn in the caller's order (the subquery's
	// ORDER BY keeps it from being flattened, so nextval runs on sorted
	// rows); the staging rows inserted are marked for the offline flags.
	qBulkInsert = `WITH ins AS (
		INSERT INTO devices (id, type, labels, kem, public_key, token_hash, version, security_floor, enrolled_at, last_seen, seq, namespace, enrollment)
		SELECT x.id, x.type, x.labels::jsonb, x.kem, x.public_key, x.token_hash, x.version, x.security_floor, x.enrolled_at, x.last_seen, nextval('device_seq'),
		x.namespace, x.enrollment
		FROM (SELECT b.* FROM ` + bulkTable + ` b WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = b.id) ORDER BY b.ord) x
		ON CONFLICT (id) DO NOTHING
		RETURNING id
	)
	UPDATE ` + bulkTable + ` b SET inserted = true FROM ins WHERE b.id = ins.id`
	// The devices inserted count towards their enrollments' quotas: one
	// counter update per (namespace, enrollment) in the batch, in key
	// order.
	qBulkCount = `INSERT INTO enrollment_counts AS c (namespace, enrollment, devices)
	SELECT namespace, enrollment, count(*) FROM ` + bulkTable + ` WHERE inserted
	GROUP BY namespace, enrollment ORDER BY namespace, enrollment
	ON CONFLICT (namespace, enrollment) DO UPDATE SET devices = c.devices + excluded.devices`
	qBulkHasCursors = `SELECT EXISTS (SELECT 1 FROM offline_cursors)`
	// Enroll's qLockSeen and qReflagDevice for every device inserted.
	qBulkLockSeen = `SELECT s.at FROM device_seen s JOIN ` + bulkTable + ` b ON b.id = s.id
	WHERE b.inserted ORDER BY s.id FOR SHARE OF s`
	qBulkReflag = `UPDATE fleet f SET offline = NOT f.has_record AND coalesce((` + seenOfF + `) < c.before, false)
	FROM offline_cursors c, ` + bulkTable + ` b
	WHERE b.inserted AND f.rollout_uid = c.rollout_uid AND f.device_id = b.id
	AND f.offline <> (NOT f.has_record AND coalesce((` + seenOfF + `) < c.before, false))`
)

var bulkCols = []string{"ord", "id", "type", "labels", "kem", "public_key", "token_hash", "version", "security_floor", "enrolled_at", "last_seen", "namespace", "enrollment"}

// BulkEnroll inserts many new devices in one transaction, for seeding a
// store or importing a fleet, as the SQLite store's BulkEnroll does;
// callers pass batches of a few thousand to a hundred thousand. The
// devices are copied (COPY) into a temporary table and inserted from it
// by one statement. Devices whose ID is already enrolled, or repeated in
// devs, are skipped (never changed); the others draw Seq in devs' order
// under the enrollment lock, as one by one enrollments would, and get
// their offline flags in rollouts whose fleet already lists them. A token
// hash another device holds fails the whole batch. Inserted devices count
// towards their (Namespace, Enrollment)'s quota but are never refused by
// it: an import is not an enrollment. It returns how many devices it
// inserted.
func (s *Store) BulkEnroll(ctx context.Context, devs []devicestore.Device) (int, error) {
	if len(devs) == 0 {
		return 0, nil
	}
	rows := make([][]any, 0, len(devs))
	seen := make(map[string]struct{}, len(devs))
	for i := range devs {
		d := &devs[i]
		if err := devindex.Check(*d); err != nil {
			return 0, fmt.Errorf("postgres: bulk enroll: %w", err)
		}
		if _, dup := seen[d.ID]; dup {
			continue
		}
		seen[d.ID] = struct{}{}
		labels, err := encLabels(d.Labels)
		if err != nil {
			return 0, err
		}
		rows = append(rows, []any{int32(len(rows)), d.ID, d.Type, labels, d.KEM, d.PublicKey, d.TokenHash,
			d.Version, d.SecurityFloor, nanos(d.EnrolledAt), nanos(d.LastSeen), d.Namespace, d.Enrollment})
	}
	var n int
	err := s.tx(ctx, fmt.Sprintf("bulk enroll %d devices", len(rows)), writeTx, func(tx pgx.Tx) error {
		n = 0
		var b batch
		b.queue("bulk enroll: statement timeout", qBulkNoTimeout)
		b.queue("bulk enroll: lock enrollments", qLock, enrollLock)
		b.queue("bulk enroll: lock offline flags", qLockOfflineShared, offlineLock)
		b.queue("bulk enroll: staging table", qBulkTable)
		if err := b.exec(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{bulkTable}, bulkCols, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("postgres: bulk enroll: copy: %w", err)
		}
		tag, err := tx.Exec(ctx, qBulkInsert)
		if err != nil {
			return fmt.Errorf("postgres: bulk enroll: insert: %w", err)
		}
		n = int(tag.RowsAffected())
		if n == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, qBulkCount); err != nil {
			return fmt.Errorf("postgres: bulk enroll: count devices per enrollment: %w", err)
		}
		var cursors bool
		if err := tx.QueryRow(ctx, qBulkHasCursors).Scan(&cursors); err != nil {
			return fmt.Errorf("postgres: bulk enroll: offline cursors: %w", err)
		}
		if !cursors {
			return nil
		}
		b = batch{}
		b.queue("bulk enroll: lock last-seen", qBulkLockSeen)
		b.queue("bulk enroll: offline flags", qBulkReflag)
		return b.exec(ctx, tx)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
