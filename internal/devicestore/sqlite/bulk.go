package sqlite

import (
	"context"
	"fmt"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

// bulkCacheKiB is the writer's page cache while bulk loading: the token
// index is filled in random order, so a larger cache saves page reloads.
const bulkCacheKiB = 128 << 10

// BulkEnroll inserts many new devices in one transaction, for seeding a
// store or importing a fleet; callers pass batches of a few thousand to a
// hundred thousand. Devices whose ID is already enrolled are skipped (never
// changed); the others get consecutive sequence numbers after the current
// highest, as one by one enrollments would. Inserted devices count
// towards their (Namespace, Enrollment)'s quota, one counter write per
// distinct pair in the batch, but are never refused by it: an import is
// not an enrollment. It returns how many it inserted.
func (s *Store) BulkEnroll(ctx context.Context, devs []devicestore.Device) (int, error) {
	if len(devs) == 0 {
		return 0, nil
	}
	for i := range devs {
		if err := devindex.Check(devs[i]); err != nil {
			return 0, fmt.Errorf("sqlite: bulk enroll: %w", err)
		}
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: %w", err)
	}
	defer conn.Close()
	var cache int64
	if err := conn.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache); err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", bulkCacheKiB)); err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA cache_size = %d", cache))
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	if err := tx.StmtContext(ctx, s.ws.maxSeq).QueryRowContext(ctx).Scan(&seq); err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: next seq: %w", err)
	}
	// A device may be a fleet member before it enrolls; its offline flags
	// then need setting, but only where some rollout has an offline cursor.
	var cursors int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM offline_cursors`).Scan(&cursors); err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: %w", err)
	}
	reflag := tx.StmtContext(ctx, s.ws.reflagDevice)
	ins := tx.StmtContext(ctx, s.ws.bulkDevice)
	n := 0
	var added []devicestore.Device // inserted, with their Seq
	type tenant struct{ ns, enr string }
	counts := map[tenant]int64{}
	for i := range devs {
		d := &devs[i]
		labels, err := encLabels(d.Labels)
		if err != nil {
			return 0, err
		}
		res, err := ins.ExecContext(ctx, d.ID, d.Type, labels, d.KEM, d.PublicKey, d.TokenHash, d.Version, d.SecurityFloor, nanos(d.EnrolledAt), nanos(d.LastSeen), seq+1, d.Namespace, d.Enrollment)
		if err != nil {
			return 0, fmt.Errorf("sqlite: bulk enroll %s: %w", d.ID, err)
		}
		if k, _ := res.RowsAffected(); k == 1 {
			seq++
			n++
			counts[tenant{d.Namespace, d.Enrollment}]++
			if cursors > 0 {
				if _, err := reflag.ExecContext(ctx, d.ID); err != nil {
					return 0, fmt.Errorf("sqlite: bulk enroll %s: offline flags: %w", d.ID, err)
				}
			}
			if s.idx != nil {
				dd := *d
				dd.Seq = seq
				added = append(added, dd)
			}
		}
	}
	add := tx.StmtContext(ctx, s.ws.addEnrolled)
	for t, k := range counts {
		if _, err := add.ExecContext(ctx, t.ns, t.enr, k); err != nil {
			return 0, fmt.Errorf("sqlite: bulk enroll: count devices of %s/%s: %w", t.ns, t.enr, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: bulk enroll: commit: %w", err)
	}
	for _, d := range added {
		if err := s.idx.Add(d); err != nil {
			return n, fmt.Errorf("sqlite: bulk enroll: index %s: %w", d.ID, err)
		}
	}
	return n, nil
}
