package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
)

const recordCols = `rollout_uid, device_id, wave, state, release, version, blob, previous_version, offered_at, updated_at, reason, rollback_release, rollback_blob, offer_boot`

// deviceRead reads a device, its last-seen merged with device_seen.
const deviceRead = `SELECT d.id, d.type, d.labels, d.kem, d.public_key, d.token_hash, d.version, d.security_floor, d.enrolled_at,
	greatest(d.last_seen, coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0)), d.seq, d.namespace, d.enrollment FROM devices d`

const (
	qLock = `SELECT pg_advisory_xact_lock($1)`
	// qDeviceExists: whether a device is still stored (record writes).
	qDeviceExists = `SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)`

	qDeviceByToken = deviceRead + ` WHERE d.token_hash = $1`
	// qDeviceByTokenToCache also says whether the device has any record,
	// which the cache keeps so check-ins of devices with none skip Records.
	qDeviceByTokenToCache = `SELECT d.id, d.type, d.labels, d.kem, d.public_key, d.token_hash, d.version, d.security_floor, d.enrolled_at,
	greatest(d.last_seen, coalesce((SELECT s.at FROM device_seen s WHERE s.id = d.id), 0)), d.seq, d.namespace, d.enrollment,
	EXISTS (SELECT 1 FROM records r WHERE r.device_id = d.id) FROM devices d WHERE d.token_hash = $1`
	qDeviceByID   = deviceRead + ` WHERE d.id = $1`
	qDevicesSince = `SELECT id, type, labels, seq, namespace FROM devices WHERE seq > $1 ORDER BY seq LIMIT $2`
	qEnrollKey    = `SELECT kem, public_key, namespace FROM devices WHERE id = $1 FOR UPDATE`
	// A new device is counted for its (namespace, enrollment) and inserted
	// only if the count was below $13 (> 0; otherwise no limit): no row
	// inserted means the quota is reached (migration 5). Seq is drawn
	// only for a device inserted.
	qInsertDevice = `WITH counted AS (
		INSERT INTO enrollment_counts AS c (namespace, enrollment, devices) VALUES ($11, $12, 1)
		ON CONFLICT (namespace, enrollment) DO UPDATE SET devices = c.devices + 1 WHERE $13::bigint <= 0 OR c.devices < $13::bigint
		RETURNING 1
	)
	INSERT INTO devices (id, type, labels, kem, public_key, token_hash, version, security_floor, enrolled_at, last_seen, seq, namespace, enrollment)
	SELECT $1::text, $2::text, $3::jsonb, $4::text, $5::bytea, $6::bytea, $7::text, $8::bigint, $9::bigint, $10::bigint, nextval('device_seq'), $11::text, $12::text
	FROM counted`
	qEnrolledThrough = `SELECT devices FROM enrollment_counts WHERE namespace = $1 AND enrollment = $2`
	qReenroll        = `UPDATE devices SET type = $2, labels = $3, token_hash = $4, version = $5, security_floor = $6, last_seen = $7, seq = nextval('device_seq') WHERE id = $1`
	qSetRunning      = `UPDATE devices SET version = $2, security_floor = $3, last_seen = greatest(last_seen, $4) WHERE id = $1`
	// Sorted, so concurrent batches lock rows in one order; unknown
	// devices are skipped.
	qTouch = `INSERT INTO device_seen (id, at)
	SELECT t.id, t.at FROM unnest($1::text[], $2::bigint[]) AS t(id, at)
	WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = t.id) ORDER BY t.id
	ON CONFLICT (id) DO UPDATE SET at = greatest(device_seen.at, excluded.at)`

	qRecord          = `SELECT ` + recordCols + ` FROM records WHERE rollout_uid = $1 AND device_id = $2`
	qRecordForUpdate = qRecord + ` FOR UPDATE`
	qRecordsByDev    = `SELECT ` + recordCols + ` FROM records WHERE device_id = $1 ORDER BY rollout_uid`
	qLockRecords     = qRecordsByDev + ` FOR UPDATE`
	qUpsertRecord    = `INSERT INTO records (` + recordCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
	ON CONFLICT (rollout_uid, device_id) DO UPDATE SET wave = excluded.wave, state = excluded.state, release = excluded.release,
	version = excluded.version, blob = excluded.blob, previous_version = excluded.previous_version, offered_at = excluded.offered_at,
	updated_at = excluded.updated_at, reason = excluded.reason, rollback_release = excluded.rollback_release,
	rollback_blob = excluded.rollback_blob, offer_boot = excluded.offer_boot`
	qPinFleet = `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned, has_record, offline) VALUES ($1, $2, $3, $4, true, true, false)
	ON CONFLICT (rollout_uid, device_id) DO UPDATE SET wave = excluded.wave, pinned = true, has_record = true, offline = false`
	qAddConflict = `INSERT INTO conflicts (rollout_uid, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	qDelConflict = `DELETE FROM conflicts WHERE rollout_uid = $1 AND device_id = $2`
	qAddFailure  = `INSERT INTO failures (rollout_uid, device_id, wave, reason, at) VALUES ($1, $2, $3, $4, $5)`
	// The report ID goes in first: a concurrent insert of the same ID
	// waits on the primary key and then inserts nothing.
	qAddReport    = `INSERT INTO reports (device_id, report_id, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	qPruneReports = `DELETE FROM reports WHERE at < $1`
	// Expired records are locked in device order (concurrent expiries of
	// one rollout then cannot deadlock), re-checked once locked (READ
	// COMMITTED re-evaluates the WHERE on the newest row version), timed
	// out and logged, in one statement. Records offered the rollback
	// release keep their state: the rollback is not timed.
	qExpire = `WITH hit AS (
		SELECT rollout_uid, device_id FROM records
		WHERE rollout_uid = $1 AND state = ANY($2) AND offered_at < $3 AND rollback_release = ''
		ORDER BY device_id FOR UPDATE
	), upd AS (
		UPDATE records r SET state = 'timedOut', reason = $4, updated_at = $5
		FROM hit WHERE r.rollout_uid = hit.rollout_uid AND r.device_id = hit.device_id
		RETURNING r.device_id, r.wave
	), logged AS (
		INSERT INTO failures (rollout_uid, device_id, wave, reason, at)
		SELECT $1, device_id, wave, $4, $5 FROM upd ORDER BY device_id
	)
	SELECT count(*) FROM upd`
	qTrimFailures   = `DELETE FROM failures WHERE rollout_uid = $1 AND at < (SELECT at FROM failures WHERE rollout_uid = $1 ORDER BY at DESC LIMIT 1 OFFSET $2)`
	qRecentFailures = `SELECT device_id, wave, reason, at FROM failures WHERE rollout_uid = $1 ORDER BY at DESC, id DESC LIMIT $2`
	qWrappedKey     = `SELECT wrapped FROM wrapped_keys WHERE device_id = $1 AND blob = $2`
	qPutWrapped     = `INSERT INTO wrapped_keys (device_id, blob, wrapped) VALUES ($1, $2, $3)
	ON CONFLICT (device_id, blob) DO UPDATE SET wrapped = excluded.wrapped`

	// A new member is flagged offline by the rule of the rollout's cursor
	// (none: not offline); a known one keeps its flags. Only enrolled
	// devices are added: one deleted since the fleet sync read it is not
	// added back (SyncFleet and DeleteDevice exclude each other through
	// offlineLock, so the check sees a deletion committed before it).
	qUpsertFleet = `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned, has_record, offline)
	SELECT $1, t.id, t.rank, t.wave, false, h.has,
		NOT h.has AND coalesce((` + seenOfT + `) < (SELECT c.before FROM offline_cursors c WHERE c.rollout_uid = $1), false)
	FROM unnest($2::text[], $3::bigint[], $4::integer[]) AS t(id, rank, wave),
	LATERAL (SELECT EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = $1 AND r.device_id = t.id) AS has) h
	WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = t.id)
	ORDER BY t.id
	ON CONFLICT (rollout_uid, device_id) DO UPDATE SET rank = excluded.rank,
	wave = CASE WHEN fleet.pinned THEN fleet.wave ELSE excluded.wave END`
	qDeleteFleet = `DELETE FROM fleet WHERE rollout_uid = $1 AND device_id = ANY($2)`
	qNthRank     = `SELECT rank FROM fleet WHERE rollout_uid = $1 ORDER BY rank LIMIT 1 OFFSET $2`
	qAssignWave  = `UPDATE fleet SET wave = $1 WHERE rollout_uid = $2 AND rank BETWEEN $3 AND $4 AND NOT pinned AND wave <> $1`

	// Recount's scans (the counting Counts did before counters).
	qFleetSize   = `SELECT count(*) FROM fleet WHERE rollout_uid = $1`
	qConflicts   = `SELECT count(*) FROM conflicts WHERE rollout_uid = $1`
	qTargeted    = `SELECT wave, count(*) FROM fleet WHERE rollout_uid = $1 GROUP BY wave`
	qStateCounts = `SELECT wave, state, count(*) FROM records WHERE rollout_uid = $1 GROUP BY wave, state`
	qSkipReasons = `SELECT reason, count(*) FROM records WHERE rollout_uid = $1 AND state = 'skipped' GROUP BY reason`
	// Fleet members with no record last seen before $2 (the later of
	// devices.last_seen and device_seen.at), by wave.
	qOffline = `SELECT f.wave, count(*) FROM fleet f JOIN devices d ON d.id = f.device_id
	WHERE f.rollout_uid = $1 AND d.last_seen < $2
	AND NOT EXISTS (SELECT 1 FROM device_seen s WHERE s.id = f.device_id AND s.at >= $2)
	AND NOT EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = f.rollout_uid AND r.device_id = f.device_id)
	GROUP BY f.wave`

	// Counters (migration 2): the shards summed, in one statement so
	// every counter comes from one snapshot.
	qCounters = `SELECT kind, wave, key, sum(n)::bigint FROM counters WHERE rollout_uid = $1
	GROUP BY kind, wave, key HAVING sum(n) <> 0`
	qOfflineCursor = `SELECT before FROM offline_cursors WHERE rollout_uid = $1`
	qPutCursor     = `INSERT INTO offline_cursors (rollout_uid, before) VALUES ($1, $2)
	ON CONFLICT (rollout_uid) DO UPDATE SET before = excluded.before`
	// Flags every member of $1 by the offline rule at cursor $2: once per
	// rollout, when it has no cursor yet.
	// has_record is read from the updated row itself, so a first record
	// written concurrently is seen (the row is rechecked once locked).
	qFlagAll = `UPDATE fleet f SET offline = NOT f.has_record AND x.old
	FROM (SELECT f2.device_id, coalesce((` + seenOfF2 + `) < $2, false) AS old
		FROM fleet f2 WHERE f2.rollout_uid = $1) x
	WHERE f.rollout_uid = $1 AND f.device_id = x.device_id AND f.offline <> (NOT f.has_record AND x.old)`
	// Sets the flag to $4 on record-less members of $1 whose device was
	// last seen in [$2, $3): what moving the cursor between $2 and $3
	// changes. Both branches are index ranges on last-seen times; the
	// conditions on f's own columns are rechecked on the newest row
	// version when a concurrent write (a first record) changed it.
	qFlagWindow = `UPDATE fleet f SET offline = $4
	FROM (SELECT d.id FROM devices d LEFT JOIN device_seen s ON s.id = d.id
		WHERE d.last_seen >= $2 AND d.last_seen < $3 AND coalesce(s.at, 0) < $3
		UNION
		SELECT s.id FROM device_seen s JOIN devices d ON d.id = s.id
		WHERE s.at >= $2 AND s.at < $3 AND d.last_seen < $3) w
	WHERE f.rollout_uid = $1 AND f.device_id = w.id AND NOT f.has_record AND f.offline <> $4`
	// Devices seen at the given times are no longer offline in rollouts
	// whose cursor is at or before that time.
	qClearSeen = `UPDATE fleet f SET offline = false
	FROM unnest($1::text[], $2::bigint[]) AS t(id, at), offline_cursors c
	WHERE f.device_id = t.id AND f.offline AND c.rollout_uid = f.rollout_uid AND c.before <= t.at`
	// Re-evaluates a device's flags after its last-seen time changed in
	// either direction (enrollment), in every rollout with a cursor.
	qReflagDevice = `UPDATE fleet f SET offline = NOT f.has_record AND coalesce((` + seenOfF + `) < c.before, false)
	FROM offline_cursors c
	WHERE f.rollout_uid = c.rollout_uid AND f.device_id = $1
	AND f.offline <> (NOT f.has_record AND coalesce((` + seenOfF + `) < c.before, false))`
	// Locks the device's last-seen row against touches until commit.
	qLockSeen     = `SELECT at FROM device_seen WHERE id = $1 FOR SHARE`
	qDelSeen      = `DELETE FROM device_seen WHERE id = $1`
	qRolloutState = `SELECT selector_key, fleet_seq, cutoffs, updated_at FROM rollout_state WHERE rollout_uid = $1`
	qPutState     = `INSERT INTO rollout_state (rollout_uid, selector_key, fleet_seq, cutoffs, updated_at) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (rollout_uid) DO UPDATE SET selector_key = excluded.selector_key, fleet_seq = excluded.fleet_seq,
	cutoffs = excluded.cutoffs, updated_at = excluded.updated_at`

	// RecordsOf: one index search (records_device) per device.
	qRecordsOf = `SELECT ` + recordCols + ` FROM records WHERE device_id = ANY($1)`

	// DeleteDevice. The device row goes first (its row lock orders the
	// deletion with enrollments of the ID), with its enrollment's count
	// (never below zero: devices stored before migration 5 were never
	// counted). The counter triggers decrement what the deleted records,
	// fleet members and conflicts counted.
	qDeleteDevice = `WITH dev AS (DELETE FROM devices WHERE id = $1 RETURNING namespace, enrollment),
	uncounted AS (UPDATE enrollment_counts c SET devices = c.devices - 1 FROM dev
		WHERE c.namespace = dev.namespace AND c.enrollment = dev.enrollment AND c.devices > 0)
	SELECT count(*) FROM dev`
	qDelRecordsOf = `DELETE FROM records WHERE device_id = $1`
	// fleet and conflicts are keyed (rollout_uid, device_id) with no index
	// by device: the device's rows are found by one primary-key search per
	// rollout, the rollouts by a skip scan of the same key (one min() index
	// probe per rollout).
	qDelFleetOf = `DELETE FROM fleet WHERE device_id = $1 AND rollout_uid = ANY (ARRAY(
		WITH RECURSIVE u(uid) AS (SELECT min(rollout_uid) FROM fleet
		UNION ALL SELECT (SELECT min(f.rollout_uid) FROM fleet f WHERE f.rollout_uid > u.uid) FROM u WHERE u.uid IS NOT NULL)
		SELECT uid FROM u WHERE uid IS NOT NULL))`
	qDelConflictsOf = `DELETE FROM conflicts WHERE device_id = $1 AND rollout_uid = ANY (ARRAY(
		WITH RECURSIVE u(uid) AS (SELECT min(rollout_uid) FROM conflicts
		UNION ALL SELECT (SELECT min(c.rollout_uid) FROM conflicts c WHERE c.rollout_uid > u.uid) FROM u WHERE u.uid IS NOT NULL)
		SELECT uid FROM u WHERE uid IS NOT NULL))`
	qDelKeysOf    = `DELETE FROM wrapped_keys WHERE device_id = $1`
	qDelReportsOf = `DELETE FROM reports WHERE device_id = $1`

	// Offline flags depend on last-seen times, written by check-ins on
	// every replica. Writers that only move last-seen times forward
	// (Touch, SetRunning; each clears the flags its new time clears) and
	// enrollments take offlineLock shared; writers that set flags from
	// last-seen times they read (Counts moving a cursor, SyncFleet adding
	// members) take it exclusive, so no last-seen write is in flight while
	// they read, and none commits unseen before they do.
	qLockOfflineShared = `SELECT pg_advisory_xact_lock_shared($1)`
)

// Last-seen of the device t.id, f.device_id, f2.device_id (NULL for a
// device never enrolled, which is never offline).
const (
	seenOfT  = `SELECT greatest(d.last_seen, coalesce(s.at, 0)) FROM devices d LEFT JOIN device_seen s ON s.id = d.id WHERE d.id = t.id`
	seenOfF  = `SELECT greatest(d.last_seen, coalesce(s.at, 0)) FROM devices d LEFT JOIN device_seen s ON s.id = d.id WHERE d.id = f.device_id`
	seenOfF2 = `SELECT greatest(d.last_seen, coalesce(s.at, 0)) FROM devices d LEFT JOIN device_seen s ON s.id = d.id WHERE d.id = f2.device_id`
)

// Advisory lock keys (one bigint space per database): enrollments share
// one; each device has its own, hashed from its ID (a collision only makes
// two devices wait for each other).
var (
	enrollLock  = lockKey("otaflow/enroll")
	offlineLock = lockKey("otaflow/offline")
)

func deviceLock(id string) int64 { return lockKey("otaflow/device\x00" + id) }

func lockKey(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64())
}

// limit maps a Go limit to SQL: negative is no limit (as in SQLite), which
// PostgreSQL spells NULL.
func limit(n int) any {
	if n < 0 {
		return nil
	}
	return n
}

// batch is a pipelined list of statements (one round trip), each named
// for errors.
type batch struct {
	b    pgx.Batch
	what []string
}

func (b *batch) queue(what, sql string, args ...any) {
	b.b.Queue(sql, args...)
	b.what = append(b.what, what)
}

// exec runs the batch in tx, discarding results.
func (b *batch) exec(ctx context.Context, tx pgx.Tx) error {
	if len(b.what) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &b.b)
	for _, what := range b.what {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("postgres: %s: %w", b.what[len(b.what)-1], err)
	}
	return nil
}
