package storeopen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore/postgres"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestParse(t *testing.T) {
	tests := []struct {
		dsn     string
		want    target
		wantErr string // substring; "" for success
	}{
		{dsn: "sqlite:///var/lib/otaflow/devices.db", want: target{kind: kindSQLite, path: "/var/lib/otaflow/devices.db"}},
		{dsn: "sqlite:///d.db?synchronous=normal", want: target{kind: kindSQLite, path: "/d.db", sqlite: sqlite.Options{Synchronous: "NORMAL"}}},
		{dsn: "sqlite://data/devices.db?synchronous=EXTRA", want: target{kind: kindSQLite, path: "data/devices.db", sqlite: sqlite.Options{Synchronous: "EXTRA"}}},
		{dsn: "sqlite://", wantErr: "needs a file path"},
		{dsn: "sqlite:///var/lib/", wantErr: "needs a file path"},
		{dsn: "sqlite:relative.db", wantErr: "needs a file path"},
		{dsn: "sqlite:///d.db?synchronous=OFF", wantErr: `synchronous="OFF"`},
		{dsn: "sqlite:///d.db?synchronous=FULL&synchronous=NORMAL", wantErr: "more than once"},
		{dsn: "sqlite:///d.db?journal=wal", wantErr: `unknown sqlite parameter "journal"`},
		{dsn: "sqlite://me:pw@/d.db", wantErr: "no user or password"},

		{dsn: "postgres://u@db:5432/otaflow?sslmode=disable", want: target{kind: kindPostgres, pgDSN: "postgres://u@db:5432/otaflow?sslmode=disable"}},
		{dsn: "postgresql://u@db/otaflow?pool_max_conns=20&statement_timeout=250ms",
			want: target{kind: kindPostgres, pgDSN: "postgresql://u@db/otaflow?pool_max_conns=20", postgres: postgres.Options{StatementTimeout: 250 * time.Millisecond}}},
		{dsn: "postgres://u@db/otaflow?statement_timeout=1500", want: target{kind: kindPostgres, pgDSN: "postgres://u@db/otaflow", postgres: postgres.Options{StatementTimeout: 1500 * time.Millisecond}}},
		{dsn: "postgres://u@db/otaflow?statement_timeout=0", want: target{kind: kindPostgres, pgDSN: "postgres://u@db/otaflow", postgres: postgres.Options{StatementTimeout: -1}}},
		{dsn: "postgres://u@db/otaflow?statement_timeout=soon", wantErr: `statement_timeout="soon"`},
		{dsn: "postgres://u@db/otaflow?statement_timeout=-5s", wantErr: "negative"},
		{dsn: "postgres://u@db/otaflow?statement_timeout=10us", wantErr: "1ms resolution"},
		{dsn: "postgres://u@db/otaflow?statement_timeout=1s&statement_timeout=2s", wantErr: "more than once"},
		{dsn: "postgres://u@db/otaflow?pool_max_conns=zero", wantErr: "pool_max_conns"},
		{dsn: "postgres://u@db/otaflow?pool_max_conns=0", wantErr: "pool_max_conns"},
		{dsn: "postgres://u:s3cret@db/otaflow?sslmode=bogus", wantErr: "sslmode"},

		{dsn: "", wantErr: "empty"},
		{dsn: "/var/lib/otaflow/devices.db", wantErr: "no scheme"},
		{dsn: "mysql://u@db/otaflow", wantErr: `unsupported scheme "mysql"`},
		{dsn: "host=db user=u dbname=otaflow", wantErr: "no scheme"},
		{dsn: "postgres://u:s3cret@db:port/otaflow", wantErr: "not a URL"},
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			got, err := parse(tc.dsn)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error quotes the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestOpen opens a working store of each kind.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	for name, dsn := range map[string]string{
		"sqlite":   "sqlite://" + filepath.Join(t.TempDir(), "sub", "devices.db") + "?synchronous=NORMAL",
		"postgres": pgtest.Start(t) + "&pool_max_conns=3&statement_timeout=2s",
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, _, err := s.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
				t.Fatal(err)
			}
			if d, err := s.Device(ctx, "d1"); err != nil || d.ID != "d1" {
				t.Fatalf("device %+v %v", d, err)
			}
		})
	}
	if _, err := Open(ctx, "ftp://x/y"); err == nil {
		t.Fatal("ftp store opened")
	}
}
