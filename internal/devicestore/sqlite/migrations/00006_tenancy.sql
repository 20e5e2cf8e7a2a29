-- 6: devices belong to a tenant. devices.namespace is the namespace of
-- the enrollment credential a device first enrolled through and
-- devices.enrollment the DeviceEnrollment's name; both '' for the
-- cluster-wide enrollment Secret, which every device stored before this
-- migration used. Neither changes on re-enrollment.
--
-- enrollment_counts holds the devices created through each (namespace,
-- enrollment), for DeviceEnrollment quotas: a new device's enrollment
-- adds one in its own transaction, only while below the quota (an upsert
-- whose update is conditional, so the check and the count are one
-- statement). Devices stored before this migration are not counted
-- against any quota: their credential is not known.

-- +goose Up
ALTER TABLE devices ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN enrollment TEXT NOT NULL DEFAULT '';

CREATE TABLE enrollment_counts (
	namespace  TEXT NOT NULL,
	enrollment TEXT NOT NULL,
	devices    INTEGER NOT NULL,
	PRIMARY KEY (namespace, enrollment)
) WITHOUT ROWID;
