-- 6: devices are listed in pages and can be deleted.
--
-- ListDevices walks devices in the byte order of their IDs (COLLATE "C"),
-- whatever the database's collation: the order of the SQLite store, so a
-- page's last ID continues the walk on either store and pages of several
-- tenants merge by plain string comparison. devices_list serves the walk
-- across tenants, devices_tenant_list within one.
--
-- Deleting a device needs no new notification: the devices trigger of
-- migration 3 already notifies deletes, evicting the device from every
-- replica's cache. Seq comes from a sequence, never handed out twice.

-- +goose Up
CREATE INDEX devices_list ON devices (id COLLATE "C");
CREATE INDEX devices_tenant_list ON devices (namespace, id COLLATE "C");

-- +goose Down
DROP INDEX devices_tenant_list, devices_list;
