package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// BenchmarkCounts is the reporter's aggregation for one rollout (fleet
// size, conflicts, targeted per wave, records per wave and state) with
// every device of the fleet holding a record. Counts reads the counters
// writes maintain, so its cost stays flat with the fleet; Recount, the
// scanning query it replaced, grows with it.
func BenchmarkCounts(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "devices.db"), Options{Synchronous: "NORMAL"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			states := []rollout.State{rollout.StateSucceeded, rollout.StateOffered, rollout.StateInstalled, rollout.StateFailed}
			for i := range n {
				id := fmt.Sprintf("d%07d", i)
				wave := i % 4
				if _, err := tx.ExecContext(ctx, `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned) VALUES ('r', ?, ?, ?, 1)`, id, i, wave); err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO records (rollout_uid, device_id, wave, state, release, version, blob, previous_version, offered_at, updated_at, reason, rollback_release, rollback_blob)
					VALUES ('r', ?, ?, ?, 'ns/x', '2', 'b', '1', 1, 1, '', '', '')`, id, wave, string(states[i%len(states)])); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			for _, m := range []struct {
				name string
				fn   func(context.Context, string, time.Time) (devicestore.Counts, error)
			}{{"Counts", s.Counts}, {"Recount", s.Recount}} {
				b.Run(m.name, func(b *testing.B) {
					for b.Loop() {
						c, err := m.fn(ctx, "r", time.Time{})
						if err != nil || c.FleetSize != int64(n) {
							b.Fatalf("counts %+v %v", c, err)
						}
					}
				})
			}
		})
	}
}
