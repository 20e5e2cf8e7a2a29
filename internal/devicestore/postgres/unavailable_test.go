package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/pgtest"
	"github.com/otaflow/otaflow/internal/rollout"
)

// TestUnavailable: with the database down, reads and writes fail with
// ErrUnavailable (the server answers 503, not 500), whether the pooled
// connection was cut by the shutdown or a new one is refused; once the
// database is back the same Store works again, without reopening.
func TestUnavailable(t *testing.T) {
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
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("d1", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, devicestore.Record{RolloutUID: "r", DeviceID: "d1", State: rollout.StateOffered}, nil); err != nil {
		t.Fatal(err)
	}

	srv.Halt()
	calls := map[string]func(context.Context) error{
		"Device": func(ctx context.Context) error { _, err := s.Device(ctx, "d1"); return err },
		"Record": func(ctx context.Context) error { _, err := s.Record(ctx, "r", "d1"); return err },
		"Touch":  func(ctx context.Context) error { return s.Touch(ctx, map[string]time.Time{"d1": time.Now()}) },
		"PutRecord": func(ctx context.Context) error {
			return s.PutRecord(ctx, devicestore.Record{RolloutUID: "r", DeviceID: "d1", State: rollout.StateDownloading}, nil)
		},
		"Counts": func(ctx context.Context) error { _, err := s.Counts(ctx, "r", time.Now()); return err },
		"Ping":   func(ctx context.Context) error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := call(cctx)
		cancel()
		if !errors.Is(err, devicestore.ErrUnavailable) {
			t.Errorf("%s with the database down: %v, want ErrUnavailable", name, err)
		}
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The pool drops broken connections and dials new ones.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Ping(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, call := range calls {
		if err := call(ctx); err != nil {
			t.Errorf("%s after the database came back: %v", name, err)
		}
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, devicestore.ErrNotFound) || errors.Is(err, devicestore.ErrUnavailable) {
		t.Fatalf("unknown device: %v", err)
	}
}

// TestUnavailableClassification: which errors mean "retry later".
func TestUnavailableClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "40001"}, false},
		{context.DeadlineExceeded, false},
		{errors.New("other"), false},
	} {
		if got := errors.Is(unavailable(tc.err), devicestore.ErrUnavailable); got != tc.want {
			t.Errorf("%v: unavailable %v, want %v", tc.err, got, tc.want)
		}
	}
}
