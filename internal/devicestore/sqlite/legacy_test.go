package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// The schema code before the move to goose (commit e90c28c), kept verbatim
// to create databases as released servers did: each migration applied
// once, the count kept in PRAGMA user_version.

var legacyMigrations = []string{
	// 1: initial schema. WITHOUT ROWID tables are clustered on their primary
	// key, so the hot lookups (by token hash, by (rollout, device)) are one
	// B-tree descent.
	`
CREATE TABLE devices (
	id             TEXT PRIMARY KEY,
	type           TEXT NOT NULL,
	labels         TEXT NOT NULL,
	kem            TEXT NOT NULL,
	public_key     BLOB NOT NULL,
	token_hash     BLOB NOT NULL,
	version        TEXT NOT NULL,
	security_floor INTEGER NOT NULL,
	enrolled_at    INTEGER NOT NULL,
	last_seen      INTEGER NOT NULL,
	seq            INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX devices_token ON devices(token_hash);
CREATE UNIQUE INDEX devices_seq ON devices(seq);

CREATE TABLE records (
	rollout_uid      TEXT NOT NULL,
	device_id        TEXT NOT NULL,
	wave             INTEGER NOT NULL,
	state            TEXT NOT NULL,
	release          TEXT NOT NULL,
	version          TEXT NOT NULL,
	blob             TEXT NOT NULL,
	previous_version TEXT NOT NULL,
	offered_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	reason           TEXT NOT NULL,
	rollback_release TEXT NOT NULL,
	rollback_blob    TEXT NOT NULL,
	PRIMARY KEY (rollout_uid, device_id)
) WITHOUT ROWID;
CREATE INDEX records_device ON records(device_id);
CREATE INDEX records_counts ON records(rollout_uid, wave, state);
CREATE INDEX records_timeout ON records(rollout_uid, state, offered_at);

CREATE TABLE fleet (
	rollout_uid TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	rank        INTEGER NOT NULL,
	wave        INTEGER NOT NULL,
	pinned      INTEGER NOT NULL,
	PRIMARY KEY (rollout_uid, device_id)
) WITHOUT ROWID;
CREATE INDEX fleet_rank ON fleet(rollout_uid, rank);
CREATE INDEX fleet_wave ON fleet(rollout_uid, wave);

CREATE TABLE conflicts (
	rollout_uid TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	PRIMARY KEY (rollout_uid, device_id)
) WITHOUT ROWID;

CREATE TABLE failures (
	id          INTEGER PRIMARY KEY,
	rollout_uid TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	wave        INTEGER NOT NULL,
	reason      TEXT NOT NULL,
	at          INTEGER NOT NULL
);
CREATE INDEX failures_recent ON failures(rollout_uid, at);

CREATE TABLE reports (
	device_id TEXT NOT NULL,
	report_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	PRIMARY KEY (device_id, report_id)
) WITHOUT ROWID;
CREATE INDEX reports_at ON reports(at);

CREATE TABLE wrapped_keys (
	device_id  TEXT NOT NULL,
	blob       TEXT NOT NULL,
	wrapped    BLOB NOT NULL,
	PRIMARY KEY (device_id, blob)
) WITHOUT ROWID;
`,
	// 2: the boot a device was offered in, so a delayed check-in from
	// before its install is not taken for a revert.
	`ALTER TABLE records ADD COLUMN offer_boot TEXT NOT NULL DEFAULT '';`,
	// 3: last-seen times written by check-ins go to a narrow table of their
	// own: a flush of thousands of devices then dirties a few pages of
	// short rows instead of one page of the wide devices table per device.
	// A device's last-seen is the later of devices.last_seen (enrollment,
	// running version) and device_seen.at.
	`CREATE TABLE device_seen (
	id TEXT PRIMARY KEY,
	at INTEGER NOT NULL
) WITHOUT ROWID;`,
	// 4: skipped devices counted by reason for status.fleet.skipped; a
	// partial index, so only skipped records pay for it.
	`CREATE INDEX records_skip_reason ON records(rollout_uid, reason) WHERE state = 'skipped';`,
}

// legacyMigrate is the released migrate.
func legacyMigrate(ctx context.Context, db *sql.DB) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if version > len(legacyMigrations) {
		return fmt.Errorf("sqlite: database schema version %d is newer than this server (%d)", version, len(legacyMigrations))
	}
	for i := version; i < len(legacyMigrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, legacyMigrations[i]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %d: commit: %w", i+1, err)
		}
	}
	return nil
}
