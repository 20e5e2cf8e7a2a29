package otaserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the device API. Label values are bounded (no device IDs).
type Metrics struct {
	Requests    *prometheus.CounterVec
	CheckIns    *prometheus.CounterVec
	Offers      *prometheus.CounterVec
	Reports     *prometheus.CounterVec
	Enrollments *prometheus.CounterVec
	BlobBytes   prometheus.Counter
	KeyWraps    prometheus.Counter
	StoreTime   *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_requests_total", Help: "Device API requests by route and HTTP status.",
		}, []string{"route", "code"}),
		CheckIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_checkins_total", Help: "Update checks by answer (none, install, rollback, cancel).",
		}, []string{"answer"}),
		Offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_offers_total", Help: "New offers by kind (release, rollback).",
		}, []string{"kind"}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_reports_total", Help: "Status reports accepted, by reported state.",
		}, []string{"state"}),
		Enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otaflow_ota_enrollments_total", Help: "Enrollments by result (new, rotated, refused).",
		}, []string{"result"}),
		BlobBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otaflow_ota_blob_bytes_total", Help: "Encrypted blob bytes served.",
		}),
		KeyWraps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otaflow_ota_key_wraps_total", Help: "Content keys wrapped for a device (HPKE); repeat check-ins use the cached wrap.",
		}),
		StoreTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "otaflow_ota_store_seconds", Help: "Device store latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"op"}),
	}
	reg.MustRegister(m.Requests, m.CheckIns, m.Offers, m.Reports, m.Enrollments, m.BlobBytes, m.KeyWraps, m.StoreTime)
	return m
}
