-- 5: counters maintained as rows are written, so the reporter's Counts
-- reads a few rows instead of counting the fleet; the reporter's state
-- (fleet-sync cursor, wave cutoffs) kept in the store.
--
-- counters holds, per rollout: kind 't' fleet members per wave
-- (targeted), 'o' offline members per wave, 's' records per wave and
-- state (key), 'k' skipped records per reason (key, wave 0), 'c'
-- conflicts (wave 0). Triggers on fleet, records and conflicts keep it
-- exact in the transaction of every write, whichever code path writes.
--
-- Offline members: fleet.offline flags members with no record
-- (has_record = 0) whose device was last seen before the rollout's
-- offline cursor (offline_cursors.before, the offlineBefore of the last
-- Counts). Writers of last-seen times clear flags; Counts moves the
-- cursor and flags or clears only the members whose device's last-seen
-- time lies between the old and the new cursor (device_seen_at,
-- devices_last_seen). fleet_offline finds a touched device's flags.

-- +goose Up
CREATE TABLE counters (
	rollout_uid TEXT NOT NULL,
	kind        TEXT NOT NULL,
	wave        INTEGER NOT NULL,
	key         TEXT NOT NULL,
	n           INTEGER NOT NULL,
	PRIMARY KEY (rollout_uid, kind, wave, key)
) WITHOUT ROWID;

CREATE TABLE offline_cursors (
	rollout_uid TEXT PRIMARY KEY,
	before      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE rollout_state (
	rollout_uid  TEXT PRIMARY KEY,
	selector_key TEXT NOT NULL,
	fleet_seq    INTEGER NOT NULL,
	cutoffs      TEXT NOT NULL,
	updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE fleet ADD COLUMN has_record INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fleet ADD COLUMN offline INTEGER NOT NULL DEFAULT 0;
UPDATE fleet SET has_record = 1
WHERE EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = fleet.rollout_uid AND r.device_id = fleet.device_id);
CREATE INDEX fleet_offline ON fleet(device_id) WHERE offline = 1;
CREATE INDEX device_seen_at ON device_seen(at);
CREATE INDEX devices_last_seen ON devices(last_seen);

-- Backfill, before the triggers exist. No offline cursor exists yet: the
-- first Counts of each rollout flags its offline members.
INSERT INTO counters (rollout_uid, kind, wave, key, n)
SELECT rollout_uid, 't', wave, '', count(*) FROM fleet GROUP BY rollout_uid, wave;
INSERT INTO counters (rollout_uid, kind, wave, key, n)
SELECT rollout_uid, 's', wave, state, count(*) FROM records GROUP BY rollout_uid, wave, state;
INSERT INTO counters (rollout_uid, kind, wave, key, n)
SELECT rollout_uid, 'k', 0, reason, count(*) FROM records WHERE state = 'skipped' GROUP BY rollout_uid, reason;
INSERT INTO counters (rollout_uid, kind, wave, key, n)
SELECT rollout_uid, 'c', 0, '', count(*) FROM conflicts GROUP BY rollout_uid;

-- +goose StatementBegin
CREATE TRIGGER fleet_counters_insert AFTER INSERT ON fleet BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (NEW.rollout_uid, 't', NEW.wave, '', 1)
	ON CONFLICT DO UPDATE SET n = n + 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 'o', NEW.wave, '', 1 WHERE NEW.offline = 1
	ON CONFLICT DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER fleet_counters_update AFTER UPDATE OF wave, offline ON fleet
WHEN OLD.wave <> NEW.wave OR OLD.offline <> NEW.offline BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 't', OLD.wave, '', -1 WHERE OLD.wave <> NEW.wave
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 't', NEW.wave, '', 1 WHERE OLD.wave <> NEW.wave
	ON CONFLICT DO UPDATE SET n = n + 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 'o', OLD.wave, '', -1 WHERE OLD.offline = 1
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 'o', NEW.wave, '', 1 WHERE NEW.offline = 1
	ON CONFLICT DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER fleet_counters_delete AFTER DELETE ON fleet BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (OLD.rollout_uid, 't', OLD.wave, '', -1)
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 'o', OLD.wave, '', -1 WHERE OLD.offline = 1
	ON CONFLICT DO UPDATE SET n = n - 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER records_counters_insert AFTER INSERT ON records BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (NEW.rollout_uid, 's', NEW.wave, NEW.state, 1)
	ON CONFLICT DO UPDATE SET n = n + 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 'k', 0, NEW.reason, 1 WHERE NEW.state = 'skipped'
	ON CONFLICT DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER records_counters_update AFTER UPDATE OF wave, state, reason ON records
WHEN OLD.wave <> NEW.wave OR OLD.state <> NEW.state OR (OLD.reason <> NEW.reason AND 'skipped' IN (OLD.state, NEW.state)) BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 's', OLD.wave, OLD.state, -1 WHERE OLD.wave <> NEW.wave OR OLD.state <> NEW.state
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 's', NEW.wave, NEW.state, 1 WHERE OLD.wave <> NEW.wave OR OLD.state <> NEW.state
	ON CONFLICT DO UPDATE SET n = n + 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 'k', 0, OLD.reason, -1 WHERE OLD.state = 'skipped'
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT NEW.rollout_uid, 'k', 0, NEW.reason, 1 WHERE NEW.state = 'skipped'
	ON CONFLICT DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER records_counters_delete AFTER DELETE ON records BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (OLD.rollout_uid, 's', OLD.wave, OLD.state, -1)
	ON CONFLICT DO UPDATE SET n = n - 1;
	INSERT INTO counters (rollout_uid, kind, wave, key, n) SELECT OLD.rollout_uid, 'k', 0, OLD.reason, -1 WHERE OLD.state = 'skipped'
	ON CONFLICT DO UPDATE SET n = n - 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER conflicts_counters_insert AFTER INSERT ON conflicts BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (NEW.rollout_uid, 'c', 0, '', 1)
	ON CONFLICT DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER conflicts_counters_delete AFTER DELETE ON conflicts BEGIN
	INSERT INTO counters (rollout_uid, kind, wave, key, n) VALUES (OLD.rollout_uid, 'c', 0, '', -1)
	ON CONFLICT DO UPDATE SET n = n - 1;
END;
-- +goose StatementEnd
