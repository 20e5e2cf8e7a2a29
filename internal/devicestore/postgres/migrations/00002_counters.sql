-- 2: counters maintained as rows are written, so the reporter's Counts
-- reads a few rows instead of counting the fleet; the reporter's state
-- (fleet-sync cursor, wave cutoffs) kept in the store. The same design as
-- the SQLite store's migration 5 (see its comments), with two
-- differences for concurrent writers on several replicas:
--
--   - counters rows are sharded: each writer adds to the shard of its
--     backend (pg_backend_pid() % 32), so check-ins on different
--     connections never queue on one hot counter row; Counts sums the
--     shards (at most 32 rows per counter).
--   - the triggers are statement-level with transition tables: a
--     statement writing thousands of rows (fleet sync, wave assignment,
--     expiry) adds one aggregated delta per counter, in key order (so two
--     writers sharing a shard lock counter rows in one order).

-- +goose Up
CREATE TABLE counters (
	rollout_uid text NOT NULL,
	kind        text NOT NULL,
	wave        integer NOT NULL,
	key         text NOT NULL,
	shard       smallint NOT NULL,
	n           bigint NOT NULL,
	PRIMARY KEY (rollout_uid, kind, wave, key, shard)
);

CREATE TABLE offline_cursors (
	rollout_uid text PRIMARY KEY,
	before      bigint NOT NULL
);

CREATE TABLE rollout_state (
	rollout_uid  text PRIMARY KEY,
	selector_key text NOT NULL,
	fleet_seq    bigint NOT NULL,
	cutoffs      text NOT NULL,
	updated_at   bigint NOT NULL
);

ALTER TABLE fleet ADD COLUMN has_record boolean NOT NULL DEFAULT false,
	ADD COLUMN offline boolean NOT NULL DEFAULT false;
UPDATE fleet f SET has_record = true
WHERE EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = f.rollout_uid AND r.device_id = f.device_id);
CREATE INDEX fleet_offline ON fleet (device_id) WHERE offline;
CREATE INDEX device_seen_at ON device_seen (at);
CREATE INDEX devices_last_seen ON devices (last_seen);

-- Backfill (shard 0), before the triggers exist. No offline cursor exists
-- yet: the first Counts of each rollout flags its offline members.
INSERT INTO counters (rollout_uid, kind, wave, key, shard, n)
SELECT rollout_uid, 't', wave, '', 0, count(*) FROM fleet GROUP BY rollout_uid, wave;
INSERT INTO counters (rollout_uid, kind, wave, key, shard, n)
SELECT rollout_uid, 's', wave, state, 0, count(*) FROM records GROUP BY rollout_uid, wave, state;
INSERT INTO counters (rollout_uid, kind, wave, key, shard, n)
SELECT rollout_uid, 'k', 0, reason, 0, count(*) FROM records WHERE state = 'skipped' GROUP BY rollout_uid, reason;
INSERT INTO counters (rollout_uid, kind, wave, key, shard, n)
SELECT rollout_uid, 'c', 0, '', 0, count(*) FROM conflicts GROUP BY rollout_uid;

-- +goose StatementBegin
-- Each function adds its table's row changes (the statement's transition
-- tables: +1 per new row, -1 per old row) to the writer's shard.
CREATE FUNCTION otaflow_fleet_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, '', (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 't' AS kind, wave, 1 AS d FROM new_rows
			UNION ALL SELECT rollout_uid, 'o', wave, 1 FROM new_rows WHERE offline
		) x GROUP BY rollout_uid, kind, wave ORDER BY rollout_uid, kind, wave
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, '', (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 't' AS kind, wave, 1 AS d FROM new_rows
			UNION ALL SELECT rollout_uid, 'o', wave, 1 FROM new_rows WHERE offline
			UNION ALL SELECT rollout_uid, 't', wave, -1 FROM old_rows
			UNION ALL SELECT rollout_uid, 'o', wave, -1 FROM old_rows WHERE offline
		) x GROUP BY rollout_uid, kind, wave HAVING sum(d) <> 0 ORDER BY rollout_uid, kind, wave
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	ELSE
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, '', (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 't' AS kind, wave, -1 AS d FROM old_rows
			UNION ALL SELECT rollout_uid, 'o', wave, -1 FROM old_rows WHERE offline
		) x GROUP BY rollout_uid, kind, wave ORDER BY rollout_uid, kind, wave
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	END IF;
	RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION otaflow_records_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, key, (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 's' AS kind, wave, state AS key, 1 AS d FROM new_rows
			UNION ALL SELECT rollout_uid, 'k', 0, reason, 1 FROM new_rows WHERE state = 'skipped'
		) x GROUP BY rollout_uid, kind, wave, key ORDER BY rollout_uid, kind, wave, key
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, key, (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 's' AS kind, wave, state AS key, 1 AS d FROM new_rows
			UNION ALL SELECT rollout_uid, 'k', 0, reason, 1 FROM new_rows WHERE state = 'skipped'
			UNION ALL SELECT rollout_uid, 's', wave, state, -1 FROM old_rows
			UNION ALL SELECT rollout_uid, 'k', 0, reason, -1 FROM old_rows WHERE state = 'skipped'
		) x GROUP BY rollout_uid, kind, wave, key HAVING sum(d) <> 0 ORDER BY rollout_uid, kind, wave, key
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	ELSE
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, kind, wave, key, (pg_backend_pid() % 32)::smallint, sum(d) FROM (
			SELECT rollout_uid, 's' AS kind, wave, state AS key, -1 AS d FROM old_rows
			UNION ALL SELECT rollout_uid, 'k', 0, reason, -1 FROM old_rows WHERE state = 'skipped'
		) x GROUP BY rollout_uid, kind, wave, key ORDER BY rollout_uid, kind, wave, key
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	END IF;
	RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION otaflow_conflicts_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, 'c', 0, '', (pg_backend_pid() % 32)::smallint, count(*) FROM new_rows
		GROUP BY rollout_uid ORDER BY rollout_uid
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	ELSE
		INSERT INTO counters AS c (rollout_uid, kind, wave, key, shard, n)
		SELECT rollout_uid, 'c', 0, '', (pg_backend_pid() % 32)::smallint, -count(*) FROM old_rows
		GROUP BY rollout_uid ORDER BY rollout_uid
		ON CONFLICT (rollout_uid, kind, wave, key, shard) DO UPDATE SET n = c.n + excluded.n;
	END IF;
	RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER fleet_counters_insert AFTER INSERT ON fleet REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_fleet_counters();
CREATE TRIGGER fleet_counters_update AFTER UPDATE ON fleet REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_fleet_counters();
CREATE TRIGGER fleet_counters_delete AFTER DELETE ON fleet REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_fleet_counters();
CREATE TRIGGER records_counters_insert AFTER INSERT ON records REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_records_counters();
CREATE TRIGGER records_counters_update AFTER UPDATE ON records REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_records_counters();
CREATE TRIGGER records_counters_delete AFTER DELETE ON records REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_records_counters();
CREATE TRIGGER conflicts_counters_insert AFTER INSERT ON conflicts REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_conflicts_counters();
CREATE TRIGGER conflicts_counters_delete AFTER DELETE ON conflicts REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_conflicts_counters();

-- +goose Down
DROP TRIGGER conflicts_counters_delete ON conflicts;
DROP TRIGGER conflicts_counters_insert ON conflicts;
DROP TRIGGER records_counters_delete ON records;
DROP TRIGGER records_counters_update ON records;
DROP TRIGGER records_counters_insert ON records;
DROP TRIGGER fleet_counters_delete ON fleet;
DROP TRIGGER fleet_counters_update ON fleet;
DROP TRIGGER fleet_counters_insert ON fleet;
DROP FUNCTION otaflow_conflicts_counters(), otaflow_records_counters(), otaflow_fleet_counters();
DROP INDEX devices_last_seen, device_seen_at, fleet_offline;
ALTER TABLE fleet DROP COLUMN offline, DROP COLUMN has_record;
DROP TABLE rollout_state, offline_cursors, counters;
