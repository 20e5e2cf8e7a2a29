-- 4: skipped devices counted by reason for status.fleet.skipped; a
-- partial index, so only skipped records pay for it.

-- +goose Up
CREATE INDEX records_skip_reason ON records(rollout_uid, reason) WHERE state = 'skipped';
