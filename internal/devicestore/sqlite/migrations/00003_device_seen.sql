-- 3: last-seen times written by check-ins go to a narrow table of their
-- own: a flush of thousands of devices then dirties a few pages of
-- short rows instead of one page of the wide devices table per device.
-- A device's last-seen is the later of devices.last_seen (enrollment,
-- running version) and device_seen.at.

-- +goose Up
CREATE TABLE device_seen (
	id TEXT PRIMARY KEY,
	at INTEGER NOT NULL
) WITHOUT ROWID;
