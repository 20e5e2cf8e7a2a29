package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/pgtest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func tokenHash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// twoReplicas opens two stores on one fresh database, as two OTA server
// replicas, and waits until both caches are live.
func twoReplicas(t *testing.T) (a, b *Store) {
	t.Helper()
	dsn := pgtest.Start(t)
	ctx := context.Background()
	for _, s := range []**Store{&a, &b} {
		st, err := Open(ctx, dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		*s = st
	}
	waitLive(t, a)
	waitLive(t, b)
	return a, b
}

func waitLive(t *testing.T, s *Store) {
	t.Helper()
	eventually(t, 10*time.Second, "cache live", func() bool { return s.cache.isLive() })
}

// eventually polls cond every 5ms until it holds, failing after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// cached reads the device by token on s until the cache holds it.
func cached(t *testing.T, s *Store, token string) devicestore.Device {
	t.Helper()
	var d devicestore.Device
	eventually(t, 5*time.Second, "device cached", func() bool {
		var err error
		if d, err = s.DeviceByToken(context.Background(), tokenHash(token)); err != nil {
			t.Fatal(err)
		}
		_, ok := s.cache.get(tokenHash(token))
		return ok
	})
	return d
}

// TestCacheReplicas: a device cached on replica A follows writes made on
// replica B within a notification's latency: token rotation, running
// version and floor.
func TestCacheReplicas(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t)
	dev := storetest.NewDevice("d1", map[string]string{"region": "eu"})
	if _, _, err := a.Enroll(ctx, dev); err != nil {
		t.Fatal(err)
	}
	got := cached(t, a, "tok-d1")
	if got.ID != "d1" || got.Version != "1.0.0" || got.Labels["region"] != "eu" {
		t.Fatalf("cached %+v", got)
	}

	// Re-enrollment on B rotates the token: A refuses the old one.
	again := storetest.NewDevice("d1", map[string]string{"region": "us"})
	again.TokenHash = tokenHash("tok-d1-rotated")
	if _, _, err := b.Enroll(ctx, again); err != nil {
		t.Fatal(err)
	}
	lat := eventually(t, 2*time.Second, "old token refused on A", func() bool {
		_, err := a.DeviceByToken(ctx, tokenHash("tok-d1"))
		return errors.Is(err, devicestore.ErrNotFound)
	})
	t.Logf("token rotation seen on the other replica after %v", lat)
	got, err := a.DeviceByToken(ctx, tokenHash("tok-d1-rotated"))
	if err != nil || got.ID != "d1" || got.Labels["region"] != "us" {
		t.Fatalf("new token on A: %+v %v", got, err)
	}
	cached(t, a, "tok-d1-rotated")

	// SetRunning on B: A shows the new version and floor.
	if err := b.SetRunning(ctx, "d1", "2.0.0", 7, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "new version on A", func() bool {
		d, err := a.DeviceByToken(ctx, tokenHash("tok-d1-rotated"))
		if err != nil {
			t.Fatal(err)
		}
		return d.Version == "2.0.0" && d.SecurityFloor == 7
	})

	// A's own writes are seen at once.
	if err := a.SetRunning(ctx, "d1", "3.0.0", 8, time.Now()); err != nil {
		t.Fatal(err)
	}
	if d, err := a.DeviceByToken(ctx, tokenHash("tok-d1-rotated")); err != nil || d.Version != "3.0.0" || d.SecurityFloor != 8 {
		t.Fatalf("own write: %+v %v", d, err)
	}

	// Any other update of the row (here an operator's) notifies too.
	cached(t, a, "tok-d1-rotated")
	if _, err := b.pool.Exec(ctx, `UPDATE devices SET version = '4.0.0' WHERE id = 'd1'`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "manual update on A", func() bool {
		d, err := a.DeviceByToken(ctx, tokenHash("tok-d1-rotated"))
		return err == nil && d.Version == "4.0.0"
	})
}

// TestCacheListenerLost: while A's listener is down the cache is bypassed
// (writes on B are seen at once), and once it has reconnected the cache
// is used and kept correct again.
func TestCacheListenerLost(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t)
	if _, _, err := a.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	cached(t, a, "tok-d1")
	pid := a.cache.pid.Load()
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	// The listener notices at once (the server closes the connection)
	// and empties the cache.
	eventually(t, 2*time.Second, "listener down or reconnected", func() bool { return a.cache.pid.Load() != pid })
	if _, ok := a.cache.get(tokenHash("tok-d1")); ok {
		t.Fatal("cache still answers after losing its listener")
	}
	// Whether or not it reconnected yet, a rotation on B is seen on A.
	again := storetest.NewDevice("d1", nil)
	again.TokenHash = tokenHash("tok-new")
	if _, _, err := b.Enroll(ctx, again); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "old token refused", func() bool {
		_, err := a.DeviceByToken(ctx, tokenHash("tok-d1"))
		return errors.Is(err, devicestore.ErrNotFound)
	})
	waitLive(t, a)
	if p := a.cache.pid.Load(); p == 0 || p == pid {
		t.Fatalf("listener pid %d after reconnecting (was %d)", p, pid)
	}
	cached(t, a, "tok-new")
	if err := b.SetRunning(ctx, "d1", "5.0.0", 3, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "new version after reconnect", func() bool {
		d, err := a.DeviceByToken(ctx, tokenHash("tok-new"))
		return err == nil && d.Version == "5.0.0"
	})
}

// TestCacheBypassedWhileDown: with the database down the listener is
// down, DeviceByToken fails with ErrUnavailable (never a stale answer),
// and after the restart the cache comes back.
func TestCacheBypassedWhileDown(t *testing.T) {
	srv, err := pgtest.NewServer() // its own: the shared one must stay up
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	s, err := Open(ctx, srv.NewDatabase(t), Options{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitLive(t, s)
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	cached(t, s, "tok-d1")
	srv.Halt()
	eventually(t, 2*time.Second, "cache bypassed", func() bool { return !s.cache.isLive() })
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = s.DeviceByToken(cctx, tokenHash("tok-d1"))
	cancel()
	if !errors.Is(err, devicestore.ErrUnavailable) {
		t.Fatalf("DeviceByToken with the database down: %v, want ErrUnavailable", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "cache live again", func() bool { return s.cache.isLive() })
	cached(t, s, "tok-d1")
}

// TestCacheBound: the cache holds at most DeviceCacheSize devices, and
// evicted ones are read again.
func TestCacheBound(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, Options{DeviceCacheSize: 2})
	waitLive(t, s)
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, _, err := s.Enroll(ctx, storetest.NewDevice(id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for _, id := range []string{"a", "b", "c", "d"} {
			d, err := s.DeviceByToken(ctx, tokenHash("tok-"+id))
			if err != nil || d.ID != id {
				t.Fatalf("%s: %+v %v", id, d, err)
			}
			if n := s.cache.len(); n > 2 {
				t.Fatalf("cache holds %d devices, bound 2", n)
			}
		}
	}
}

// TestCacheFillRace: a device read before an invalidation is not cached
// after it.
func TestCacheFillRace(t *testing.T) {
	c := newDeviceCache(10)
	c.setLive(true)
	d := storetest.NewDevice("d1", nil)
	gen, ok := c.begin()
	if !ok {
		t.Fatal("not live")
	}
	c.invalidate("d1") // a notification while the read was in flight
	c.put(gen, d, false)
	if _, ok := c.get(d.TokenHash); ok {
		t.Fatal("stale read cached")
	}
	gen, _ = c.begin()
	c.setLive(false)
	c.setLive(true) // a reconnection while the read was in flight
	c.put(gen, d, false)
	if _, ok := c.get(d.TokenHash); ok {
		t.Fatal("read from before a reconnection cached")
	}
	gen, _ = c.begin()
	c.put(gen, d, false)
	if _, ok := c.get(d.TokenHash); !ok {
		t.Fatal("not cached")
	}
}

// TestCacheKnowsDevicesWithoutRecords: a cached device that had no record
// answers Records without a query; a record written on another replica
// is seen on this one within the notification's delay, and one written
// here at once.
func TestCacheKnowsDevicesWithoutRecords(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t)
	for _, id := range []string{"d1", "d2"} {
		if _, _, err := a.Enroll(ctx, storetest.NewDevice(id, nil)); err != nil {
			t.Fatal(err)
		}
		cached(t, a, "tok-"+id)
		if !a.cache.hasNoRecords(id) {
			t.Fatalf("%s: cached without knowing it has no record", id)
		}
	}
	rec := func(dev string) devicestore.Record {
		return devicestore.Record{RolloutUID: "ro-1", DeviceID: dev, State: rollout.StateOffered, Release: "ns/fw", Version: "2.0.0",
			Blob: "b", OfferedAt: time.Now(), UpdatedAt: time.Now()}
	}
	// On B: A's Records finds it once the insert's notification arrives.
	if err := b.PutRecord(ctx, rec("d1"), nil); err != nil {
		t.Fatal(err)
	}
	lat := eventually(t, 2*time.Second, "record written on B seen on A", func() bool {
		recs, err := a.Records(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		return len(recs) == 1
	})
	t.Logf("a record written on the other replica seen after %v", lat)
	// Cached again, the device is known to have records.
	cached(t, a, "tok-d1")
	if a.cache.hasNoRecords("d1") {
		t.Fatal("d1 cached as having no record")
	}
	// On A itself: seen at once.
	if err := a.UpdateRecords(ctx, "d2", func([]devicestore.Record) ([]devicestore.RecordWrite, error) {
		return []devicestore.RecordWrite{{Record: rec("d2")}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if recs, err := a.Records(ctx, "d2"); err != nil || len(recs) != 1 {
		t.Fatalf("own write: %v records, %v", len(recs), err)
	}
}

// TestCacheDeleteReplicas: a device deleted on replica B stops resolving
// on replica A, which had it cached (as having no record), within a
// notification's latency; enrolled again on B with a record, A resolves
// its new token and reads its record.
func TestCacheDeleteReplicas(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t)
	if _, _, err := a.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	cached(t, a, "tok-d1")
	if !a.cache.hasNoRecords("d1") {
		t.Fatal("cached without knowing it has no record")
	}
	if err := b.DeleteDevice(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	lag := eventually(t, 5*time.Second, "deleted device evicted on the other replica", func() bool {
		_, err := a.DeviceByToken(ctx, tokenHash("tok-d1"))
		if err != nil && !errors.Is(err, devicestore.ErrNotFound) {
			t.Fatal(err)
		}
		return errors.Is(err, devicestore.ErrNotFound)
	})
	t.Logf("evicted after %v", lag)
	if a.cache.hasNoRecords("d1") {
		t.Fatal("the deleted device is still known to have no record")
	}
	if _, err := a.Device(ctx, "d1"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("by ID on the other replica: %v", err)
	}
	again := storetest.NewDevice("d1", nil)
	again.TokenHash = tokenHash("tok-d1-again")
	if _, created, err := b.Enroll(ctx, again); err != nil || !created {
		t.Fatalf("enrolled again: created=%v %v", created, err)
	}
	if err := b.PutRecord(ctx, devicestore.Record{RolloutUID: "r", DeviceID: "d1", State: rollout.StateOffered}, nil); err != nil {
		t.Fatal(err)
	}
	if d := cached(t, a, "tok-d1-again"); d.ID != "d1" {
		t.Fatalf("new token resolves to %+v", d)
	}
	if recs, err := a.Records(ctx, "d1"); err != nil || len(recs) != 1 {
		t.Fatalf("records on the other replica: %+v %v", recs, err)
	}
	if recs, err := a.RecordsOf(ctx, []string{"d1"}); err != nil || len(recs["d1"]) != 1 {
		t.Fatalf("RecordsOf on the other replica: %+v %v", recs, err)
	}
}
