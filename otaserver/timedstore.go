package otaserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// timedStore records the latency of the store calls on the request path.
type timedStore struct {
	devicestore.Store
	h *prometheus.HistogramVec
}

func (t timedStore) obs(op string, start time.Time) {
	t.h.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (t timedStore) Enroll(ctx context.Context, d devicestore.Device) (devicestore.Device, bool, error) {
	defer t.obs("enroll", time.Now())
	return t.Store.Enroll(ctx, d)
}

func (t timedStore) EnrollWithin(ctx context.Context, d devicestore.Device, maxDevices int64) (devicestore.Device, bool, error) {
	defer t.obs("enroll", time.Now())
	return t.Store.EnrollWithin(ctx, d, maxDevices)
}

func (t timedStore) DeviceByToken(ctx context.Context, h []byte) (devicestore.Device, error) {
	defer t.obs("device_by_token", time.Now())
	return t.Store.DeviceByToken(ctx, h)
}

func (t timedStore) SetRunning(ctx context.Context, id, v string, f int64, at time.Time) error {
	defer t.obs("set_running", time.Now())
	return t.Store.SetRunning(ctx, id, v, f, at)
}

func (t timedStore) Touch(ctx context.Context, seen map[string]time.Time) error {
	defer t.obs("touch", time.Now())
	return t.Store.Touch(ctx, seen)
}

func (t timedStore) Records(ctx context.Context, id string) ([]devicestore.Record, error) {
	defer t.obs("records", time.Now())
	return t.Store.Records(ctx, id)
}

func (t timedStore) PutRecord(ctx context.Context, r devicestore.Record, f *devicestore.Failure) error {
	defer t.obs("put_record", time.Now())
	return t.Store.PutRecord(ctx, r, f)
}

func (t timedStore) ApplyReport(ctx context.Context, rep devicestore.Report, fn func(devicestore.Record) (devicestore.Record, *devicestore.Failure, error)) (devicestore.Record, error) {
	defer t.obs("apply_report", time.Now())
	return t.Store.ApplyReport(ctx, rep, fn)
}

func (t timedStore) WrappedKey(ctx context.Context, id, blob string) ([]byte, error) {
	defer t.obs("wrapped_key", time.Now())
	return t.Store.WrappedKey(ctx, id, blob)
}

func (t timedStore) PutWrappedKey(ctx context.Context, id, blob string, w []byte) error {
	defer t.obs("put_wrapped_key", time.Now())
	return t.Store.PutWrappedKey(ctx, id, blob, w)
}
