package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

const deviceCols = `id, type, labels, kem, public_key, token_hash, version, security_floor, enrolled_at, last_seen, seq, namespace, enrollment`

// deviceSelect reads deviceCols of devices d, last-seen merged with
// device_seen; deviceRead is it from devices.
const (
	deviceSelect = `SELECT d.id, d.type, d.labels, d.kem, d.public_key, d.token_hash, d.version, d.security_floor, d.enrolled_at,
	max(d.last_seen, coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0)), d.seq, d.namespace, d.enrollment`
	deviceRead = deviceSelect + ` FROM devices d`
)

// seenOf is the last-seen time of fleet.device_id (NULL for a device
// never enrolled, which is never offline).
const seenOf = `SELECT max(d.last_seen, coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0)) FROM devices d WHERE d.id = fleet.device_id`

const recordCols = `rollout_uid, device_id, wave, state, release, version, blob, previous_version, offered_at, updated_at, reason, rollback_release, rollback_blob, offer_boot`

// Queries; hot ones are checked with EXPLAIN QUERY PLAN in the tests.
const (
	qDeviceByToken = deviceRead + ` WHERE d.token_hash = ?`
	qDeviceByID    = deviceRead + ` WHERE d.id = ?`
	qDevicesSince  = `SELECT id, type, labels, seq, namespace FROM devices WHERE seq > ? ORDER BY seq LIMIT ?`
	qRecord        = `SELECT ` + recordCols + ` FROM records WHERE rollout_uid = ? AND device_id = ?`
	qRecordsByDev  = `SELECT ` + recordCols + ` FROM records WHERE device_id = ?`
	qNthRank       = `SELECT rank FROM fleet WHERE rollout_uid = ? ORDER BY rank LIMIT 1 OFFSET ?`
	// Recount's scans (the counting Counts did before counters).
	qFleetSize   = `SELECT count(*) FROM fleet WHERE rollout_uid = ?`
	qTargeted    = `SELECT wave, count(*) FROM fleet WHERE rollout_uid = ? GROUP BY wave`
	qStateCounts = `SELECT wave, state, count(*) FROM records WHERE rollout_uid = ? GROUP BY wave, state`
	qConflicts   = `SELECT count(*) FROM conflicts WHERE rollout_uid = ?`
	qSkipReasons = `SELECT reason, count(*) FROM records WHERE rollout_uid = ? AND state = 'skipped' GROUP BY reason`
	// Fleet members with no record that were last seen before ?2 (the
	// later of devices.last_seen and device_seen.at), by wave.
	qOffline = `SELECT f.wave, count(*) FROM fleet f JOIN devices d ON d.id = f.device_id
	WHERE f.rollout_uid = ?1 AND d.last_seen < ?2
	AND NOT EXISTS (SELECT 1 FROM device_seen s WHERE s.id = f.device_id AND s.at >= ?2)
	AND NOT EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = f.rollout_uid AND r.device_id = f.device_id)
	GROUP BY f.wave`

	// Counters (schema migration 5).
	qCounters      = `SELECT kind, wave, key, n FROM counters WHERE rollout_uid = ? AND n <> 0`
	qOfflineCursor = `SELECT before FROM offline_cursors WHERE rollout_uid = ?`
	qPutCursor     = `INSERT INTO offline_cursors (rollout_uid, before) VALUES (?1, ?2) ON CONFLICT (rollout_uid) DO UPDATE SET before = excluded.before`
	// Flags every member of ?1 by the offline rule at cursor ?2: once per
	// rollout, when it has no cursor yet.
	qFlagAll = `UPDATE fleet SET offline = coalesce(has_record = 0 AND (` + seenOf + `) < ?2, 0)
	WHERE rollout_uid = ?1 AND offline <> coalesce(has_record = 0 AND (` + seenOf + `) < ?2, 0)`
	// Sets the flag to ?4 on record-less members of ?1 whose device was
	// last seen in [?2, ?3): what moving the cursor between ?2 and ?3
	// changes. Both branches are index ranges on last-seen times.
	qFlagWindow = `UPDATE fleet SET offline = ?4
	WHERE rollout_uid = ?1 AND has_record = 0 AND offline <> ?4 AND device_id IN (
		SELECT d.id FROM devices d WHERE d.last_seen >= ?2 AND d.last_seen < ?3
		AND coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0) < ?3
		UNION
		SELECT s.id FROM device_seen s JOIN devices d ON d.id = s.id WHERE s.at >= ?2 AND s.at < ?3 AND d.last_seen < ?3)`
	// A device seen at ?2 is no longer offline in rollouts whose cursor
	// is at or before ?2.
	qClearSeen = `UPDATE fleet SET offline = 0 WHERE device_id = ?1 AND offline = 1
	AND rollout_uid IN (SELECT rollout_uid FROM offline_cursors WHERE before <= ?2)`
	// Re-evaluates the device's flags after its last-seen time changed in
	// either direction (enrollment), in every rollout with a cursor.
	qReflagDevice = `UPDATE fleet SET offline = coalesce(has_record = 0 AND (` + seenOf + `) < (SELECT c.before FROM offline_cursors c WHERE c.rollout_uid = fleet.rollout_uid), 0)
	WHERE device_id = ?1 AND rollout_uid IN (SELECT rollout_uid FROM offline_cursors)`
	qLatestCursor = `SELECT max(before) FROM offline_cursors`
	qForgetCursor = `DELETE FROM offline_cursors WHERE rollout_uid = ?`
	qForgetCount  = `DELETE FROM counters WHERE rollout_uid = ?`
	qForgetState  = `DELETE FROM rollout_state WHERE rollout_uid = ?`
	qRolloutState = `SELECT selector_key, fleet_seq, cutoffs, updated_at FROM rollout_state WHERE rollout_uid = ?`
	qPutState     = `INSERT INTO rollout_state (rollout_uid, selector_key, fleet_seq, cutoffs, updated_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (rollout_uid) DO UPDATE SET selector_key = excluded.selector_key, fleet_seq = excluded.fleet_seq, cutoffs = excluded.cutoffs, updated_at = excluded.updated_at`
	qRecentFailures = `SELECT device_id, wave, reason, at FROM failures WHERE rollout_uid = ? ORDER BY at DESC, id DESC LIMIT ?`
	qWrappedKey     = `SELECT wrapped FROM wrapped_keys WHERE device_id = ? AND blob = ?`

	qEnrollKey = `SELECT kem, public_key, namespace FROM devices WHERE id = ?`
	// The highest Seq handed out: in use, or a deleted device's.
	qMaxSeq       = `SELECT max(coalesce((SELECT max(seq) FROM devices), 0), coalesce((SELECT seq FROM device_seq_floor WHERE id = 0), 0))`
	qInsertDevice = `INSERT INTO devices (` + deviceCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qReenroll     = `UPDATE devices SET type = ?, labels = ?, token_hash = ?, version = ?, security_floor = ?, last_seen = ?, seq = ? WHERE id = ?`
	qSetRunning   = `UPDATE devices SET version = ?, security_floor = ?, last_seen = max(last_seen, ?) WHERE id = ?`
	qTouchKnown   = `INSERT INTO device_seen (id, at) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET at = max(at, excluded.at)`
	qTouch        = `INSERT INTO device_seen (id, at) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1) ON CONFLICT (id) DO UPDATE SET at = max(at, excluded.at)`
	qUpsertRecord = `INSERT INTO records (` + recordCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_uid, device_id) DO UPDATE SET wave = excluded.wave, state = excluded.state, release = excluded.release, version = excluded.version, blob = excluded.blob, previous_version = excluded.previous_version, offered_at = excluded.offered_at, updated_at = excluded.updated_at, reason = excluded.reason, rollback_release = excluded.rollback_release, rollback_blob = excluded.rollback_blob, offer_boot = excluded.offer_boot`
	qPinFleet     = `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned, has_record, offline) VALUES (?, ?, ?, ?, 1, 1, 0) ON CONFLICT (rollout_uid, device_id) DO UPDATE SET wave = excluded.wave, pinned = 1, has_record = 1, offline = 0`
	// A new member is flagged offline by the rule of the rollout's cursor
	// (none: not offline); a known one keeps its flag. Only enrolled
	// devices are added: one deleted since the fleet sync read it is not
	// added back.
	qUpsertFleet = `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned, has_record, offline)
	SELECT ?1, ?2, ?3, ?4, 0, h.has, coalesce(h.has = 0 AND (SELECT max(d.last_seen, coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0)) FROM devices d WHERE d.id = ?2) < (SELECT c.before FROM offline_cursors c WHERE c.rollout_uid = ?1), 0)
	FROM (SELECT EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = ?1 AND r.device_id = ?2) AS has) h
	WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = ?2)
	ON CONFLICT (rollout_uid, device_id) DO UPDATE SET rank = excluded.rank, wave = CASE WHEN fleet.pinned = 1 THEN fleet.wave ELSE excluded.wave END`
	qDeleteFleet  = `DELETE FROM fleet WHERE rollout_uid = ? AND device_id = ?`
	qAssignWave   = `UPDATE fleet SET wave = ? WHERE rollout_uid = ? AND rank BETWEEN ? AND ? AND pinned = 0 AND wave <> ?`
	qAddConflict  = `INSERT OR IGNORE INTO conflicts (rollout_uid, device_id) VALUES (?, ?)`
	qDelConflict  = `DELETE FROM conflicts WHERE rollout_uid = ? AND device_id = ?`
	qAddFailure   = `INSERT INTO failures (rollout_uid, device_id, wave, reason, at) VALUES (?, ?, ?, ?, ?)`
	qReportSeen   = `SELECT 1 FROM reports WHERE device_id = ? AND report_id = ?`
	qAddReport    = `INSERT INTO reports (device_id, report_id, at) VALUES (?, ?, ?)`
	qExpire       = `UPDATE records SET state = 'timedOut', reason = ?, updated_at = ? WHERE rollout_uid = ? AND state = ? AND offered_at < ? AND rollback_release = '' RETURNING device_id, wave`
	qPutWrapped   = `INSERT OR REPLACE INTO wrapped_keys (device_id, blob, wrapped) VALUES (?, ?, ?)`
	qPruneReports = `DELETE FROM reports WHERE at < ?`
	qBulkDevice   = `INSERT INTO devices (` + deviceCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	// Enrollment quotas (schema migration 6). qCountEnrolled counts a new
	// device of (?1, ?2) unless ?3 (> 0) are counted already: no row
	// returned means the quota is reached.
	qCountEnrolled = `INSERT INTO enrollment_counts (namespace, enrollment, devices) VALUES (?1, ?2, 1)
	ON CONFLICT (namespace, enrollment) DO UPDATE SET devices = devices + 1 WHERE ?3 <= 0 OR devices < ?3 RETURNING devices`
	qAddEnrolled = `INSERT INTO enrollment_counts (namespace, enrollment, devices) VALUES (?1, ?2, ?3)
	ON CONFLICT (namespace, enrollment) DO UPDATE SET devices = devices + excluded.devices`
	qEnrolledThrough = `SELECT devices FROM enrollment_counts WHERE namespace = ? AND enrollment = ?`
	qTrimFailures    = `DELETE FROM failures WHERE rollout_uid = ? AND at < (SELECT at FROM failures WHERE rollout_uid = ? ORDER BY at DESC LIMIT 1 OFFSET ?)`

	// ListDevices' choice of plan (stateFew): records in state ?2 and all
	// records of rollout ?1; records in state ? in every rollout and the
	// highest Seq (about the devices).
	qStateShare = `SELECT coalesce(sum(CASE WHEN key = ?2 THEN n END), 0), coalesce(sum(n), 0) FROM counters WHERE rollout_uid = ?1 AND kind = 's'`
	qStateTotal = `SELECT coalesce(sum(n), 0), (SELECT coalesce(max(seq), 0) FROM devices) FROM counters WHERE kind = 's' AND key = ?`

	// RecordsOf: the records of the devices in the JSON array ?, each
	// found through records_device.
	qRecordsOf = `SELECT ` + recordCols + ` FROM records WHERE device_id IN (SELECT value FROM json_each(?))`

	// DeleteDevice. The counter triggers of migration 5 decrement what
	// the deleted records, fleet members and conflicts counted.
	qDeviceTenant = `SELECT namespace, enrollment, seq FROM devices WHERE id = ?`
	qDelRecordsOf = `DELETE FROM records WHERE device_id = ?`
	// fleet and conflicts are keyed (rollout_uid, device_id) with no
	// index by device: the device's rows are found by one primary-key
	// search per rollout, the rollouts by a skip scan of the same key.
	qDelFleetOf = `WITH RECURSIVE u(uid) AS (SELECT (SELECT min(rollout_uid) FROM fleet)
	UNION ALL SELECT (SELECT f.rollout_uid FROM fleet f WHERE f.rollout_uid > u.uid ORDER BY f.rollout_uid LIMIT 1) FROM u WHERE u.uid IS NOT NULL)
	DELETE FROM fleet WHERE rollout_uid IN (SELECT uid FROM u) AND device_id = ?1`
	qDelConflictsOf = `WITH RECURSIVE u(uid) AS (SELECT (SELECT min(rollout_uid) FROM conflicts)
	UNION ALL SELECT (SELECT c.rollout_uid FROM conflicts c WHERE c.rollout_uid > u.uid ORDER BY c.rollout_uid LIMIT 1) FROM u WHERE u.uid IS NOT NULL)
	DELETE FROM conflicts WHERE rollout_uid IN (SELECT uid FROM u) AND device_id = ?1`
	qDelKeysOf    = `DELETE FROM wrapped_keys WHERE device_id = ?`
	qDelReportsOf = `DELETE FROM reports WHERE device_id = ?`
	qDelSeen      = `DELETE FROM device_seen WHERE id = ?`
	qDelDevice    = `DELETE FROM devices WHERE id = ?`
	// Devices stored before migration 6 were never counted: a count
	// never goes below zero.
	qUncountEnrolled = `UPDATE enrollment_counts SET devices = devices - 1 WHERE namespace = ? AND enrollment = ? AND devices > 0`
	qDeviceExists    = `SELECT 1 FROM devices WHERE id = ?`
	qRaiseSeqFloor   = `INSERT INTO device_seq_floor (id, seq) VALUES (0, ?1) ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)`
)

type readStmts struct {
	deviceByToken, deviceByID, devicesSince, record, recordsByDev *sql.Stmt
	nthRank, fleetSize, targeted, stateCounts, conflicts, offline *sql.Stmt
	skipReasons, rolloutState, enrolledThrough                    *sql.Stmt
	recentFailures, wrappedKey, recordsOf, stateShare, stateTotal *sql.Stmt
}

type writeStmts struct {
	enrollKey, maxSeq, insertDevice, reenroll, setRunning, touch     *sql.Stmt
	touchKnown                                                       *sql.Stmt
	record, upsertRecord, pinFleet, upsertFleet, deleteFleet         *sql.Stmt
	assignWave, addConflict, delConflict, addFailure                 *sql.Stmt
	reportSeen, addReport, expire, putWrapped, pruneReports, trimFai *sql.Stmt
	deviceByID, bulkDevice, recordsByDev                             *sql.Stmt
	counters, offlineCursor, putCursor, flagAll, flagWindow          *sql.Stmt
	clearSeen, reflagDevice, putState, latestCursor                  *sql.Stmt
	countEnrolled, addEnrolled                                       *sql.Stmt
	deviceTenant, delRecordsOf, delFleetOf, delConflictsOf           *sql.Stmt
	delKeysOf, delReportsOf, delSeen, delDevice, uncountEnrolled     *sql.Stmt
	raiseSeqFloor, deviceExists                                      *sql.Stmt
}

func (s *Store) prepare(ctx context.Context) error {
	type p struct {
		db  *sql.DB
		dst **sql.Stmt
		q   string
	}
	list := []p{
		{s.r, &s.rs.deviceByToken, qDeviceByToken},
		{s.r, &s.rs.deviceByID, qDeviceByID},
		{s.r, &s.rs.devicesSince, qDevicesSince},
		{s.r, &s.rs.record, qRecord},
		{s.r, &s.rs.recordsByDev, qRecordsByDev},
		{s.r, &s.rs.nthRank, qNthRank},
		{s.r, &s.rs.fleetSize, qFleetSize},
		{s.r, &s.rs.targeted, qTargeted},
		{s.r, &s.rs.stateCounts, qStateCounts},
		{s.r, &s.rs.conflicts, qConflicts},
		{s.r, &s.rs.offline, qOffline},
		{s.r, &s.rs.skipReasons, qSkipReasons},
		{s.r, &s.rs.recentFailures, qRecentFailures},
		{s.r, &s.rs.wrappedKey, qWrappedKey},
		{s.r, &s.rs.rolloutState, qRolloutState},
		{s.r, &s.rs.enrolledThrough, qEnrolledThrough},
		{s.r, &s.rs.recordsOf, qRecordsOf},
		{s.r, &s.rs.stateShare, qStateShare},
		{s.r, &s.rs.stateTotal, qStateTotal},
		{s.w, &s.ws.enrollKey, qEnrollKey},
		{s.w, &s.ws.maxSeq, qMaxSeq},
		{s.w, &s.ws.insertDevice, qInsertDevice},
		{s.w, &s.ws.reenroll, qReenroll},
		{s.w, &s.ws.setRunning, qSetRunning},
		{s.w, &s.ws.touch, qTouch},
		{s.w, &s.ws.touchKnown, qTouchKnown},
		{s.w, &s.ws.record, qRecord},
		{s.w, &s.ws.upsertRecord, qUpsertRecord},
		{s.w, &s.ws.pinFleet, qPinFleet},
		{s.w, &s.ws.upsertFleet, qUpsertFleet},
		{s.w, &s.ws.deleteFleet, qDeleteFleet},
		{s.w, &s.ws.assignWave, qAssignWave},
		{s.w, &s.ws.addConflict, qAddConflict},
		{s.w, &s.ws.delConflict, qDelConflict},
		{s.w, &s.ws.addFailure, qAddFailure},
		{s.w, &s.ws.reportSeen, qReportSeen},
		{s.w, &s.ws.addReport, qAddReport},
		{s.w, &s.ws.expire, qExpire},
		{s.w, &s.ws.putWrapped, qPutWrapped},
		{s.w, &s.ws.pruneReports, qPruneReports},
		{s.w, &s.ws.trimFai, qTrimFailures},
		{s.w, &s.ws.deviceByID, qDeviceByID},
		{s.w, &s.ws.bulkDevice, qBulkDevice},
		{s.w, &s.ws.recordsByDev, qRecordsByDev},
		{s.w, &s.ws.counters, qCounters},
		{s.w, &s.ws.offlineCursor, qOfflineCursor},
		{s.w, &s.ws.putCursor, qPutCursor},
		{s.w, &s.ws.flagAll, qFlagAll},
		{s.w, &s.ws.flagWindow, qFlagWindow},
		{s.w, &s.ws.clearSeen, qClearSeen},
		{s.w, &s.ws.reflagDevice, qReflagDevice},
		{s.w, &s.ws.putState, qPutState},
		{s.w, &s.ws.latestCursor, qLatestCursor},
		{s.w, &s.ws.countEnrolled, qCountEnrolled},
		{s.w, &s.ws.addEnrolled, qAddEnrolled},
		{s.w, &s.ws.deviceTenant, qDeviceTenant},
		{s.w, &s.ws.deviceExists, qDeviceExists},
		{s.w, &s.ws.delRecordsOf, qDelRecordsOf},
		{s.w, &s.ws.delFleetOf, qDelFleetOf},
		{s.w, &s.ws.delConflictsOf, qDelConflictsOf},
		{s.w, &s.ws.delKeysOf, qDelKeysOf},
		{s.w, &s.ws.delReportsOf, qDelReportsOf},
		{s.w, &s.ws.delSeen, qDelSeen},
		{s.w, &s.ws.delDevice, qDelDevice},
		{s.w, &s.ws.uncountEnrolled, qUncountEnrolled},
		{s.w, &s.ws.raiseSeqFloor, qRaiseSeqFloor},
	}
	for _, x := range list {
		st, err := x.db.PrepareContext(ctx, x.q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", x.q, err)
		}
		*x.dst = st
	}
	return nil
}

func (s *Store) allStmts() []*sql.Stmt {
	r, w := &s.rs, &s.ws
	return []*sql.Stmt{
		r.deviceByToken, r.deviceByID, r.devicesSince, r.record, r.recordsByDev,
		r.nthRank, r.fleetSize, r.targeted, r.stateCounts, r.conflicts, r.offline, r.skipReasons, r.recentFailures, r.wrappedKey, r.rolloutState, r.enrolledThrough,
		r.recordsOf, r.stateShare, r.stateTotal,
		w.enrollKey, w.maxSeq, w.insertDevice, w.reenroll, w.setRunning, w.touch, w.touchKnown,
		w.record, w.upsertRecord, w.pinFleet, w.upsertFleet, w.deleteFleet,
		w.assignWave, w.addConflict, w.delConflict, w.addFailure,
		w.reportSeen, w.addReport, w.expire, w.putWrapped, w.pruneReports, w.trimFai,
		w.deviceByID, w.bulkDevice, w.recordsByDev,
		w.counters, w.offlineCursor, w.putCursor, w.flagAll, w.flagWindow, w.clearSeen, w.reflagDevice, w.putState, w.latestCursor,
		w.countEnrolled, w.addEnrolled,
		w.deviceTenant, w.delRecordsOf, w.delFleetOf, w.delConflictsOf,
		w.delKeysOf, w.delReportsOf, w.delSeen, w.delDevice, w.uncountEnrolled, w.raiseSeqFloor, w.deviceExists,
	}
}
