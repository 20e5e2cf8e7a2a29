package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// tx runs fn in a write transaction on the single writer connection.
func (s *Store) tx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", what, err)
	}
	return nil
}

// Times are unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Ranks are unsigned; SQLite integers are signed. Flipping the top bit
// keeps the order.
func encRank(r uint64) int64 { return int64(r ^ 1<<63) }
func decRank(v int64) uint64 { return uint64(v) ^ 1<<63 }

func encLabels(l map[string]string) (string, error) {
	if l == nil {
		l = map[string]string{}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode labels: %w", err)
	}
	return string(b), nil
}

func decLabels(s string) (map[string]string, error) {
	var l map[string]string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("sqlite: decode labels: %w", err)
	}
	return l, nil
}
