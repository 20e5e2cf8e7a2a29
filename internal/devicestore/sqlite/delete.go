package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// DeleteDevice implements devicestore.Store in one write transaction.
// The counter triggers decrement what the device's records, fleet
// memberships (offline flags included) and conflicts counted; its
// enrollment's count drops by one; its Seq is kept as a floor, so it is
// never handed out again. The failure log is left alone.
//
// The device leaves the index after the commit, in commit order with the
// index updates of other writes (a re-enrollment of the same ID grouped
// before or after it lands on the right side).
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	// A bulk import indexes its devices after its own commit: the two must
	// not interleave on one ID.
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	var index func()
	if s.idx != nil {
		index = func() { s.idx.Delete(id) }
	}
	return s.writeThen(ctx, "delete device", func(ctx context.Context, tx *sql.Tx) error {
		var ns, enr string
		var seq int64
		err := tx.StmtContext(ctx, s.ws.deviceTenant).QueryRowContext(ctx, id).Scan(&ns, &enr, &seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: delete device %s: %w", id, devicestore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: delete device %s: %w", id, err)
		}
		steps := []struct {
			what string
			st   *sql.Stmt
			args []any
		}{
			{"records", s.ws.delRecordsOf, []any{id}},
			{"fleet memberships", s.ws.delFleetOf, []any{id}},
			{"conflicts", s.ws.delConflictsOf, []any{id}},
			{"wrapped keys", s.ws.delKeysOf, []any{id}},
			{"report IDs", s.ws.delReportsOf, []any{id}},
			{"last-seen time", s.ws.delSeen, []any{id}},
			{"device", s.ws.delDevice, []any{id}},
			{"enrollment count", s.ws.uncountEnrolled, []any{ns, enr}},
			{"sequence floor", s.ws.raiseSeqFloor, []any{seq}},
		}
		for _, st := range steps {
			if _, err := tx.StmtContext(ctx, st.st).ExecContext(ctx, st.args...); err != nil {
				return fmt.Errorf("sqlite: delete device %s: %s: %w", id, st.what, err)
			}
		}
		return nil
	}, index)
}
