package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// tb is what the checks below need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// ListAll pages through ListDevices with pages of at most n devices,
// checking each page is in ID order, no longer than n and continues after
// the last, and returns every device listed.
func ListAll(t tb, s devicestore.Store, f devicestore.DeviceFilter, n int) []devicestore.Device {
	t.Helper()
	ctx := context.Background()
	var all []devicestore.Device
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.ListDevices(ctx, f, after, n)
		if err != nil {
			t.Fatalf("ListDevices(%+v, %q, %d): %v", f, after, n, err)
		}
		if len(page) > n {
			t.Fatalf("ListDevices(%+v, %q, %d): %d devices", f, after, n, len(page))
		}
		for _, d := range page {
			if d.ID <= after {
				t.Fatalf("ListDevices(%+v, %q, %d): %s out of order in %v", f, after, n, d.ID, ids(page))
			}
			after = d.ID
		}
		all = append(all, page...)
		if len(page) < n {
			return all
		}
		if pages > 100_000 {
			t.Fatalf("ListDevices(%+v): no end after %d pages", f, pages)
		}
	}
}

func ids(devs []devicestore.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}

// listModel is a device as the list tests set it up.
type listModel struct {
	dev     devicestore.Device
	records map[string]rollout.State // by rollout
}

// matches is DeviceFilter's contract.
func (m listModel) matches(f devicestore.DeviceFilter) bool {
	d := m.dev
	if !f.AllNamespaces && d.Namespace != f.Namespace ||
		f.Version != "" && d.Version != f.Version || f.Type != "" && d.Type != f.Type {
		return false
	}
	if f.RolloutUID != "" {
		st, ok := m.records[f.RolloutUID]
		return ok && (f.State == "" || st == f.State)
	}
	if f.State != "" {
		return slices.Contains(slices.Collect(maps.Values(m.records)), f.State)
	}
	return true
}

// testListDevices: every DeviceFilter field alone and combined selects
// exactly the devices it describes, in ID order, each as Device reads
// it, whatever the page size; a walk may start after any string.
func testListDevices(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	namespaces := []string{"", "team-a", "team-b"}
	types := []string{"sensor-v1", "gateway"}
	versions := []string{"1.0.0", "2.0.0", "1.5.0"}
	models := map[string]*listModel{}
	// Enrolled out of ID order, so Seq order is not ID order.
	for _, i := range []int{7, 3, 11, 0, 9, 5, 1, 10, 4, 8, 2, 6} {
		id := fmt.Sprintf("dev-%02d", i)
		d := TenantDevice(id, namespaces[i%3], "")
		if d.Namespace != "" {
			d.Enrollment = "e1"
		}
		d.Type, d.Version = types[i/2%2], versions[0]
		got, created, err := s.Enroll(ctx, d)
		must(t, err)
		if !created {
			t.Fatalf("%s not created", id)
		}
		models[id] = &listModel{dev: got, records: map[string]rollout.State{}}
	}
	// Running versions as reported, last-seen times as touched.
	for i, id := range slices.Sorted(maps.Keys(models)) {
		if v := versions[i%3]; v != versions[0] {
			must(t, s.SetRunning(ctx, id, v, 1, t0.Add(time.Minute)))
		}
	}
	must(t, s.Touch(ctx, map[string]time.Time{"dev-01": t0.Add(time.Hour), "dev-04": t0.Add(2 * time.Hour)}))
	put := func(uid, id string, st rollout.State) {
		t.Helper()
		must(t, s.PutRecord(ctx, rec(uid, id, 0, st), nil))
		if m := models[id]; m != nil {
			m.records[uid] = st
		}
	}
	put("r1", "dev-02", rollout.StateOffered)
	put("r1", "dev-03", rollout.StateFailed)
	put("r1", "dev-05", rollout.StateSucceeded)
	put("r1", "dev-08", rollout.StateDownloading)
	put("r1", "dev-10", rollout.StateFailed)
	put("r2", "dev-05", rollout.StateFailed)
	put("r2", "dev-09", rollout.StateOffered)
	put("r2", "dev-03", rollout.StateSkipped)
	put("r2", "dev-06", rollout.StateSucceeded)
	// Records of an ID with no device, and fleet members with no record,
	// match nothing.
	put("r1", "dev-99-ghost", rollout.StateFailed)
	must(t, s.SyncFleet(ctx, "r1", []devicestore.FleetMember{{DeviceID: "dev-00", Rank: 1}, {DeviceID: "dev-11", Rank: 2}}, nil))
	for id := range models {
		d, err := s.Device(ctx, id)
		must(t, err)
		models[id].dev = d
	}

	all := devicestore.DeviceFilter{AllNamespaces: true}
	with := func(f devicestore.DeviceFilter, set func(*devicestore.DeviceFilter)) devicestore.DeviceFilter {
		set(&f)
		return f
	}
	filters := []devicestore.DeviceFilter{
		all,
		{Namespace: ""}, // the cluster-wide enrollment Secret's devices only
		{Namespace: "team-a"},
		{Namespace: "team-b"},
		{Namespace: "nobody"},
		with(all, func(f *devicestore.DeviceFilter) { f.Version = "2.0.0" }),
		with(all, func(f *devicestore.DeviceFilter) { f.Version = "9.9.9" }),
		with(all, func(f *devicestore.DeviceFilter) { f.Type = "gateway" }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID = "r1" }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID = "r2" }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID = "no-such-rollout" }),
		with(all, func(f *devicestore.DeviceFilter) { f.State = rollout.StateFailed }),
		with(all, func(f *devicestore.DeviceFilter) { f.State = rollout.StateSucceeded }),
		with(all, func(f *devicestore.DeviceFilter) { f.State = rollout.StateTimedOut }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID, f.State = "r1", rollout.StateFailed }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID, f.State = "r2", rollout.StateFailed }),
		with(all, func(f *devicestore.DeviceFilter) { f.RolloutUID, f.State = "r2", rollout.StateDownloading }),
		{Namespace: "team-a", Type: "sensor-v1"},
		{Namespace: "", Version: "1.0.0", Type: "gateway"},
		{Namespace: "team-b", RolloutUID: "r1"},
		{Namespace: "team-a", State: rollout.StateFailed},
		{Namespace: "", RolloutUID: "r1", State: rollout.StateFailed, Version: "1.0.0"},
		with(all, func(f *devicestore.DeviceFilter) {
			f.Type, f.Version, f.State = "sensor-v1", "1.5.0", rollout.StateFailed
		}),
		with(all, func(f *devicestore.DeviceFilter) { f.Type, f.RolloutUID = "gateway", "r2" }),
	}
	nonEmpty := 0
	for _, f := range filters {
		var want []string
		for id, m := range models {
			if m.matches(f) {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if len(want) > 0 && len(want) < len(models) {
			nonEmpty++
		}
		for _, n := range []int{1, 2, 3, 5, 100} {
			got := ListAll(t, s, f, n)
			if !slices.Equal(ids(got), want) {
				t.Fatalf("ListDevices(%+v) by %d: %v, want %v", f, n, ids(got), want)
			}
			for _, d := range got {
				sameDevice(t, "listed", d, models[d.ID].dev)
				if !d.LastSeen.Equal(models[d.ID].dev.LastSeen) || !d.EnrolledAt.Equal(models[d.ID].dev.EnrolledAt) {
					t.Fatalf("listed %s: seen %v enrolled %v, want %v %v", d.ID, d.LastSeen, d.EnrolledAt, models[d.ID].dev.LastSeen, models[d.ID].dev.EnrolledAt)
				}
			}
		}
		// A walk may start after any string, listed or not.
		for _, after := range []string{"dev-04", "dev-045", "dev-", "zzz"} {
			page, err := s.ListDevices(ctx, f, after, 100)
			must(t, err)
			var rest []string
			for _, id := range want {
				if id > after {
					rest = append(rest, id)
				}
			}
			if !slices.Equal(ids(page), rest) {
				t.Fatalf("ListDevices(%+v) after %q: %v, want %v", f, after, ids(page), rest)
			}
		}
	}
	if nonEmpty < len(filters)/2 {
		t.Fatalf("only %d of %d filters select some devices but not all", nonEmpty, len(filters))
	}
	if got := ListAll(t, s, all, 4); !slices.ContainsFunc(got, func(d devicestore.Device) bool {
		return d.ID == "dev-04" && d.LastSeen.Equal(t0.Add(2*time.Hour)) && d.Version == versions[1]
	}) {
		t.Fatal("a listed device lacks its last touch or running version")
	}
	for _, n := range []int{0, -1} {
		if _, err := s.ListDevices(ctx, all, "", n); err == nil {
			t.Fatalf("limit %d accepted", n)
		}
	}
}

// testListDevicesPaging: pages of every size cover a larger fleet exactly
// once, devices enrolled and re-enrolled between pages included.
func testListDevicesPaging(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var want []string
	for i := range 97 {
		id := fmt.Sprintf("p%03d", (i*37)%97) // enrolled out of ID order
		_, _, err := s.Enroll(ctx, TenantDevice(id, []string{"", "ns-x"}[i%2], ""))
		must(t, err)
		want = append(want, id)
	}
	slices.Sort(want)
	all := devicestore.DeviceFilter{AllNamespaces: true}
	for _, n := range []int{1, 7, 50, 96, 97, 98, 1000} {
		if got := ids(ListAll(t, s, all, n)); !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %d devices %v, want %d", n, len(got), got, len(want))
		}
	}
	// A walk sees devices added behind it only if their ID is ahead.
	first, err := s.ListDevices(ctx, all, "", 10)
	must(t, err)
	last := first[len(first)-1].ID
	_, _, err = s.Enroll(ctx, NewDevice("p000-new", nil)) // behind
	must(t, err)
	_, _, err = s.Enroll(ctx, NewDevice("p500", nil)) // ahead
	must(t, err)
	_, _, err = s.Enroll(ctx, NewDevice(first[0].ID, nil)) // re-enrolled: listed where it was
	must(t, err)
	rest, err := s.ListDevices(ctx, all, last, 1000)
	must(t, err)
	var wantRest []string
	for _, id := range append(want, "p500") {
		if id > last {
			wantRest = append(wantRest, id)
		}
	}
	if !slices.Equal(ids(rest), wantRest) {
		t.Fatalf("rest of the walk: %v, want %v", ids(rest), wantRest)
	}
}

// testRecordsOf: RecordsOf answers, for several devices at once, what
// Records answers for each; devices with no record (or unknown) are
// absent; a device's first record shows at once.
func testRecordsOf(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	for _, id := range []string{"d1", "d2", "d3"} {
		_, _, err := s.Enroll(ctx, NewDevice(id, nil))
		must(t, err)
		// A store with a device cache now knows d3 has no record.
		_, err = s.DeviceByToken(ctx, hash("tok-"+id))
		must(t, err)
	}
	must(t, s.PutRecord(ctx, rec("r2", "d1", 1, rollout.StateFailed), nil))
	must(t, s.PutRecord(ctx, rec("r1", "d1", 0, rollout.StateOffered), nil))
	must(t, s.PutRecord(ctx, rec("r3", "d1", 2, rollout.StateSkipped), nil))
	must(t, s.PutRecord(ctx, rec("r1", "d2", 0, rollout.StateSucceeded), nil))
	must(t, s.PutRecord(ctx, rec("r1", "orphan", 0, rollout.StateOffered), nil)) // no device
	check := func(ids []string) {
		t.Helper()
		got, err := s.RecordsOf(ctx, ids)
		must(t, err)
		want := map[string][]devicestore.Record{}
		for _, id := range ids {
			recs, err := s.Records(ctx, id)
			must(t, err)
			if len(recs) > 0 {
				slices.SortFunc(recs, func(a, b devicestore.Record) int { return strings.Compare(a.RolloutUID, b.RolloutUID) })
				want[id] = recs
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("RecordsOf(%v):\n got %+v\nwant %+v", ids, got, want)
		}
	}
	check([]string{"d1", "d2", "d3", "unknown", "orphan", "d1"})
	got, err := s.RecordsOf(ctx, []string{"d1", "d2", "d3", "unknown"})
	must(t, err)
	if len(got) != 2 || len(got["d1"]) != 3 || len(got["d2"]) != 1 || got["d1"][0].RolloutUID != "r1" || got["d1"][2].State != rollout.StateSkipped {
		t.Fatalf("RecordsOf: %+v", got)
	}
	if _, ok := got["d3"]; ok {
		t.Fatal("a device without records is present")
	}
	if got, err := s.RecordsOf(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("RecordsOf(nil): %+v %v", got, err)
	}
	// d3's first record.
	must(t, s.PutRecord(ctx, rec("r1", "d3", 0, rollout.StateOffered), nil))
	check([]string{"d3"})
	if got, _ := s.RecordsOf(ctx, []string{"d3"}); len(got["d3"]) != 1 {
		t.Fatalf("d3's first record: %+v", got)
	}
	// A page's worth of IDs, most unknown.
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprintf("x%04d", i))
	}
	check(append(many, "d2", "d1"))
}

func noDevice(t tb, s devicestore.Store, d devicestore.Device) {
	t.Helper()
	ctx := context.Background()
	if got, err := s.DeviceByToken(ctx, d.TokenHash); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("deleted %s by token: %+v %v", d.ID, got, err)
	}
	if got, err := s.Device(ctx, d.ID); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("deleted %s by ID: %+v %v", d.ID, got, err)
	}
	if recs, err := s.Records(ctx, d.ID); err != nil || len(recs) != 0 {
		t.Fatalf("deleted %s has records %+v %v", d.ID, recs, err)
	}
	if recs, err := s.RecordsOf(ctx, []string{d.ID}); err != nil || len(recs) != 0 {
		t.Fatalf("deleted %s has records %+v %v", d.ID, recs, err)
	}
}
