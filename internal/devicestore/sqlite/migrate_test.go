package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

// schemaOf lists the database's tables and indexes with their SQL, without
// the migration bookkeeping.
func schemaOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master
		WHERE name NOT LIKE 'sqlite_%' AND name <> ? ORDER BY type, name`, versionTable)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := openDB(path, false, "NORMAL", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// legacyFS is the goose migrations that replaced the released
// user_version ones (1..len(legacyMigrations)); later ones are new.
func legacyFS(t *testing.T) fs.FS {
	t.Helper()
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	out := fstest.MapFS{}
	for v := 1; v <= len(legacyMigrations); v++ {
		names, err := fs.Glob(sub, fmt.Sprintf("%05d_*.sql", v))
		if err != nil || len(names) != 1 {
			t.Fatalf("migration %d: %v %v", v, names, err)
		}
		b, err := fs.ReadFile(sub, names[0])
		if err != nil {
			t.Fatal(err)
		}
		out[names[0]] = &fstest.MapFile{Data: b}
	}
	return out
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMigrationsAreTheReleasedSQL: the goose migrations build exactly the
// schema the released user_version migrations built.
func TestMigrationsAreTheReleasedSQL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, cur := openRaw(t, filepath.Join(dir, "old.db")), openRaw(t, filepath.Join(dir, "new.db"))
	if err := legacyMigrate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := migrateFS(ctx, cur, legacyFS(t)); err != nil {
		t.Fatal(err)
	}
	if a, b := schemaOf(t, old), schemaOf(t, cur); !reflect.DeepEqual(a, b) {
		t.Fatalf("schemas differ:\nreleased:\n%s\ngoose:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if v := userVersion(t, cur); v != len(legacyMigrations) {
		t.Fatalf("user_version %d, want %d (so older servers accept it)", v, len(legacyMigrations))
	}
	// The released migrate, run by an older server, accepts the new
	// database as up to date and changes nothing.
	before := schemaOf(t, cur)
	if err := legacyMigrate(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if after := schemaOf(t, cur); !reflect.DeepEqual(before, after) {
		t.Fatal("the released migrate changed a goose-migrated database")
	}
}

// TestAdoptReleasedDatabase opens a database created by the released
// (pre-goose) code: its data survives, migrations 1..4 are not re-run and
// later migrations apply.
func TestAdoptReleasedDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devices.db")
	db := openRaw(t, path)
	if err := legacyMigrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	// Data as the released store wrote it.
	if _, err := db.Exec(`INSERT INTO devices (id, type, labels, kem, public_key, token_hash, version, security_floor, enrolled_at, last_seen, seq)
		VALUES ('d1', 'sensor-v1', '{"region":"eu"}', 'x25519', x'01', ?, '1.0.0', 1, 1000, 2000, 1)`, storetest.NewDevice("d1", nil).TokenHash); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO records VALUES ('r1', 'd1', 0, 'offered', 'ns/rel', '2.0.0', 'b', '1.0.0', 1000, 1000, '', '', '', 'boot-1')`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Device(ctx, "d1")
	if err != nil || d.Labels["region"] != "eu" || d.Seq != 1 || d.LastSeen.UnixNano() != 2000 {
		t.Fatalf("device after adoption: %+v %v", d, err)
	}
	// Devices stored before migration 6 enrolled through the cluster-wide
	// Secret, and count against no quota.
	if d.Namespace != "" || d.Enrollment != "" {
		t.Fatalf("device stored before tenancy: namespace %q enrollment %q", d.Namespace, d.Enrollment)
	}
	if n, err := s.EnrolledThrough(ctx, "", ""); err != nil || n != 0 {
		t.Fatalf("devices stored before tenancy counted: %d %v", n, err)
	}
	r, err := s.Record(ctx, "r1", "d1")
	if err != nil || r.State != rollout.StateOffered || r.OfferBoot != "boot-1" {
		t.Fatalf("record after adoption: %+v %v", r, err)
	}
	// Stores work as before.
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("d2", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A later migration applies on top.
	db = openRaw(t, path)
	next := fstest.MapFS{"00099_next.sql": {Data: []byte("-- +goose Up\nALTER TABLE devices ADD COLUMN note TEXT NOT NULL DEFAULT '';\n")}}
	released, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(released, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(released, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		next[e.Name()] = &fstest.MapFile{Data: b}
	}
	if err := migrateFS(ctx, db, next); err != nil {
		t.Fatal(err)
	}
	var note string
	var n int
	if err := db.QueryRow(`SELECT note, (SELECT count(*) FROM devices) FROM devices WHERE id = 'd1'`).Scan(&note, &n); err != nil || n != 2 {
		t.Fatalf("after migration 99: %d devices, %v", n, err)
	}
	if v := userVersion(t, db); v != 99 {
		t.Fatalf("user_version %d, want 99", v)
	}
	var applied []int64
	rows, err := db.Query(`SELECT version_id FROM ` + versionTable + ` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		applied = append(applied, v)
	}
	rows.Close()
	want := []int64{0} // goose's marker, every migration of this server, then 99
	for v := range int64(len(entries)) {
		want = append(want, v+1)
	}
	if want = append(want, 99); !reflect.DeepEqual(applied, want) {
		t.Fatalf("versions recorded %v", applied)
	}
	// This server does not know migration 99: it refuses the database.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this server") {
		t.Fatalf("opening a newer database: %v", err)
	}
}

// TestAdoptPartialReleasedDatabase: a database the released code left at
// an older user_version gets only the missing migrations.
func TestAdoptPartialReleasedDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devices.db")
	db := openRaw(t, path)
	for i, m := range legacyMigrations[:2] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrateFS(ctx, db, legacyFS(t)); err != nil {
		t.Fatal(err)
	}
	ref := openRaw(t, filepath.Join(t.TempDir(), "ref.db"))
	if err := legacyMigrate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if a, b := schemaOf(t, ref), schemaOf(t, db); !reflect.DeepEqual(a, b) {
		t.Fatalf("schemas differ:\nreleased:\n%s\nadopted:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// TestNewerReleasedDatabase: a user_version past the known migrations (no
// version table) is refused, as the released code did.
func TestNewerReleasedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	db := openRaw(t, path)
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	err := migrate(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "newer than this server") {
		t.Fatalf("got %v", err)
	}
}

// TestCountersBackfill: migration 5 fills the counters from the rows a
// database already holds, so Counts equals Recount from the first call.
func TestCountersBackfill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "devices.db")
	db := openRaw(t, path)
	if err := migrateFS(ctx, db, legacyFS(t)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO devices VALUES ('d1', 't', '{}', 'x25519', x'01', x'01', '1', 1, 1000, 1000, 1)`,
		`INSERT INTO devices VALUES ('d2', 't', '{}', 'x25519', x'02', x'02', '1', 1, 1000, 5000, 2)`,
		`INSERT INTO fleet VALUES ('r1', 'd1', 1, 0, 0), ('r1', 'd2', 2, 1, 0), ('r1', 'd3', 3, 1, 1), ('r2', 'd1', 1, 0, 0)`,
		`INSERT INTO records VALUES ('r1', 'd3', 1, 'skipped', '', '', '', '', 0, 0, 'not newer', '', '', ''),
			('r1', 'd4', 0, 'offered', '', '', '', '', 0, 0, '', '', '', '')`,
		`INSERT INTO conflicts VALUES ('r1', 'd1'), ('r2', 'd1')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{Synchronous: "NORMAL", DisableDeviceIndex: true}) // short test keys
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
