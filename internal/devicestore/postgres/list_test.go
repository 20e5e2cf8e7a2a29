package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func explain(t *testing.T, conn *pgxpool.Conn, q string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "EXPLAIN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	return strings.Join(lines, "\n")
}

// TestListQueryPlans: every ListDevices filter, RecordsOf and
// DeleteDevice's statements can be answered from indexes (with sequential
// scans disabled the planner still picks one when no index fits, as in
// TestQueryPlans), on a fleet with statistics; a walk without rollout or
// state filter has an index in ID order (it needs no sort even when
// sorting is disabled). With those filters the planner chooses by its
// estimates between that walk and the matching records (then sorted by
// ID); at a million devices both kinds of plan answer a page in
// milliseconds.
func TestListQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, Options{})
	const n = 5000
	var devs []devicestore.Device
	for i := range n {
		d := storetest.NewDevice(fmt.Sprintf("d%05d", (i*7919)%n), nil)
		d.TokenHash = fmt.Appendf(nil, "%032d", i)
		if i%10 == 0 {
			d.Namespace = "team-a"
		}
		devs = append(devs, d)
	}
	if _, err := s.BulkEnroll(ctx, devs); err != nil {
		t.Fatal(err)
	}
	// Rollout "big" holds the whole fleet, half of it with records;
	// "small" a few devices.
	for _, q := range []string{
		`INSERT INTO records (rollout_uid, device_id, wave, state, release, version, blob, previous_version, offered_at, updated_at, reason, rollback_release, rollback_blob)
		SELECT 'big', id, 0, CASE WHEN seq % 100 = 0 THEN 'failed' ELSE 'succeeded' END, 'ns/x', '2', 'b', '1', 1, 1, '', '', '' FROM devices WHERE seq % 2 = 0`,
		`INSERT INTO records (rollout_uid, device_id, wave, state, release, version, blob, previous_version, offered_at, updated_at, reason, rollback_release, rollback_blob)
		SELECT 'small', id, 0, 'offered', 'ns/x', '2', 'b', '1', 1, 1, '', '', '' FROM devices WHERE seq % 500 = 0`,
		`INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned) SELECT 'big', id, seq, seq % 3, false FROM devices`,
		`INSERT INTO conflicts (rollout_uid, device_id) SELECT 'big', id FROM devices WHERE seq % 7 = 0`,
		`ANALYZE`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	set := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	set("SET enable_seqscan = off")
	defer set("RESET ALL")
	for _, f := range []devicestore.DeviceFilter{
		{AllNamespaces: true},
		{Namespace: "team-a"},
		{Namespace: ""},
		{AllNamespaces: true, Type: "sensor-v1"},
		{AllNamespaces: true, State: rollout.StateFailed},
		{AllNamespaces: true, State: rollout.StateSucceeded},
		{AllNamespaces: true, RolloutUID: "big"},
		{AllNamespaces: true, RolloutUID: "big", State: rollout.StateFailed},
		{AllNamespaces: true, RolloutUID: "small"},
		{Namespace: "team-a", RolloutUID: "big", State: rollout.StateSucceeded},
	} {
		q, args := listQuery(f, "d00042", 500)
		plan := explain(t, conn, q, args...)
		t.Logf("%+v:\n%s", f, plan)
		if strings.Contains(plan, "Seq Scan on devices") || strings.Contains(plan, "Seq Scan on records") {
			t.Errorf("%+v scans a table:\n%s", f, plan)
		}
		if f.RolloutUID != "" || f.State != "" {
			continue
		}
		index := "devices_list"
		if !f.AllNamespaces {
			index = "devices_tenant_list"
		}
		set("SET enable_sort = off")
		plan = explain(t, conn, q, args...)
		set("RESET enable_sort")
		if !strings.Contains(plan, "Index Scan using "+index) || strings.Contains(plan, "Sort") {
			t.Errorf("%+v does not walk %s in order:\n%s", f, index, plan)
		}
	}
	for _, c := range []struct {
		name, q string
		args    []any
		cond    string // an index condition of the plan
	}{
		{"records of", qRecordsOf, []any{[]string{"a", "b"}}, "Index Cond: (device_id = ANY ("},
		{"delete device", qDeleteDevice, []any{"d"}, "Index Cond: (id = 'd'::text)"},
		{"delete records", qDelRecordsOf, []any{"d"}, "Index Cond: (device_id = 'd'::text)"},
		{"delete fleet", qDelFleetOf, []any{"d"}, "Index Cond: ((rollout_uid = ANY ($5)) AND (device_id = 'd'::text))"},
		{"delete conflicts", qDelConflictsOf, []any{"d"}, "Index Cond: ((rollout_uid = ANY ($5)) AND (device_id = 'd'::text))"},
		{"upsert fleet", qUpsertFleet, []any{"r", []string{"a"}, []int64{1}, []int32{0}}, "Index Cond: (id = t.id)"},
	} {
		plan := explain(t, conn, c.q, c.args...)
		t.Logf("%s:\n%s", c.name, plan)
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, c.cond) {
			t.Errorf("%s: a scan, or no %s:\n%s", c.name, c.cond, plan)
		}
	}
}
