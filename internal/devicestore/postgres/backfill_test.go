package postgres

import (
	"context"
	"io/fs"
	"reflect"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/pgtest"
)

// TestCountersBackfill: migration 2 fills the counters from the rows a
// database already holds, so Counts equals Recount from the first call.
func TestCountersBackfill(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(sub, "00001_initial.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateFS(ctx, cc, fstest.MapFS{"00001_initial.sql": {Data: b}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO devices VALUES ('d1', 't', '{}', 'x25519', '\x01', '\x01', '1', 1, 1000, 1000, 1)`,
		`INSERT INTO devices VALUES ('d2', 't', '{}', 'x25519', '\x02', '\x02', '1', 1, 1000, 5000, 2)`,
		`INSERT INTO fleet VALUES ('r1', 'd1', 1, 0, false), ('r1', 'd2', 2, 1, false), ('r1', 'd3', 3, 1, true), ('r2', 'd1', 1, 0, false)`,
		`INSERT INTO records VALUES ('r1', 'd3', 1, 'skipped', '', '', '', '', 0, 0, 'not newer', '', '', ''),
			('r1', 'd4', 0, 'offered', '', '', '', '', 0, 0, '', '', '', '')`,
		`INSERT INTO conflicts VALUES ('r1', 'd1'), ('r2', 'd1')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_ = conn.Close(ctx)
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Devices stored before migration 5 enrolled through the cluster-wide
	// Secret, and count against no quota.
	for _, id := range []string{"d1", "d2"} {
		d, err := s.Device(ctx, id)
		if err != nil || d.Namespace != "" || d.Enrollment != "" || d.Seq == 0 {
			t.Fatalf("%s stored before tenancy: %+v %v", id, d, err)
		}
	}
	if n, err := s.EnrolledThrough(ctx, "", ""); err != nil || n != 0 {
		t.Fatalf("devices stored before tenancy counted: %d %v", n, err)
	}
	for _, uid := range []string{"r1", "r2"} {
		cut := time.Unix(0, 2000)
		got, err := s.Counts(ctx, uid, cut)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Recount(ctx, uid, cut)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: counts %+v, recount %+v", uid, got, want)
		}
		if uid == "r1" && (got.FleetSize != 3 || got.Conflicts != 1 || got.Skipped["not newer"] != 1 || got.Waves[0].Offline != 1) {
			t.Fatalf("r1 counts %+v %+v", got, got.Waves[0])
		}
	}
}
