package sqlite

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func TestConformanceWithoutIndex(t *testing.T) {
	// The three store variants run side by side (each its own file).
	t.Parallel()
	storetest.Run(t, func(t *testing.T) devicestore.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "devices.db"), Options{Synchronous: "NORMAL", DisableDeviceIndex: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestIndexMatchesDatabase: after every kind of device write, in both
// commit modes, the index answers exactly what SQLite holds, and an index
// loaded from the file at the next Open does too.
func TestIndexMatchesDatabase(t *testing.T) {
	for _, group := range []bool{true, false} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "devices.db")
			s, err := Open(ctx, path, Options{Synchronous: "NORMAL", DisableGroupCommit: !group})
			if err != nil {
				t.Fatal(err)
			}
			var devs []devicestore.Device
			for i := range 6 {
				d := storetest.NewDevice(fmt.Sprint("d", i), map[string]string{"region": []string{"eu", "us"}[i%2]})
				if d.Namespace = []string{"", "ns-a", "ns-b"}[i%3]; d.Namespace != "" {
					d.Enrollment = []string{"e1", "e2"}[i%2]
				}
				devs = append(devs, d)
			}
			for _, d := range devs[:3] {
				if _, _, err := s.Enroll(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := s.BulkEnroll(ctx, devs[2:]); err != nil || n != 3 {
				t.Fatalf("bulk: %d %v", n, err)
			}
			re := storetest.NewDevice("d1", map[string]string{"region": "apac"})
			re.TokenHash = storetest.NewDevice("rotated", nil).TokenHash
			re.Namespace, re.Enrollment = devs[1].Namespace, "e-other" // keeps its first enrollment
			if _, _, err := s.Enroll(ctx, re); err != nil {
				t.Fatal(err)
			}
			re.Enrollment = devs[1].Enrollment
			devs[1] = re
			if err := s.SetRunning(ctx, "d2", "3.0.0", 9, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := s.Touch(ctx, map[string]time.Time{"d3": time.Now().Add(time.Hour), "nobody": time.Now()}); err != nil {
				t.Fatal(err)
			}
			// d5, touched, is deleted: it leaves the index and its
			// last-seen row goes with it.
			if err := s.Touch(ctx, map[string]time.Time{"d5": time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteDevice(ctx, "d5"); err != nil {
				t.Fatal(err)
			}
			gone := devs[5]
			devs = devs[:5]
			var orphans int
			if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM device_seen WHERE id NOT IN (SELECT id FROM devices)`).Scan(&orphans); err != nil || orphans != 0 {
				t.Fatalf("last-seen rows of unknown devices: %d %v", orphans, err)
			}
			r := devicestore.Record{RolloutUID: "r", DeviceID: "d4", State: rollout.StateOffered, Release: "ns/x", Version: "2", Blob: "b"}
			if err := s.PutRecord(ctx, r, nil); err != nil {
				t.Fatal(err)
			}
			check := func(s *Store) {
				t.Helper()
				for _, d := range devs {
					fromSQL, err := scanDevice(s.rs.deviceByToken.QueryRowContext(ctx, d.TokenHash))
					if err != nil {
						t.Fatalf("%s in SQLite: %v", d.ID, err)
					}
					got, err := s.DeviceByToken(ctx, d.TokenHash)
					if err != nil {
						t.Fatalf("%s in the index: %v", d.ID, err)
					}
					if got.ID != fromSQL.ID || got.Type != fromSQL.Type || !maps.Equal(got.Labels, fromSQL.Labels) ||
						got.Version != fromSQL.Version || got.SecurityFloor != fromSQL.SecurityFloor || got.Seq != fromSQL.Seq ||
						!got.LastSeen.Equal(fromSQL.LastSeen) || !got.EnrolledAt.Equal(fromSQL.EnrolledAt) ||
						string(got.PublicKey) != string(fromSQL.PublicKey) || got.KEM != fromSQL.KEM ||
						got.Namespace != fromSQL.Namespace || got.Enrollment != fromSQL.Enrollment ||
						got.Namespace != d.Namespace || got.Enrollment != d.Enrollment {
						t.Fatalf("index and SQLite differ\nindex  %+v\nsqlite %+v", got, fromSQL)
					}
					recs, err := s.Records(ctx, d.ID)
					if err != nil || (d.ID == "d4") != (len(recs) == 1) {
						t.Fatalf("records of %s: %v %v", d.ID, recs, err)
					}
				}
				if _, err := s.DeviceByToken(ctx, storetest.NewDevice("d1", nil).TokenHash); err != devicestore.ErrNotFound {
					t.Fatalf("rotated-away token: %v", err)
				}
				if _, err := s.DeviceByToken(ctx, gone.TokenHash); err != devicestore.ErrNotFound {
					t.Fatalf("deleted device's token: %v", err)
				}
				if _, err := s.Device(ctx, gone.ID); err != devicestore.ErrNotFound {
					t.Fatalf("deleted device: %v", err)
				}
				if st := s.IndexStats(); st.Devices != len(devs) {
					t.Fatalf("index holds %d devices, want %d", st.Devices, len(devs))
				}
			}
			check(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(ctx, path, Options{Synchronous: "NORMAL"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			check(s)
		})
	}
}

// TestRefusesUnindexableDevice: a device the index could not hold is
// refused before anything is written.
func TestRefusesUnindexableDevice(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	d := storetest.NewDevice("bad", nil)
	d.TokenHash = []byte("short")
	if _, _, err := s.Enroll(ctx, d); err == nil || !strings.Contains(err.Error(), "token hash") {
		t.Fatalf("enroll: %v", err)
	}
	if _, err := s.BulkEnroll(ctx, []devicestore.Device{storetest.NewDevice("ok", nil), d}); err == nil {
		t.Fatal("bulk enroll accepted a short token hash")
	}
	if refs, err := s.DevicesSince(ctx, 0, 10); err != nil || len(refs) != 0 {
		t.Fatalf("devices after refusals: %v %v", refs, err)
	}
}

// TestOneProcessPerDatabase: a second Open of the same file fails while
// the first is open (its index would go stale), and succeeds after Close.
func TestOneProcessPerDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devices.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, Options{}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	_ = s.Close()
}
