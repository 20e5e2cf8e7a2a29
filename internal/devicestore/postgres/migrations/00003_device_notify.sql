-- 3: every change to a devices row notifies the replicas' device caches
-- (see cache.go): NOTIFY otaflow_devices, '<device id>', delivered when
-- the writing transaction commits. A trigger rather than a NOTIFY in each
-- write path, so no write (Enroll, re-enrollment's token rotation,
-- SetRunning, an operator's UPDATE) can forget it.
--
-- Inserts do not notify: caches keep only devices they read (never a
-- miss), and a new row's token can only have been cached for a device
-- whose row was updated or deleted since, which notified. That keeps a
-- BulkEnroll of a million devices from queueing a million notifications.
-- TRUNCATE notifies an empty payload: every cache clears.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION otaflow_devices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify('otaflow_devices', '');
		RETURN NULL;
	END IF;
	PERFORM pg_notify('otaflow_devices', OLD.id);
	IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
		PERFORM pg_notify('otaflow_devices', NEW.id);
	END IF;
	RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER devices_notify AFTER UPDATE OR DELETE ON devices
	FOR EACH ROW EXECUTE FUNCTION otaflow_devices_notify();
CREATE TRIGGER devices_notify_truncate AFTER TRUNCATE ON devices
	FOR EACH STATEMENT EXECUTE FUNCTION otaflow_devices_notify();

-- +goose Down
DROP TRIGGER devices_notify_truncate ON devices;
DROP TRIGGER devices_notify ON devices;
DROP FUNCTION otaflow_devices_notify();
