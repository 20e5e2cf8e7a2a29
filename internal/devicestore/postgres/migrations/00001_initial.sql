-- The device store's schema; the same tables and indexes as the SQLite
-- store (internal/devicestore/sqlite/migrations), with Seq drawn from a
-- sequence. Times are unix nanoseconds, ranks bigint with the top bit
-- flipped (see the package comment). Never edit a released migration:
-- add a new file.

-- +goose Up
CREATE SEQUENCE device_seq AS bigint;

CREATE TABLE devices (
	id             text PRIMARY KEY,
	type           text NOT NULL,
	labels         jsonb NOT NULL,
	kem            text NOT NULL,
	public_key     bytea NOT NULL,
	token_hash     bytea NOT NULL,
	version        text NOT NULL,
	security_floor bigint NOT NULL,
	enrolled_at    bigint NOT NULL,
	last_seen      bigint NOT NULL,
	seq            bigint NOT NULL
);
CREATE UNIQUE INDEX devices_token ON devices (token_hash);
CREATE UNIQUE INDEX devices_seq ON devices (seq);

-- Last-seen times from check-ins, apart from the wide devices rows: a
-- touch then writes a new version of a short row (and no index entry
-- but its own) instead of a whole device. A device's last-seen is the
-- later of devices.last_seen and device_seen.at.
CREATE TABLE device_seen (
	id text PRIMARY KEY,
	at bigint NOT NULL
);

CREATE TABLE records (
	rollout_uid      text NOT NULL,
	device_id        text NOT NULL,
	wave             integer NOT NULL,
	state            text NOT NULL,
	release          text NOT NULL,
	version          text NOT NULL,
	blob             text NOT NULL,
	previous_version text NOT NULL,
	offered_at       bigint NOT NULL,
	updated_at       bigint NOT NULL,
	reason           text NOT NULL,
	rollback_release text NOT NULL,
	rollback_blob    text NOT NULL,
	offer_boot       text NOT NULL DEFAULT '',
	PRIMARY KEY (rollout_uid, device_id)
);
CREATE INDEX records_device ON records (device_id);
CREATE INDEX records_counts ON records (rollout_uid, wave, state);
CREATE INDEX records_timeout ON records (rollout_uid, state, offered_at);
CREATE INDEX records_skip_reason ON records (rollout_uid, reason) WHERE state = 'skipped';

CREATE TABLE fleet (
	rollout_uid text NOT NULL,
	device_id   text NOT NULL,
	rank        bigint NOT NULL,
	wave        integer NOT NULL,
	pinned      boolean NOT NULL,
	PRIMARY KEY (rollout_uid, device_id)
);
CREATE INDEX fleet_rank ON fleet (rollout_uid, rank);
CREATE INDEX fleet_wave ON fleet (rollout_uid, wave);

CREATE TABLE conflicts (
	rollout_uid text NOT NULL,
	device_id   text NOT NULL,
	PRIMARY KEY (rollout_uid, device_id)
);

CREATE TABLE failures (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rollout_uid text NOT NULL,
	device_id   text NOT NULL,
	wave        integer NOT NULL,
	reason      text NOT NULL,
	at          bigint NOT NULL
);
CREATE INDEX failures_recent ON failures (rollout_uid, at, id);

CREATE TABLE reports (
	device_id text NOT NULL,
	report_id text NOT NULL,
	at        bigint NOT NULL,
	PRIMARY KEY (device_id, report_id)
);
CREATE INDEX reports_at ON reports (at);

CREATE TABLE wrapped_keys (
	device_id text NOT NULL,
	blob      text NOT NULL,
	wrapped   bytea NOT NULL,
	PRIMARY KEY (device_id, blob)
);

-- +goose Down
DROP TABLE wrapped_keys, reports, failures, conflicts, fleet, records, device_seen, devices;
DROP SEQUENCE device_seq;
