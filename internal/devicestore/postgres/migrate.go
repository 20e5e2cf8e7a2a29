package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationLockID is the session advisory lock replicas migrate under;
// not goose's default, so another goose-migrated application sharing the
// database neither blocks nor is blocked by this one.
const migrationLockID int64 = 0x6f7461666c6f77 // "otaflow"

// versionTable records applied migrations (goose's own table layout).
const versionTable = "otaflow_schema_version"

// migrate applies the embedded migrations.
func migrate(ctx context.Context, cc *pgx.ConnConfig, lockTimeout time.Duration) error {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	return migrateFS(ctx, cc, sub, lockTimeout)
}

func migrateFS(ctx context.Context, cc *pgx.ConnConfig, fsys fs.FS, lockTimeout time.Duration) error {
	cc = cc.Copy()
	// Migrations may rewrite large tables: the request statement timeout
	// does not apply to them.
	cc.RuntimeParams["statement_timeout"] = "0"
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	// goose polls for the lock (at most once a second).
	polls := max(1, uint64(lockTimeout/time.Second))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, polls))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	if srcs := p.ListSources(); len(srcs) > 0 && current > srcs[len(srcs)-1].Version {
		// A newer server migrated the database: this one does not know
		// the schema it would write to.
		return fmt.Errorf("postgres: database schema version %d is newer than this server (%d)", current, srcs[len(srcs)-1].Version)
	}
	return nil
}
