package otaserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the device API. Label values are bounded (no device IDs).
type Metrics struct {
	Requests    *prometheus.CounterVec
	RequestTime *prometheus.HistogramVec
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
		RequestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "otaflow_ota_request_duration_seconds",
			Help: "Device API request latency by route and HTTP status, downloads excluded (their time is the image size over the device's bandwidth).",
			// A check-in is a few milliseconds; seconds mean a struggling store.
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
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
	reg.MustRegister(m.Requests, m.RequestTime, m.CheckIns, m.Offers, m.Reports, m.Enrollments, m.BlobBytes, m.KeyWraps, m.StoreTime)
	return m
}

// downloadRoutes are the routes that stream an image (native blobs, the
// DDI artifact, the Mender download). They are counted but not timed: a
// download lasts as long as the device's link needs, so it says nothing
// about the server and would drown the other routes' latency.
var downloadRoutes = map[string]bool{"blob": true, "ddi-artifact": true, "mender-download": true}
