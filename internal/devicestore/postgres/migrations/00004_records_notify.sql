-- 4: a device's first record in a rollout notifies the replicas' device
-- caches too (cache.go): a cached device remembers whether it had any
-- record when it was read, so a check-in of a device with none skips the
-- records query; the insert that gives it one must drop that knowledge on
-- every replica, as a devices row change does. Only inserts: a deleted
-- record (ForgetRollout) leaves "may have records", which is always safe.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION otaflow_records_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('otaflow_devices', NEW.device_id);
	RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER records_notify AFTER INSERT ON records
	FOR EACH ROW EXECUTE FUNCTION otaflow_records_notify();

-- +goose Down
DROP TRIGGER records_notify ON records;
DROP FUNCTION otaflow_records_notify();
