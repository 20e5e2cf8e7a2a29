// Package postgres is the PostgreSQL device store, for running several OTA
// server replicas on one database.
//
// Isolation. Transactions run at READ COMMITTED and take explicit locks
// rather than relying on SERIALIZABLE: conflicting check-ins and reports
// of one device then queue on a lock instead of failing and redoing their
// work, and unrelated devices never conflict through SSI's page-granular
// predicate locks, which under load turn into retry storms.
//
//   - Every write of a device's records (UpdateRecords, ApplyReport,
//     PutRecord) first takes a transaction-scoped advisory lock on the
//     device, so a record another check-in inserts cannot appear between
//     UpdateRecords' read and its writes (a phantom row locks could not
//     prevent), and reads the rows it changes with SELECT … FOR UPDATE, so
//     ExpireOffers and ForgetRollout (which take row locks only) wait for
//     it or it for them.
//   - ApplyReport inserts the report ID first, ON CONFLICT DO NOTHING: of
//     two replicas applying the same report, one inserts and the other
//     waits on the unique index and then finds it taken (ErrDuplicateReport).
//   - Enrollments take one advisory lock and draw Seq from a sequence
//     inside it, so Seq order is commit order: a fleet sync paging
//     DevicesSince never sees seq n+1 committed while n is still in flight
//     and skips it forever. Enrollments are rare, so serializing them costs
//     little. A new device is counted against its enrollment's quota by
//     the statement that inserts it (enrollment_counts, migration 5),
//     inside that lock, so quotas hold exactly across replicas.
//   - DeleteDevice takes the device's lock and offlineLock shared, which
//     fleet syncs (SyncFleet adds only enrolled devices) take exclusive:
//     a sync that read a device before its deletion never adds it back.
//   - Counters are maintained by statement-level triggers in the writing
//     transaction, on rows sharded by backend so replicas do not queue on
//     one hot row; offline flags are kept under the offline advisory lock
//     (see queries.go and docs/decisions.md section 22). Counts reads the
//     counters in one statement; Recount scans in one REPEATABLE READ,
//     read-only snapshot.
//   - Errors meaning the database is unreachable for now wrap
//     devicestore.ErrUnavailable.
//
// Every transaction (and single-statement write) is retried on
// serialization failures and deadlocks (SQLSTATE 40001, 40P01) with bounded,
// jittered exponential backoff; at READ COMMITTED only deadlocks between
// batch writes (fleet syncs, expiries) are expected. UpdateRecords' decide
// and ApplyReport's update may therefore run more than once.
//
// Times are bigint unix nanoseconds (devicestore.UnixNanos), as in the
// SQLite store: timestamptz keeps only microseconds, so a stored time would
// not compare equal to the one written. Ranks are bigint with the top bit
// flipped, keeping uint64 order. Labels are jsonb.
//
// Device cache. DeviceByToken, run by every check-in, is answered from an
// in-process cache keyed by token hash (cache.go): at most
// Options.DeviceCacheSize devices (default DefaultDeviceCacheSize, about
// 500 bytes plus the public key each), an arbitrary one evicted when full,
// filled on a miss (misses are not cached). Other replicas' writes reach it
// through LISTEN/NOTIFY: a trigger on devices (migration 3) notifies the
// device's ID on every UPDATE or DELETE, when the transaction commits, and
// each Store's one listener connection (beyond MaxConns) evicts it. So a
// token rotation or version change on one replica is seen by the others
// after one notification's latency, milliseconds. A fill that read the
// database before an invalidation is dropped; the Store's own writes
// evict at once. While the listener is not connected (start, lost
// connection, database restart) the cache is cleared and bypassed; after
// reconnecting and LISTENing it is cleared once more before it is used,
// so no notification can be missed. A silently broken listener connection
// is found by a heartbeat within about 4 s, which bounds staleness then.
// A cached device's LastSeen may lag other replicas' touches. Device
// (by ID) is not cached.
//
// The schema is migrated at Open with goose (embedded migrations/*.sql),
// under a session advisory lock, so replicas starting at once migrate once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// Options tune the store; the zero value is usable.
type Options struct {
	// MaxConns bounds the connection pool. 0 keeps the DSN's
	// pool_max_conns, or pgxpool's default (the greater of 4 and the
	// number of CPUs).
	MaxConns int32
	// StatementTimeout aborts any statement running longer, on every
	// connection (the statement_timeout parameter). 0 keeps the DSN's
	// statement_timeout, or else 5s; negative disables it.
	StatementTimeout time.Duration
	// MaxAttempts bounds the tries of a transaction that fails with a
	// serialization failure or deadlock; default 5.
	MaxAttempts int
	// RetryBackoff is the first retry's mean delay, doubling per attempt
	// (with full jitter) up to 1s; default 10ms.
	RetryBackoff time.Duration
	// MigrationLockTimeout bounds the wait for another replica's
	// migration at Open; default 5 minutes.
	MigrationLockTimeout time.Duration
	// DeviceCacheSize bounds the devices DeviceByToken keeps in memory
	// (see the package comment); 0 means DefaultDeviceCacheSize, negative
	// disables the cache and its listener connection.
	DeviceCacheSize int
}

// DefaultStatementTimeout is the statement timeout unless configured.
const DefaultStatementTimeout = 5 * time.Second

const maxBackoff = time.Second

// Store is the PostgreSQL device store.
type Store struct {
	pool        *pgxpool.Pool
	maxAttempts int
	backoff     time.Duration
	cache       *deviceCache // nil when disabled
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// Open connects to the database named by dsn (a postgres:// URL or
// key=value string, as pgx accepts), migrates it and returns the store.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err) // pgx redacts the password
	}
	if o.MaxConns < 0 {
		return nil, fmt.Errorf("postgres: max conns %d < 0", o.MaxConns)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	switch {
	case o.StatementTimeout < 0:
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = "0"
	case o.StatementTimeout > 0:
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(1, o.StatementTimeout.Milliseconds()), 10)
	default:
		if _, ok := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !ok {
			cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(DefaultStatementTimeout.Milliseconds(), 10)
		}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 10 * time.Millisecond
	}
	if o.MigrationLockTimeout <= 0 {
		o.MigrationLockTimeout = 5 * time.Minute
	}
	if err := migrate(ctx, cfg.ConnConfig, o.MigrationLockTimeout); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, maxAttempts: o.MaxAttempts, backoff: o.RetryBackoff}
	if o.DeviceCacheSize == 0 {
		o.DeviceCacheSize = DefaultDeviceCacheSize
	}
	if o.DeviceCacheSize > 0 {
		s.cache = newDeviceCache(o.DeviceCacheSize)
		s.cache.start(cfg.ConnConfig.Copy())
	}
	return s, nil
}

// Ping implements devicestore.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable(fmt.Errorf("postgres: ping: %w", err))
	}
	return nil
}

// Close implements devicestore.Store; it waits for connections in use.
func (s *Store) Close() error {
	if s.cache != nil {
		s.cache.stop()
	}
	s.pool.Close()
	return nil
}

// unavailable marks errors meaning the database cannot be reached for now
// as devicestore.ErrUnavailable: no connection could be made, the
// connection was lost, the server is shutting down or starting up, or it
// has no connection slot left. The caller's own cancellation is not one.
func unavailable(err error) error {
	if err == nil || errors.Is(err, devicestore.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if isUnavailable(err) {
		return fmt.Errorf("%w: %w", devicestore.ErrUnavailable, err)
	}
	return err
}

func isUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", // admin_shutdown
			pe.Code == "57P02", // crash_shutdown
			pe.Code == "57P03", // cannot_connect_now (starting up, shutting down)
			pe.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// retryable tells errors worth running the transaction again for.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", // serialization_failure
			"40P01": // deadlock_detected
			return true
		}
	}
	return false
}

// retry runs fn until it succeeds, fails for good or the attempts are
// spent, sleeping a jittered, growing delay between attempts.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt >= s.maxAttempts {
			if err != nil && retryable(err) {
				return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
			}
			return err
		}
		// Full jitter: uniform in [0, 2·base·2^(attempt-1)), capped.
		d := min(s.backoff<<(attempt-1), maxBackoff)
		t := time.NewTimer(rand.N(2 * d))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

var (
	writeTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
	readTx  = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
)

// tx runs fn in a transaction, retried as a whole; what names it in
// errors.
func (s *Store) tx(ctx context.Context, what string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return unavailable(s.retry(ctx, func() error {
		tx, err := s.pool.BeginTx(ctx, opts)
		if err != nil {
			return fmt.Errorf("postgres: %s: begin: %w", what, err)
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("postgres: %s: commit: %w", what, err)
		}
		return nil
	}))
}

// exec runs one statement (its own transaction), retried.
func (s *Store) exec(ctx context.Context, what, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := s.retry(ctx, func() error {
		var err error
		tag, err = s.pool.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		return nil
	})
	return tag, unavailable(err)
}

// Times are unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64     { return devicestore.UnixNanos(t) }
func fromNanos(n int64) time.Time { return devicestore.FromUnixNanos(n) }

// Ranks are unsigned, bigint is signed: flipping the top bit keeps order.
func encRank(r uint64) int64 { return int64(r ^ 1<<63) }
func decRank(v int64) uint64 { return uint64(v) ^ 1<<63 }

var _ devicestore.Store = (*Store)(nil)
