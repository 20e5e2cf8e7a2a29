package postgres

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
)

// TestBulkEnroll: new devices are inserted with consecutive Seq in the
// order given, known ones (and repeats) are skipped unchanged, and
// enrollment continues the sequence afterwards.
func TestBulkEnroll(t *testing.T) {
	s, _ := open(t, Options{})
	ctx := context.Background()
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("a", nil)); err != nil {
		t.Fatal(err)
	}
	var devs []devicestore.Device
	for _, id := range []string{"a", "c", "b", "c"} {
		d := storetest.NewDevice(id, map[string]string{"region": "eu"})
		if id == "a" {
			d.TokenHash = storetest.NewDevice("another", nil).TokenHash // must not apply
		}
		devs = append(devs, d)
	}
	n, err := s.BulkEnroll(ctx, devs)
	if err != nil || n != 2 {
		t.Fatalf("inserted %d, %v", n, err)
	}
	refs, err := s.DevicesSince(ctx, 0, 10)
	if err != nil || len(refs) != 3 || refs[0].ID != "a" || refs[1].ID != "c" || refs[1].Seq != 2 ||
		refs[2].ID != "b" || refs[2].Seq != 3 || refs[2].Labels["region"] != "eu" {
		t.Fatalf("devices %+v %v", refs, err)
	}
	if _, err := s.DeviceByToken(ctx, devs[0].TokenHash); err == nil {
		t.Fatal("the known device's token hash was changed")
	}
	d, err := s.DeviceByToken(ctx, devs[2].TokenHash)
	if err != nil || d.ID != "b" || !d.LastSeen.Equal(devs[2].LastSeen) || !reflect.DeepEqual(d.PublicKey, devs[2].PublicKey) {
		t.Fatalf("by token %+v %v", d, err)
	}
	e, _, err := s.Enroll(ctx, storetest.NewDevice("e", nil))
	if err != nil || e.Seq != 4 {
		t.Fatalf("enroll after bulk: %+v %v", e, err)
	}
	if n, err := s.BulkEnroll(ctx, nil); err != nil || n != 0 {
		t.Fatalf("empty batch: %d %v", n, err)
	}
	// A token hash another device holds fails the batch as a whole.
	bad := storetest.NewDevice("f", nil)
	bad.TokenHash = e.TokenHash
	if _, err := s.BulkEnroll(ctx, []devicestore.Device{storetest.NewDevice("g", nil), bad}); err == nil {
		t.Fatal("duplicate token hash accepted")
	}
	if _, err := s.Device(ctx, "g"); err == nil {
		t.Fatal("a failed batch inserted a device")
	}
	// Invalid devices are refused before anything is written.
	if _, err := s.BulkEnroll(ctx, []devicestore.Device{{ID: ""}}); err == nil {
		t.Fatal("invalid device accepted")
	}
}

// TestBulkEnrollOffline: fleet members enrolled in bulk after the
// rollout's offline cursor was set are flagged as Enroll flags them, and
// the counters agree with a recount. Fleet sync only adds enrolled
// devices; members listed before their enrollment are written here as a
// database from before that rule may hold them.
func TestBulkEnrollOffline(t *testing.T) {
	s, _ := open(t, Options{})
	ctx := context.Background()
	t0 := storetest.NewDevice("x", nil).LastSeen
	for i := range 4 {
		if _, err := s.pool.Exec(ctx, `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned) VALUES ('r1', $1, $2, 0, false)`,
			fmt.Sprintf("d%d", i), encRank(uint64(i+1)*1000)); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := t0.Add(time.Hour)
	if c, err := s.Counts(ctx, "r1", cutoff); err != nil || c.Waves[0].Offline != 0 {
		t.Fatalf("members not enrolled are not offline: %+v %v", c, err)
	}
	// d0, d1 silent since before the cutoff, d2 seen after it; d3 stays
	// unenrolled.
	var devs []devicestore.Device
	for i := range 3 {
		d := storetest.NewDevice(fmt.Sprintf("d%d", i), nil)
		if i == 2 {
			d.LastSeen = t0.Add(2 * time.Hour)
		}
		devs = append(devs, d)
	}
	if n, err := s.BulkEnroll(ctx, devs); err != nil || n != 3 {
		t.Fatalf("inserted %d, %v", n, err)
	}
	c, err := s.Counts(ctx, "r1", cutoff)
	if err != nil || c.Waves[0].Offline != 2 {
		t.Fatalf("counts %+v %v, want 2 offline", c.Waves[0], err)
	}
	rc, err := s.Recount(ctx, "r1", cutoff)
	if err != nil || !reflect.DeepEqual(c, rc) {
		t.Fatalf("counters %+v, recount %+v (%v)", c.Waves[0], rc.Waves[0], err)
	}
}
