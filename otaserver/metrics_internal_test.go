package otaserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricsRequestDuration: every route but the downloads is timed by
// route and status, in the middleware that counts requests.
func TestMetricsRequestDuration(t *testing.T) {
	m := NewMetrics(prometheus.NewPedanticRegistry())
	s := &Server{cfg: Config{Metrics: m}}
	answer := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
	}
	serve := func(route string, code int) {
		t.Helper()
		rec := httptest.NewRecorder()
		s.instrumented(route, MaxBodyBytes, answer(code)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != code {
			t.Fatalf("%s answered %d, want %d", route, rec.Code, code)
		}
	}
	serve("update", http.StatusOK)
	serve("update", http.StatusOK)
	serve("update", http.StatusServiceUnavailable)
	serve("ddi-root", http.StatusOK)
	for _, route := range []string{"blob", "ddi-artifact", "mender-download"} {
		serve(route, http.StatusOK)
	}

	for _, tc := range []struct {
		route, code string
		want        uint64
	}{
		{"update", "200", 2},
		{"update", "503", 1},
		{"ddi-root", "200", 1},
	} {
		if got := histogramCount(t, m.RequestTime, tc.route, tc.code); got != tc.want {
			t.Errorf("otaflow_ota_request_duration_seconds{route=%q,code=%q} count %d, want %d", tc.route, tc.code, got, tc.want)
		}
		if got := counterValue(t, m.Requests, tc.route, tc.code); got != float64(tc.want) {
			t.Errorf("otaflow_ota_requests_total{route=%q,code=%q} = %v, want %d", tc.route, tc.code, got, tc.want)
		}
	}
	for _, route := range []string{"blob", "ddi-artifact", "mender-download"} {
		if got := counterValue(t, m.Requests, route, "200"); got != 1 {
			t.Errorf("download route %s counted %v times, want 1", route, got)
		}
	}
	// Three timed series in all: the downloads have none.
	ch := make(chan prometheus.Metric, 16)
	m.RequestTime.Collect(ch)
	close(ch)
	if n := len(ch); n != 3 {
		t.Errorf("%d request duration series, want 3 (update 200, update 503, ddi-root 200)", n)
	}
}

func counterValue(t *testing.T, c *prometheus.CounterVec, route, code string) float64 {
	t.Helper()
	var out dto.Metric
	if err := c.WithLabelValues(route, code).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}

// histogramCount is the number of observations of one series of h.
func histogramCount(t *testing.T, h *prometheus.HistogramVec, route, code string) uint64 {
	t.Helper()
	var out dto.Metric
	if err := h.WithLabelValues(route, code).(prometheus.Metric).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}
