-- 7: devices are listed by tenant and can be deleted.
--
-- devices_namespace serves ListDevices of one tenant as one index range
-- in ID order.
--
-- device_seq_floor keeps the highest Seq a deleted device had. A new Seq
-- is one more than the highest in use, so deleting the newest device
-- would hand its Seq out again, and a fleet sync whose cursor already
-- passed it would never see the device enrolled next.

-- +goose Up
CREATE INDEX devices_namespace ON devices(namespace, id);

CREATE TABLE device_seq_floor (
	id  INTEGER PRIMARY KEY CHECK (id = 0),
	seq INTEGER NOT NULL
);
