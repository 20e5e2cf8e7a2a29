package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "devices.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	// The three store variants run side by side (each its own file).
	t.Parallel()
	storetest.Run(t, func(t *testing.T) devicestore.Store { return open(t) })
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	ctx := context.Background()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Device(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	var jm string
	if err := s.r.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&jm); err != nil || jm != "wal" {
		t.Fatalf("journal mode %q %v", jm, err)
	}
}

func TestBadSynchronous(t *testing.T) {
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), Options{Synchronous: "OFF"}); err == nil {
		t.Fatal("synchronous OFF accepted")
	}
}

// TestQueryPlans proves no request or reporting query scans a whole table:
// each must search an index (SEARCH …), never SCAN a table, and never sort
// with a temporary B-tree.
func TestQueryPlans(t *testing.T) {
	s := open(t)
	ctx := context.Background()
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
		{qReportSeen, []any{"d", "x"}},
		{qAssignWave, []any{1, "r", 0, 10, 1}},
		{qExpire, []any{"x", 1, "r", "offered", 1}},
		{qTrimFailures, []any{"r", "r", 100}},
		{qPruneReports, []any{1}},
		{qTouch, []any{"d", 1}},
		{qEnrolledThrough, []any{"ns", "e"}},
	}
	for _, c := range cases {
		plan, err := s.Explain(ctx, c.q, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		joined := strings.Join(plan, "; ")
		t.Logf("%.60s… → %s", c.q, joined)
		for _, bad := range []string{"SCAN ", "TEMP B-TREE"} {
			for _, step := range plan {
				if strings.HasPrefix(step, bad) || strings.Contains(step, "USE TEMP B-TREE") {
					t.Errorf("%s\n  plan: %s (has %q)", c.q, joined, bad)
				}
			}
		}
		if !strings.Contains(joined, "SEARCH") && !strings.Contains(joined, "USING") {
			t.Errorf("%s\n  plan: %s (no index search)", c.q, joined)
		}
	}
}

// TestConcurrentReports drives many writers and readers at once; the single
// writer connection serializes them without SQLITE_BUSY.
func TestConcurrentReports(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const n = 64
	for i := range n {
		r := devicestore.Record{RolloutUID: "r", DeviceID: fmt.Sprint("d", i), State: rollout.StateOffered, Release: "ns/x", Version: "2", Blob: "b"}
		if err := s.PutRecord(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
				r.State = rollout.StateDownloading
				return r, nil, nil
			})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := s.Counts(ctx, "r", time.Time{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Counts(ctx, "r", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Waves[0].States[rollout.StateDownloading]; got != n {
		t.Fatalf("downloading %d, want %d", got, n)
	}
}
