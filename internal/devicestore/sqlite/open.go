// Package sqlite is the embedded device store: one SQLite database in WAL
// mode, written through a single connection (SQLite allows one writer at a
// time anyway, so a pool would only queue on locks) and read through a pool
// of read-only connections that never block the writer. Concurrent request
// writes are grouped into shared transactions (group commit, group.go), so
// the fsync of synchronous=FULL is paid once per batch, not once per report.
//
// One process owns the database (Open takes an exclusive lock on
// "<path>.lock"), so the store keeps an exact in-memory index of the
// devices (package devindex, index.go) and answers check-in lookups from
// it instead of SQLite.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sync"

	"github.com/otaflow/otaflow/internal/devicestore/devindex"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options tune the store.
type Options struct {
	// Readers is the size of the read pool; default max(4, 2·GOMAXPROCS).
	Readers int
	// Synchronous is the SQLite synchronous level: FULL (default) fsyncs
	// the WAL on every commit, so an acknowledged report survives a power
	// loss; NORMAL only survives process crashes.
	Synchronous string
	// DisableGroupCommit gives every request write a transaction (and with
	// FULL an fsync) of its own instead of grouping concurrent writes.
	DisableGroupCommit bool
	// MaxBatch bounds the writes grouped into one transaction; default 256.
	MaxBatch int
	// MmapSize is how much of the database file each connection reads
	// through a memory map instead of read(2) calls; 0 (default) is off.
	// Every connection maps the file on its own, so the process's RSS
	// grows by up to MmapSize per connection (page-cache pages, but
	// counted as resident): with a million devices and the default read
	// pool that is well over a GiB, for no measurable gain in the P1
	// benchmark, so it stays off.
	MmapSize int64
	// DisableDeviceIndex answers device lookups (by token, by ID) and the
	// "has this device any record" question from SQLite instead of the
	// in-memory device index (package devindex) loaded at Open.
	DisableDeviceIndex bool
	// ReaderCacheKiB is each read connection's page cache. Default: 4 MiB
	// with the device index (device lookups do not read SQLite), 16 MiB
	// without it (SQLite's 2 MiB does not hold even the inner pages of the
	// token and device B-trees of a million devices, so every lookup paid
	// several read(2) calls).
	ReaderCacheKiB int
}

// Store is the SQLite device store.
type Store struct {
	w, r *sql.DB
	ws   writeStmts
	rs   readStmts
	gc   *committer      // nil when group commit is off
	wmu  sync.Mutex      // orders writes and their index updates without group commit
	idx  *devindex.Index // nil when the device index is off
	lock *os.File        // the exclusive lock on the database
	// adminMu orders bulk imports and deletions, whose index updates
	// follow their commits, so a device deleted during an import of the
	// same ID does not stay indexed.
	adminMu sync.Mutex
}

// Open opens (creating if needed) the database file at path and migrates it.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if o.Readers <= 0 {
		o.Readers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if o.Synchronous == "" {
		o.Synchronous = "FULL"
	}
	if o.ReaderCacheKiB <= 0 {
		o.ReaderCacheKiB = 4 << 10
		if o.DisableDeviceIndex {
			o.ReaderCacheKiB = 16 << 10
		}
	}
	if o.MmapSize < 0 {
		o.MmapSize = 0
	}
	switch o.Synchronous {
	case "FULL", "NORMAL", "EXTRA":
	default:
		return nil, fmt.Errorf("sqlite: synchronous %q: want FULL, NORMAL or EXTRA", o.Synchronous)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	w, err := openDB(path, false, o.Synchronous, o.MmapSize, 0)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	s := &Store{w: w, lock: lock}
	if err := migrate(ctx, w); err != nil {
		_ = s.Close()
		return nil, err
	}
	r, err := openDB(path, true, o.Synchronous, o.MmapSize, o.ReaderCacheKiB)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	r.SetMaxOpenConns(o.Readers)
	r.SetMaxIdleConns(o.Readers)
	s.r = r
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if !o.DisableDeviceIndex {
		if s.idx, err = s.loadIndex(ctx); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	if !o.DisableGroupCommit {
		s.gc = newCommitter(s, o.MaxBatch)
	}
	return s, nil
}

// IndexStats describes the device index (zero when it is off).
func (s *Store) IndexStats() devindex.Stats {
	if s.idx == nil {
		return devindex.Stats{}
	}
	return s.idx.Stats()
}

func openDB(path string, readOnly bool, sync string, mmap int64, cacheKiB int) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("mmap_size(%d)", mmap))
	if cacheKiB > 0 {
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", cacheKiB))
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN: a deferred transaction that reads
		// first and then writes can fail with SQLITE_BUSY mid-way.
		q.Set("_txlock", "immediate")
	}
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: writer: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: readers: %w", err)
	}
	return nil
}

// Close closes statements and both pools.
func (s *Store) Close() error {
	if s.gc != nil {
		s.gc.stop() // answers every queued write first
	}
	var errs []error
	for _, st := range s.allStmts() {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the lock
	}
	return errors.Join(errs...)
}

// Explain returns SQLite's query plan for query, one line per step; tests
// use it to prove the hot queries use indexes.
func (s *Store) Explain(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: explain: %w", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, fmt.Errorf("sqlite: explain: %w", err)
		}
		plan = append(plan, detail)
	}
	return plan, rows.Err()
}
