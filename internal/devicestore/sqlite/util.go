package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// tx runs fn in a write transaction on the single writer connection.
func (s *Store) tx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(fmt.Errorf("sqlite: %s: begin: %w", what, err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return unavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable(fmt.Errorf("sqlite: %s: commit: %w", what, err))
	}
	return nil
}

// unavailable marks SQLITE_BUSY (the database stayed locked by another
// process past the busy timeout) as devicestore.ErrUnavailable: the same
// write may succeed later.
func unavailable(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY && !errors.Is(err, devicestore.ErrUnavailable) {
		return fmt.Errorf("%w: %w", devicestore.ErrUnavailable, err)
	}
	return err
}

// eachRow runs fn on every row of a query's result (rows, err as the
// query returned them) and closes it; what names the query in errors.
func eachRow(rows *sql.Rows, err error, what string, fn func(scanner) error) error {
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return nil
}

// pointCtx is the context of a request-path point lookup (one index
// descent, microseconds): it keeps the caller's values but not its
// cancellation, since a cancellable context costs database/sql and the
// driver a watcher goroutine per query — more than the query itself.
func pointCtx(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// Times are unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64     { return devicestore.UnixNanos(t) }
func fromNanos(n int64) time.Time { return devicestore.FromUnixNanos(n) }

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

// decLabels decodes a label set. A fleet has few distinct label sets, so
// decoded sets are shared (bounded): the maps a store returns are read-only.
func decLabels(s string) (map[string]string, error) {
	if l, ok := labelSets.get(s); ok {
		return l, nil
	}
	var l map[string]string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("sqlite: decode labels: %w", err)
	}
	labelSets.put(s, l)
	return l, nil
}

// maxLabelSets bounds the shared label sets; past it, sets are decoded
// per read.
const maxLabelSets = 8192

var labelSets = &labelCache{m: map[string]map[string]string{}}

type labelCache struct {
	mu sync.RWMutex
	m  map[string]map[string]string
}

func (c *labelCache) get(s string) (map[string]string, bool) {
	c.mu.RLock()
	l, ok := c.m[s]
	c.mu.RUnlock()
	return l, ok
}

func (c *labelCache) put(s string, l map[string]string) {
	c.mu.Lock()
	if len(c.m) < maxLabelSets {
		c.m[s] = l
	}
	c.mu.Unlock()
}
