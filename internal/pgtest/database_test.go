package pgtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCreateDatabase: a database made outside a test is usable, lives
// until dropped, and names are checked.
func TestCreateDatabase(t *testing.T) {
	if shared.srv == nil {
		t.Fatal(shared.err)
	}
	ctx := context.Background()
	dsn, err := shared.srv.CreateDatabase(ctx, "bench_x")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "bench_x" {
		t.Fatalf("database %q %v", db, err)
	}
	if _, err := shared.srv.CreateDatabase(ctx, "bench_x"); err == nil {
		t.Fatal("created bench_x twice")
	}
	// Drop closes connections still open.
	if err := shared.srv.DropDatabase(ctx, "bench_x"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("dropped database still accepts connections")
	}
	for _, name := range []string{"", "Bench", "x; DROP DATABASE postgres", "postgres", "template1", strings.Repeat("a", 64)} {
		if _, err := shared.srv.CreateDatabase(ctx, name); err == nil {
			t.Errorf("created %q", name)
		}
		if err := shared.srv.DropDatabase(ctx, name); err == nil {
			t.Errorf("dropped %q", name)
		}
	}
}

// TestPID: PID is the postmaster's, the parent of the backends.
func TestPID(t *testing.T) {
	if shared.srv == nil {
		t.Fatal(shared.err)
	}
	pid := shared.srv.PID()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		t.Fatalf("pid %d: comm %q %v", pid, comm, err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, Start(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", backend))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid …
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 2 || f[1] != strconv.Itoa(pid) {
		t.Fatalf("backend %d: parent %v, want %d", backend, f[1:2], pid)
	}
}
