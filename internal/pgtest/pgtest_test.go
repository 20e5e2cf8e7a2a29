package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// TestFreshDatabases: each Start is its own empty database on the shared
// server, usable, with fsync off, and not reachable over TCP.
func TestFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two tests share database %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatal(err)
	}
	var fsync, listen string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('listen_addresses')").Scan(&fsync, &listen); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" || listen != "" {
		t.Fatalf("fsync=%q listen_addresses=%q", fsync, listen)
	}
	connB, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer connB.Close(ctx)
	var n int
	if err := connB.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees the first's table: %d %v", n, err)
	}
}

// TestOwnServer: without Run, a test gets (and stops) a server of its own.
func TestOwnServer(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("use", func(t *testing.T) {
		conn, err := pgx.Connect(context.Background(), srv.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var user string
		if err := conn.QueryRow(context.Background(), "SELECT current_user").Scan(&user); err != nil || user != superuser {
			t.Fatalf("user %q %v", user, err)
		}
	})
	dir := srv.dir
	srv.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("server directory left behind: %v", err)
	}
}

// TestMissingBinariesFail: no server binaries is an error naming the
// install script, never a skip.
func TestMissingBinariesFail(t *testing.T) {
	t.Setenv("PGTEST_BIN_DIR", t.TempDir())
	_, err := NewServer()
	if err == nil || !strings.Contains(err.Error(), "hack/ensure-postgres.sh") {
		t.Fatalf("got %v", err)
	}
}
