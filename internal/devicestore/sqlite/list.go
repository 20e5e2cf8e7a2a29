package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// listQuery builds ListDevices' query: a walk of one index in ID order
// from after, stopped by LIMIT, so a page reads the rows it returns plus
// those the filters skip. With a rollout the walk is the rollout's
// records (primary key, device_id order), joined to their devices: only
// the rollout's devices are visited. Otherwise it walks devices, by
// devices_namespace within one tenant or by primary key across all, and
// a state filter probes each device's records (records_device).
//
// A state few records are in would make those walks skip most rows:
// byState instead collects the matching records' devices from
// records_timeout (rollout_uid, state, …), one range per rollout, and
// reads their devices in ID order (see stateFew).
func listQuery(f devicestore.DeviceFilter, after string, limit int, byState bool) (string, []any) {
	var q strings.Builder
	var args []any
	col := "d.id"
	switch {
	case byState && f.RolloutUID != "":
		q.WriteString(deviceRead + ` WHERE d.id IN (SELECT r.device_id FROM records r WHERE r.rollout_uid = ? AND r.state = ? AND +r.device_id > ?)`)
		args = append(args, f.RolloutUID, string(f.State), after)
	case byState:
		q.WriteString(`WITH RECURSIVE u(uid) AS (SELECT (SELECT min(rollout_uid) FROM records)
	UNION ALL SELECT (SELECT r.rollout_uid FROM records r WHERE r.rollout_uid > u.uid ORDER BY r.rollout_uid LIMIT 1) FROM u WHERE u.uid IS NOT NULL) `)
		q.WriteString(deviceRead + ` WHERE d.id IN (SELECT r.device_id FROM records r WHERE r.rollout_uid IN (SELECT uid FROM u) AND r.state = ? AND +r.device_id > ?)`)
		args = append(args, string(f.State), after)
	case f.RolloutUID != "":
		// CROSS JOIN keeps records the outer loop. +r.state keeps the
		// state filter off the index choice: (rollout_uid, state,
		// offered_at) would need a sort to return IDs in order.
		q.WriteString(deviceSelect + ` FROM records r CROSS JOIN devices d ON d.id = r.device_id WHERE r.rollout_uid = ? AND r.device_id > ?`)
		args = append(args, f.RolloutUID, after)
		if f.State != "" {
			q.WriteString(` AND +r.state = ?`)
			args = append(args, string(f.State))
		}
		col = "r.device_id"
	default:
		q.WriteString(deviceRead + ` WHERE d.id > ?`)
		args = append(args, after)
		if f.State != "" {
			q.WriteString(` AND EXISTS (SELECT 1 FROM records r WHERE r.device_id = d.id AND r.state = ?)`)
			args = append(args, string(f.State))
		}
	}
	if !f.AllNamespaces {
		if byState {
			q.WriteString(` AND +d.namespace = ?`) // not a walk of the tenant
		} else {
			q.WriteString(` AND d.namespace = ?`)
		}
		args = append(args, f.Namespace)
	}
	if f.Version != "" {
		q.WriteString(` AND d.version = ?`)
		args = append(args, f.Version)
	}
	if f.Type != "" {
		q.WriteString(` AND d.type = ?`)
		args = append(args, f.Type)
	}
	q.WriteString(` ORDER BY ` + col + ` LIMIT ?`)
	args = append(args, limit)
	return q.String(), args
}

// stateFew tells whether f's state is rare enough to list from the
// matching records (byState in listQuery) rather than by a walk skipping
// the others, from the counters (a few rows): m records in the state, out
// of n walked (the rollout's records, or with no rollout about the
// devices, by the highest Seq). Collecting costs about m index entries a
// page, walking limit·n/m rows: whichever is less.
func (s *Store) stateFew(ctx context.Context, f devicestore.DeviceFilter, limit int) (bool, error) {
	if f.State == "" {
		return false, nil
	}
	var m, n int64
	var err error
	if f.RolloutUID != "" {
		err = s.rs.stateShare.QueryRowContext(ctx, f.RolloutUID, string(f.State)).Scan(&m, &n)
	} else {
		err = s.rs.stateTotal.QueryRowContext(ctx, string(f.State)).Scan(&m, &n)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: list devices: records in state %s: %w", f.State, err)
	}
	return m*m < int64(limit)*n, nil
}

// ListDevices implements devicestore.Store with one indexed walk (see
// listQuery) on the read pool.
func (s *Store) ListDevices(ctx context.Context, f devicestore.DeviceFilter, after string, limit int) ([]devicestore.Device, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: list devices: limit %d, want > 0", limit)
	}
	byState, err := s.stateFew(ctx, f, limit)
	if err != nil {
		return nil, err
	}
	q, args := listQuery(f, after, limit, byState)
	rows, err := s.r.QueryContext(ctx, q, args...)
	out := make([]devicestore.Device, 0, min(limit, 1024))
	err = eachRow(rows, err, "list devices", func(row scanner) error {
		d, err := scanDevice(row)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RecordsOf implements devicestore.Store: one query, the IDs passed as a
// JSON array (no bound on their number), each looked up in
// records_device. With the device index, devices known to have no record
// are not asked for.
func (s *Store) RecordsOf(ctx context.Context, deviceIDs []string) (map[string][]devicestore.Record, error) {
	out := map[string][]devicestore.Record{}
	ids := make([]string, 0, len(deviceIDs))
	for _, id := range deviceIDs {
		if s.idx == nil || s.idx.MayHaveRecords(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	arg, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: records of %d devices: %w", len(ids), err)
	}
	rows, err := s.rs.recordsOf.QueryContext(ctx, string(arg))
	err = eachRow(rows, err, fmt.Sprintf("records of %d devices", len(ids)), func(row scanner) error {
		r, err := scanRecord(row)
		if err != nil {
			return err
		}
		out[r.DeviceID] = append(out[r.DeviceID], r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, recs := range out {
		slices.SortFunc(recs, func(a, b devicestore.Record) int { return strings.Compare(a.RolloutUID, b.RolloutUID) })
	}
	return out, nil
}
