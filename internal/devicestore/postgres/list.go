package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// listQuery builds ListDevices' query: a walk of devices in the byte
// order of their IDs from after (devices_list, or devices_tenant_list
// within one tenant; migration 6), stopped by LIMIT, with the rollout and
// state filters as EXISTS probes of records by primary key or
// records_device.
func listQuery(f devicestore.DeviceFilter, after string, limit int) (string, []any) {
	var q strings.Builder
	args := []any{after}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	q.WriteString(deviceRead + ` WHERE d.id COLLATE "C" > $1`)
	if !f.AllNamespaces {
		q.WriteString(` AND d.namespace = ` + arg(f.Namespace))
	}
	if f.Version != "" {
		q.WriteString(` AND d.version = ` + arg(f.Version))
	}
	if f.Type != "" {
		q.WriteString(` AND d.type = ` + arg(f.Type))
	}
	switch {
	case f.RolloutUID != "" && f.State != "":
		q.WriteString(` AND EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = ` + arg(f.RolloutUID) + ` AND r.device_id = d.id AND r.state = ` + arg(string(f.State)) + `)`)
	case f.RolloutUID != "":
		q.WriteString(` AND EXISTS (SELECT 1 FROM records r WHERE r.rollout_uid = ` + arg(f.RolloutUID) + ` AND r.device_id = d.id)`)
	case f.State != "":
		q.WriteString(` AND EXISTS (SELECT 1 FROM records r WHERE r.device_id = d.id AND r.state = ` + arg(string(f.State)) + `)`)
	}
	q.WriteString(` ORDER BY d.id COLLATE "C" LIMIT ` + arg(limit))
	return q.String(), args
}

// ListDevices implements devicestore.Store with one indexed walk (see
// listQuery).
func (s *Store) ListDevices(ctx context.Context, f devicestore.DeviceFilter, after string, limit int) ([]devicestore.Device, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: list devices: limit %d, want > 0", limit)
	}
	q, args := listQuery(f, after, limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, unavailable(fmt.Errorf("postgres: list devices: %w", err))
	}
	defer rows.Close()
	out := make([]devicestore.Device, 0, min(limit, 1024))
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(fmt.Errorf("postgres: list devices: %w", err))
	}
	return out, nil
}

// RecordsOf implements devicestore.Store in one query. Devices the cache
// knows to have no record are not asked for.
func (s *Store) RecordsOf(ctx context.Context, deviceIDs []string) (map[string][]devicestore.Record, error) {
	out := map[string][]devicestore.Record{}
	ids := make([]string, 0, len(deviceIDs))
	for _, id := range deviceIDs {
		if s.cache == nil || !s.cache.hasNoRecords(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, qRecordsOf, ids)
	if err != nil {
		return nil, unavailable(fmt.Errorf("postgres: records of %d devices: %w", len(ids), err))
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out[r.DeviceID] = append(out[r.DeviceID], r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(fmt.Errorf("postgres: records of %d devices: %w", len(ids), err))
	}
	for _, recs := range out {
		slices.SortFunc(recs, func(a, b devicestore.Record) int { return strings.Compare(a.RolloutUID, b.RolloutUID) })
	}
	return out, nil
}
