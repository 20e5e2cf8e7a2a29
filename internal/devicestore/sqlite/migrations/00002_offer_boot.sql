-- 2: the boot a device was offered in, so a delayed check-in from
-- before its install is not taken for a revert.

-- +goose Up
ALTER TABLE records ADD COLUMN offer_boot TEXT NOT NULL DEFAULT '';
