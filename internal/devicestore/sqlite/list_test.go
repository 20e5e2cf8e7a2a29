package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

// TestListQueryPlans: every ListDevices filter is one index walk in ID
// order (no table scan, no sort), RecordsOf and DeleteDevice search
// indexes only.
func TestListQueryPlans(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	type plan struct {
		name  string
		q     string
		args  []any
		index string // the walk's index, in the plan
	}
	var cases []plan
	for _, f := range []devicestore.DeviceFilter{
		{AllNamespaces: true},
		{Namespace: "team-a"},
		{Namespace: ""},
		{AllNamespaces: true, Version: "1.0.0", Type: "sensor"},
		{AllNamespaces: true, State: rollout.StateFailed},
		{Namespace: "team-a", State: rollout.StateFailed, Version: "1"},
		{AllNamespaces: true, RolloutUID: "r"},
		{AllNamespaces: true, RolloutUID: "r", State: rollout.StateFailed},
		{Namespace: "team-a", RolloutUID: "r", State: rollout.StateFailed, Type: "x", Version: "y"},
	} {
		q, args := listQuery(f, "d0042", 500, false)
		want := "USING PRIMARY KEY (id>?)"
		switch {
		case f.RolloutUID != "":
			want = "USING PRIMARY KEY (rollout_uid=? AND device_id>?)"
		case !f.AllNamespaces:
			want = "USING INDEX devices_namespace (namespace=? AND id>?)"
		}
		cases = append(cases, plan{fmt.Sprintf("list %+v", f), q, args, want})
		if f.State == "" {
			continue
		}
		q, args = listQuery(f, "d0042", 500, true)
		cases = append(cases, plan{fmt.Sprintf("list by state %+v", f), q, args, "USING COVERING INDEX records_timeout (rollout_uid=? AND state=?)"})
	}
	cases = append(cases,
		plan{"records of", qRecordsOf, []any{`["a","b"]`}, "USING INDEX records_device (device_id=?)"},
		plan{"delete fleet", qDelFleetOf, []any{"d"}, "USING PRIMARY KEY (rollout_uid=? AND device_id=?)"},
		plan{"delete conflicts", qDelConflictsOf, []any{"d"}, "USING PRIMARY KEY (rollout_uid=? AND device_id=?)"},
		plan{"delete records", qDelRecordsOf, []any{"d"}, "USING INDEX records_device (device_id=?)"},
		plan{"max seq", qMaxSeq, nil, "devices_seq"},
	)
	tables := []string{"devices", "d", "records", "r", "fleet", "f", "conflicts", "c", "device_seen", "s"}
	for _, c := range cases {
		steps, err := s.Explain(ctx, c.q, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		joined := strings.Join(steps, "; ")
		t.Logf("%s → %s", c.name, joined)
		if !strings.Contains(joined, c.index) {
			t.Errorf("%s: plan %s does not walk %s", c.name, joined, c.index)
		}
		if strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s: plan %s sorts", c.name, joined)
		}
		for _, step := range steps {
			for _, tab := range tables {
				if strings.HasPrefix(step, "SCAN "+tab+" ") || step == "SCAN "+tab {
					t.Errorf("%s: plan %s scans %s", c.name, joined, tab)
				}
			}
		}
	}
}

// TestListByState: both plans of a state filter (a walk skipping other
// devices, or the matching records' devices) list the same devices, page
// by page, whatever the rollout, tenant and page size.
func TestListByState(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	states := []rollout.State{rollout.StateOffered, rollout.StateFailed, rollout.StateSucceeded}
	for i := range 40 {
		d := storetest.TenantDevice(fmt.Sprintf("d%02d", (i*17)%40), []string{"", "team-a"}[i%2], "")
		if _, _, err := s.Enroll(ctx, d); err != nil {
			t.Fatal(err)
		}
		for k, uid := range []string{"r1", "r2", "r3"} {
			if (i+k)%3 == 0 {
				continue
			}
			r := devicestore.Record{RolloutUID: uid, DeviceID: d.ID, State: states[(i*k+i/3)%3]}
			if err := s.PutRecord(ctx, r, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Records of devices never enrolled are listed by neither.
	if err := s.PutRecord(ctx, devicestore.Record{RolloutUID: "r1", DeviceID: "ghost", State: rollout.StateFailed}, nil); err != nil {
		t.Fatal(err)
	}
	list := func(f devicestore.DeviceFilter, n int, byState bool) []string {
		var out []string
		after := ""
		for {
			q, args := listQuery(f, after, n, byState)
			rows, err := s.r.QueryContext(ctx, q, args...)
			var page []string
			err = eachRow(rows, err, "list", func(row scanner) error {
				d, err := scanDevice(row)
				page = append(page, d.ID)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page...)
			if len(page) < n {
				return out
			}
			after = page[len(page)-1]
		}
	}
	compared := 0
	for _, st := range states {
		for _, uid := range []string{"", "r1", "r2", "r3", "r9"} {
			for _, f := range []devicestore.DeviceFilter{
				{AllNamespaces: true, RolloutUID: uid, State: st},
				{Namespace: "team-a", RolloutUID: uid, State: st},
				{Namespace: "", RolloutUID: uid, State: st, Type: "sensor-v1", Version: "1.0.0"},
			} {
				for _, n := range []int{1, 3, 100} {
					walk, byState := list(f, n, false), list(f, n, true)
					if !slices.Equal(walk, byState) {
						t.Fatalf("%+v by %d:\nwalk     %v\nby state %v", f, n, walk, byState)
					}
					if len(walk) > 0 {
						compared++
					}
				}
			}
		}
	}
	if compared < 50 {
		t.Fatalf("only %d comparisons listed devices", compared)
	}
}
