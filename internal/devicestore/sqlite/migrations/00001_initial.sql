-- 1: initial schema. WITHOUT ROWID tables are clustered on their primary
-- key, so the hot lookups (by token hash, by (rollout, device)) are one
-- B-tree descent.

-- +goose Up
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
