package otaserver_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/otaflow/otaflow/internal/devicestore"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// downStore fails every device lookup and report with ErrUnavailable while
// down is set, as the PostgreSQL store does while the database restarts.
type downStore struct {
	devicestore.Store
	down atomic.Bool
}

func (s *downStore) err(op string) error {
	return fmt.Errorf("%s: connection refused: %w", op, devicestore.ErrUnavailable)
}

func (s *downStore) DeviceByToken(ctx context.Context, h []byte) (devicestore.Device, error) {
	if s.down.Load() {
		return devicestore.Device{}, s.err("device by token")
	}
	return s.Store.DeviceByToken(ctx, h)
}

func (s *downStore) ApplyReport(ctx context.Context, rep devicestore.Report, update func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error)) (devicestore.Record, error) {
	if s.down.Load() {
		return devicestore.Record{}, s.err("apply report")
	}
	return s.Store.ApplyReport(ctx, rep, update)
}

// TestStoreUnavailable: while the device store is unavailable, devices are
// told to come back (503 unavailable, Retry-After), not given a server
// error; afterwards the same requests work.
func TestStoreUnavailable(t *testing.T) {
	ds := &downStore{}
	h := newHarnessWrapped(t, 1000, func(s devicestore.Store) devicestore.Store { ds.Store = s; return ds })
	d := h.device("patient", true)
	ds.down.Store(true)
	r, _, err := d.Check(ctx, "")
	if err != nil || r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "15" {
		t.Fatalf("check while down: %v %d Retry-After %q %s", err, r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	if code, _ := r.Error(); code != protov1.CodeUnavailable {
		t.Fatalf("code %q, want %q", code, protov1.CodeUnavailable)
	}
	ds.down.Store(false)
	r, u, err := d.Check(ctx, "")
	if err != nil || r.Status != http.StatusOK || u.Assignment == nil {
		t.Fatalf("check after: %v %d %s", err, r.Status, r.Body)
	}
	ds.down.Store(true)
	rep := protov1.StatusReport{ReportID: "r1", Rollout: u.Rollout, State: protov1.StateDownloading}
	if r, err := d.Report(ctx, rep); err != nil || r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("report while down: %v %d %s", err, r.Status, r.Body)
	}
	ds.down.Store(false)
	if r, err := d.Report(ctx, rep); err != nil || r.Status != http.StatusOK {
		t.Fatalf("report after: %v %d %s", err, r.Status, r.Body)
	}
}

// deletingStore decommissions a device between its check-in's
// authentication and the check-in's record writes, as a `kubectl delete
// device` racing the check-in does.
type deletingStore struct {
	devicestore.Store
	victim string
}

func (s *deletingStore) UpdateRecords(ctx context.Context, id string, decide func([]devicestore.Record) ([]devicestore.RecordWrite, error)) error {
	if id == s.victim {
		if err := s.Store.DeleteDevice(ctx, id); err != nil {
			return err
		}
	}
	return s.Store.UpdateRecords(ctx, id, decide)
}

// TestCheckInOfADeviceDeletedMeanwhile: the check-in is answered 401, as
// its token would be a moment later, and leaves no record behind.
func TestCheckInOfADeviceDeletedMeanwhile(t *testing.T) {
	ds := &deletingStore{}
	h := newHarnessWrapped(t, 1000, func(s devicestore.Store) devicestore.Store { ds.Store = s; return ds })
	d := h.device("doomed", true)
	ds.victim = d.ID
	r, _, err := d.Check(ctx, "")
	if err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("check-in: %v %d %s", err, r.Status, r.Body)
	}
	if recs, err := ds.Store.Records(ctx, d.ID); err != nil || len(recs) != 0 {
		t.Fatalf("records left: %+v %v", recs, err)
	}
	if r, _, err := d.Check(ctx, ""); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("the next check-in: %v %d %s", err, r.Status, r.Body)
	}
}
