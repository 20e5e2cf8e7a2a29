package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/storetest"
	"github.com/otaflow/otaflow/internal/rollout"
)

func TestConformanceWithoutGroupCommit(t *testing.T) {
	// The three store variants run side by side (each its own file).
	t.Parallel()
	storetest.Run(t, func(t *testing.T) devicestore.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "devices.db"), Options{Synchronous: "NORMAL", DisableGroupCommit: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func offer(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := range n {
		r := devicestore.Record{RolloutUID: "r", DeviceID: fmt.Sprint("d", i), State: rollout.StateOffered, Release: "ns/x", Version: "2", Blob: "b"}
		if err := s.PutRecord(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func toState(st rollout.State) func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
	return func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
		r.State = st
		return r, nil, nil
	}
}

// TestGroupCommitDurable: every report acknowledged by concurrent writers
// (grouped into shared transactions with synchronous=FULL) is in the store
// after it is closed and opened again.
func TestGroupCommitDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	ctx := context.Background()
	s, err := Open(ctx, path, Options{}) // FULL, group commit on
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	offer(t, s, n)
	var wg sync.WaitGroup
	acked := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, toState(rollout.StateDownloading))
			acked[i] = err == nil
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		if !acked[i] {
			t.Fatalf("report of d%d not acknowledged", i)
		}
		r, err := s.Record(ctx, "r", fmt.Sprint("d", i))
		if err != nil || r.State != rollout.StateDownloading {
			t.Fatalf("d%d after reopen: %+v %v", i, r, err)
		}
		if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, toState(rollout.StateDownloaded)); !errors.Is(err, devicestore.ErrDuplicateReport) {
			t.Fatalf("report ID of d%d forgotten after reopen: %v", i, err)
		}
	}
}

// TestGroupCommitOnce: the same report sent by many writers at once is
// applied exactly once; the others see a duplicate.
func TestGroupCommitOnce(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	offer(t, s, 1)
	var applied, dup, calls atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			_, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: "d0", ReportID: "same", RolloutUID: "r"}, func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
				calls.Add(1)
				r.State = rollout.StateDownloading
				return r, &devicestore.Failure{DeviceID: "d0", Reason: "counted"}, nil
			})
			switch {
			case err == nil:
				applied.Add(1)
			case errors.Is(err, devicestore.ErrDuplicateReport):
				dup.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if applied.Load() != 1 || dup.Load() != 63 || calls.Load() != 1 {
		t.Fatalf("applied %d, duplicates %d, update calls %d", applied.Load(), dup.Load(), calls.Load())
	}
	f, err := s.RecentFailures(ctx, "r", 100)
	if err != nil || len(f) != 1 {
		t.Fatalf("failure log %v %v", f, err)
	}
}

// TestGroupCommitIsolatesFailures: a refused write in a batch is undone
// alone; the writes around it commit.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const n = 100
	offer(t, s, n)
	refuse := errors.New("refused")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.ApplyReport(ctx, devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, func(r devicestore.Record) (devicestore.Record, *devicestore.Failure, error) {
				if i%3 == 0 {
					return r, nil, refuse
				}
				r.State = rollout.StateDownloading
				return r, nil, nil
			})
		})
	}
	wg.Wait()
	for i := range n {
		r, err := s.Record(ctx, "r", fmt.Sprint("d", i))
		if err != nil {
			t.Fatal(err)
		}
		want := rollout.StateDownloading
		if i%3 == 0 {
			want = rollout.StateOffered
			if !errors.Is(errs[i], refuse) {
				t.Fatalf("d%d: %v, want refused", i, errs[i])
			}
			// The report ID of a refused report is not remembered.
			if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, toState(rollout.StateDownloading)); err != nil {
				t.Fatalf("retry of refused d%d: %v", i, err)
			}
		} else if errs[i] != nil {
			t.Fatalf("d%d: %v", i, errs[i])
		}
		if r.State != want {
			t.Fatalf("d%d state %s, want %s", i, r.State, want)
		}
	}
}

func TestGroupCommitCanceledCaller(t *testing.T) {
	s := open(t)
	offer(t, s, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ApplyReport(ctx, devicestore.Report{DeviceID: "d0", ReportID: "1", RolloutUID: "r"}, toState(rollout.StateDownloading)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	r, _ := s.Record(context.Background(), "r", "d0")
	if r.State != rollout.StateOffered {
		t.Fatalf("state %s", r.State)
	}
}

func TestCloseAnswersQueuedWrites(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "devices.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	offer(t, s, 50)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, err := s.ApplyReport(context.Background(), devicestore.Report{DeviceID: fmt.Sprint("d", i), ReportID: "1", RolloutUID: "r"}, toState(rollout.StateDownloading))
			if err != nil && !errors.Is(err, errClosed) {
				t.Error(err)
			}
		})
	}
	_ = s.Close()
	wg.Wait() // nobody hangs
}

func TestBulkEnroll(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, _, err := s.Enroll(ctx, storetest.NewDevice("a", nil)); err != nil {
		t.Fatal(err)
	}
	var devs []devicestore.Device
	for _, id := range []string{"a", "b", "c"} {
		d := storetest.NewDevice(id, map[string]string{"region": "eu"})
		if id == "a" {
			d.TokenHash = storetest.NewDevice("another", nil).TokenHash // must not apply
		}
		devs = append(devs, d)
	}
	n, err := s.BulkEnroll(ctx, devs)
	if err != nil || n != 2 {
		t.Fatalf("inserted %d, %v", n, err)
	}
	refs, err := s.DevicesSince(ctx, 0, 10)
	if err != nil || len(refs) != 3 || refs[0].ID != "a" || refs[1].Seq != 2 || refs[2].Seq != 3 || refs[2].Labels["region"] != "eu" {
		t.Fatalf("devices %+v %v", refs, err)
	}
	d, err := s.DeviceByToken(ctx, devs[2].TokenHash)
	if err != nil || d.ID != "c" {
		t.Fatalf("by token %+v %v", d, err)
	}
	// Enrollment after a bulk load continues the sequence.
	e, _, err := s.Enroll(ctx, storetest.NewDevice("e", nil))
	if err != nil || e.Seq != 4 {
		t.Fatalf("enroll after bulk: %+v %v", e, err)
	}
}
