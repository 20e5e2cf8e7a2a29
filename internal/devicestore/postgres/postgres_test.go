package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/pgtest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// open opens a store on a fresh database.
func open(t testing.TB, o Options) (*Store, string) {
	t.Helper()
	dsn := pgtest.Start(t)
	s, err := Open(context.Background(), dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dsn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) devicestore.Store { s, _ := open(t, Options{}); return s })
}

// TestRoundTrip: what is written is read back exactly, as from the SQLite
// store: nanosecond times in UTC, the zero time, binary keys, empty labels.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, Options{})
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))
	d := storetest.NewDevice("d1", nil)
	d.PublicKey = []byte{0, 1, 2, 0xff, 0}
	d.EnrolledAt, d.LastSeen = at, time.Time{}
	got, created, err := s.Enroll(ctx, d)
	if err != nil || !created {
		t.Fatalf("enroll: %v %v", created, err)
	}
	if !got.EnrolledAt.Equal(at) || got.EnrolledAt.Location() != time.UTC || !got.LastSeen.IsZero() ||
		!bytes.Equal(got.PublicKey, d.PublicKey) || got.Labels == nil || len(got.Labels) != 0 {
		t.Fatalf("enrolled %+v", got)
	}
	byToken, err := s.DeviceByToken(ctx, d.TokenHash)
	if err != nil || !reflect.DeepEqual(byToken, got) {
		t.Fatalf("by token %+v %v, want %+v", byToken, err, got)
	}
	r := devicestore.Record{RolloutUID: "r", DeviceID: "d1", Wave: 3, State: rollout.StateInstalling, OfferedAt: at, UpdatedAt: at.Add(time.Nanosecond),
		Release: "ns/x", Version: "2", Blob: "b", PreviousVersion: "1", Reason: "why", RollbackRelease: "ns/y", RollbackBlob: "c", OfferBoot: "boot"}
	if err := s.PutRecord(ctx, r, &devicestore.Failure{DeviceID: "d1", Wave: 3, Reason: "f", At: at}); err != nil {
		t.Fatal(err)
	}
	gotR, err := s.Record(ctx, "r", "d1")
	want := r
	want.OfferedAt, want.UpdatedAt = r.OfferedAt.UTC(), r.UpdatedAt.UTC()
	if err != nil || !reflect.DeepEqual(gotR, want) {
		t.Fatalf("record %+v %v, want %+v", gotR, err, want)
	}
	f, err := s.RecentFailures(ctx, "r", 1)
	if err != nil || len(f) != 1 || !f[0].At.Equal(at) || f[0].Wave != 3 {
		t.Fatalf("failures %+v %v", f, err)
	}
	// Ranks use the whole uint64 range, in order.
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := s.Enroll(ctx, storetest.NewDevice(id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SyncFleet(ctx, "r2", []devicestore.FleetMember{{DeviceID: "a", Rank: math.MaxUint64}, {DeviceID: "b", Rank: 0}, {DeviceID: "c", Rank: 1 << 63}}, nil); err != nil {
		t.Fatal(err)
	}
	for n, want := range []uint64{0, 1 << 63, math.MaxUint64} {
		if got, ok, err := s.NthRank(ctx, "r2", int64(n+1)); err != nil || !ok || got != want {
			t.Fatalf("rank %d: %d %v %v, want %d", n+1, got, ok, err, want)
		}
	}
}

// TestSyncFleetBatch: a member listed twice keeps its last entry, and one
// both upserted and removed is removed (as sequential writes would do).
func TestSyncFleetBatch(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, Options{})
	for _, id := range []string{"a", "b"} {
		if _, _, err := s.Enroll(ctx, storetest.NewDevice(id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	err := s.SyncFleet(ctx, "r", []devicestore.FleetMember{{DeviceID: "a", Rank: 5, Wave: 0}, {DeviceID: "b", Rank: 7}, {DeviceID: "a", Rank: 9, Wave: 2}}, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Counts(ctx, "r", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.FleetSize != 1 || c.Waves[2] == nil || c.Waves[2].Targeted != 1 {
		t.Fatalf("counts %+v", c)
	}
	if r, ok, _ := s.NthRank(ctx, "r", 1); !ok || r != 9 {
		t.Fatalf("rank %d", r)
	}
}

func TestStatementTimeout(t *testing.T) {
	ctx := context.Background()
	show := func(s *Store) string {
		t.Helper()
		var v string
		if err := s.pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, dsn := open(t, Options{})
	if got := show(s); got != "5s" {
		t.Fatalf("default statement_timeout %q, want 5s", got)
	}
	fromDSN, err := Open(ctx, dsn+"&statement_timeout=1500", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fromDSN.Close()
	if got := show(fromDSN); got != "1500ms" {
		t.Fatalf("statement_timeout from the DSN %q, want 1500ms", got)
	}
	short, err := Open(ctx, dsn, Options{StatementTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	_, err = short.pool.Exec(ctx, "SELECT pg_sleep(2)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("a slow statement: %v, want query_canceled", err)
	}
	off, err := Open(ctx, dsn, Options{StatementTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if got := show(off); got != "0" {
		t.Fatalf("disabled statement_timeout %q", got)
	}
	if _, err := Open(ctx, dsn, Options{MaxConns: -1}); err == nil {
		t.Fatal("negative pool size accepted")
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	s := &Store{maxAttempts: 4, backoff: time.Millisecond}
	pgErr := func(code string) error { return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}) }
	calls := 0
	err := s.retry(ctx, func() error {
		calls++
		if calls < 3 {
			return pgErr([]string{"40001", "40P01"}[calls-1])
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("transient failures: %v after %d calls", err, calls)
	}
	calls = 0
	err = s.retry(ctx, func() error { calls++; return pgErr("40001") })
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || calls != 4 {
		t.Fatalf("persistent failure: %v after %d calls, want 4", err, calls)
	}
	calls = 0
	err = s.retry(ctx, func() error { calls++; return pgErr("23505") })
	if calls != 1 || err == nil {
		t.Fatalf("unique violation retried: %d calls", calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	s.backoff = time.Hour
	calls = 0
	err = s.retry(cctx, func() error { calls++; cancel(); return pgErr("40P01") })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("canceled during backoff: %v after %d calls", err, calls)
	}
}

// TestSchemaVersion: reopening applies nothing; a database migrated by a
// newer server is refused.
func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	s, dsn := open(t, Options{})
	again, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if _, err := s.pool.Exec(ctx, "INSERT INTO "+versionTable+" (version_id, is_applied) VALUES (9999, true)"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this server") {
		t.Fatalf("newer schema: %v", err)
	}
}

// TestQueryPlans: every request and reporting query can be answered from
// an index. With sequential scans disabled the planner still picks one
// when no index fits, so a Seq Scan in a plan is a missing index.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, Options{})
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET enable_seqscan")
	cases := []struct {
		q    string
		args []any
	}{
		{qDeviceByToken, []any{[]byte("h")}},
		{qDeviceByID, []any{"d"}},
		{qDevicesSince, []any{0, 100}},
		{qRecord, []any{"r", "d"}},
		{qRecordsByDev, []any{"d"}},
		{qNthRank, []any{"r", 9}},
		{qFleetSize, []any{"r"}},
		{qTargeted, []any{"r"}},
		{qStateCounts, []any{"r"}},
		{qConflicts, []any{"r"}},
		{qOffline, []any{"r", int64(1)}},
		{qSkipReasons, []any{"r"}},
		{qRecentFailures, []any{"r", 20}},
		{qWrappedKey, []any{"d", "b"}},
		{qAssignWave, []any{1, "r", 0, 10}},
		{qExpire, []any{"r", []string{"offered"}, 1, "x", 1}},
		{qTrimFailures, []any{"r", 100}},
		{qPruneReports, []any{1}},
		{qTouch, []any{[]string{"d"}, []int64{1}}},
		{qEnrolledThrough, []any{"ns", "e"}},
	}
	for _, c := range cases {
		rows, err := conn.Query(ctx, "EXPLAIN "+c.q, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		joined := strings.Join(plan, "\n")
		// Function Scan on unnest reads the parameters, not a table.
		if strings.Contains(joined, "Seq Scan") {
			t.Errorf("%s\nplan:\n%s", c.q, joined)
		}
	}
}
