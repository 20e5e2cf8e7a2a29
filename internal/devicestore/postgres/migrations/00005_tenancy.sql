-- 5: devices belong to a tenant, as in the SQLite store's migration 6
-- (see its comments): devices.namespace and devices.enrollment name the
-- credential a device first enrolled through ('' for the cluster-wide
-- enrollment Secret, which every device stored before this migration
-- used; a constant default, so adding the columns rewrites no rows), and
-- never change on re-enrollment.
--
-- enrollment_counts holds the devices created through each (namespace,
-- enrollment), for DeviceEnrollment quotas. A new device's enrollment
-- adds one in its own transaction, by an upsert that updates only while
-- below the quota; enrollments already serialize on one advisory lock
-- (see the package comment), and the upsert's row lock would serialize
-- them on its own, so the count is exact across replicas. Devices stored
-- before this migration are not counted against any quota: their
-- credential is not known. Updating a count does not touch devices, so
-- it notifies no device cache (migration 3).

-- +goose Up
ALTER TABLE devices ADD COLUMN namespace text NOT NULL DEFAULT '',
	ADD COLUMN enrollment text NOT NULL DEFAULT '';

CREATE TABLE enrollment_counts (
	namespace  text NOT NULL,
	enrollment text NOT NULL,
	devices    bigint NOT NULL,
	PRIMARY KEY (namespace, enrollment)
);

-- +goose Down
DROP TABLE enrollment_counts;
ALTER TABLE devices DROP COLUMN enrollment, DROP COLUMN namespace;
