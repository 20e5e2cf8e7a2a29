package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// Migrations are goose SQL files (migrations/NNNNN_name.sql), each applied
// once in its own transaction. Never edit a released migration: add a
// file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// versionTable records applied migrations (goose's layout); the same name
// as in the PostgreSQL store.
const versionTable = "otaflow_schema_version"

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	return migrateFS(ctx, db, sub)
}

// migrateFS applies the migrations in fsys. No lock is needed: Open holds
// the database's file lock, and db is the single writer connection.
//
// Servers before goose counted applied migrations in PRAGMA user_version
// (migrations 1..4 are their SQL, unchanged); such a database is adopted
// by recording versions 1..user_version as applied. user_version keeps
// following the schema version, so an older server still refuses a
// database migrated past what it knows.
func migrateFS(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	store, err := database.NewStore(database.DialectSQLite3, versionTable)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectCustom, db, fsys, goose.WithStore(store), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	srcs := p.ListSources()
	if len(srcs) == 0 {
		return errors.New("sqlite: no migrations")
	}
	latest := srcs[len(srcs)-1].Version
	if err := adopt(ctx, db, store, latest); err != nil {
		return err
	}
	current, err := p.GetDBVersion(ctx) // creates the version table
	if err != nil {
		return fmt.Errorf("sqlite: schema version: %w", err)
	}
	if current > latest {
		return fmt.Errorf("sqlite: database schema version %d is newer than this server (%d)", current, latest)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if current, err = p.GetDBVersion(ctx); err != nil {
		return fmt.Errorf("sqlite: schema version: %w", err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", current)); err != nil {
		return fmt.Errorf("sqlite: set user_version: %w", err)
	}
	return nil
}

// adopt records the migrations a pre-goose server applied (PRAGMA
// user_version, no version table), in one transaction.
func adopt(ctx context.Context, db *sql.DB, store database.Store, latest int64) error {
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, versionTable).Scan(&tables); err != nil {
		return fmt.Errorf("sqlite: find version table: %w", err)
	}
	var applied int64
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&applied); err != nil {
		return fmt.Errorf("sqlite: read user_version: %w", err)
	}
	if tables > 0 || applied == 0 {
		return nil
	}
	if applied > latest {
		return fmt.Errorf("sqlite: database schema version %d is newer than this server (%d)", applied, latest)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: adopt schema version %d: %w", applied, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := store.CreateVersionTable(ctx, tx); err != nil {
		return fmt.Errorf("sqlite: adopt schema version %d: %w", applied, err)
	}
	// Version 0 is goose's marker of an initialized table.
	for v := int64(0); v <= applied; v++ {
		if err := store.Insert(ctx, tx, database.InsertRequest{Version: v}); err != nil {
			return fmt.Errorf("sqlite: adopt schema version %d: %w", applied, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: adopt schema version %d: commit: %w", applied, err)
	}
	return nil
}
