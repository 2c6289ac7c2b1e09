package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// loadCollectors are the figures of faultline's own load while a run drives one.
type loadCollectors struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	requested *prometheus.GaugeVec
	achieved  *prometheus.GaugeVec
	quantiles *prometheus.GaugeVec
	errRatio  *prometheus.GaugeVec
}

func newLoadCollectors() loadCollectors {
	return loadCollectors{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_load_requests_total", Help: "Requests faultline's load completed, by load, status code (0: transport error or timeout) and result (ok, error).",
		}, []string{"load", "code", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "faultline_load_request_duration_seconds", Help: "Client-side latency of faultline's load.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"load"}),
		requested: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_load_rate_requested", Help: "Requests per second the load asks for now.",
		}, []string{"load"}),
		achieved: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_load_rate_achieved", Help: "Requests per second completed in the last second.",
		}, []string{"load"}),
		quantiles: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_load_latency_seconds", Help: "Client-side latency quantiles over the last second.",
		}, []string{"load", "quantile"}),
		errRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_load_error_ratio", Help: "Share of the load's requests that failed in the last second.",
		}, []string{"load"}),
	}
}

func (l loadCollectors) all() []prometheus.Collector {
	return []prometheus.Collector{l.requests, l.latency, l.requested, l.achieved, l.quantiles, l.errRatio}
}

// LoadResult counts one completed request of a load (load.Observer).
func (m *Metrics) LoadResult(name string, code uint16, latency time.Duration, failed bool) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "error"
	}
	m.load.requests.WithLabelValues(name, strconv.Itoa(int(code)), result).Inc()
	m.load.latency.WithLabelValues(name).Observe(latency.Seconds())
}

// LoadPoint sets the load's per-second gauges (load.Observer).
func (m *Metrics) LoadPoint(name string, requested, achieved, p50, p95, p99, errorRatio float64) {
	if m == nil {
		return
	}
	m.load.requested.WithLabelValues(name).Set(requested)
	m.load.achieved.WithLabelValues(name).Set(achieved)
	m.load.quantiles.WithLabelValues(name, "0.5").Set(p50)
	m.load.quantiles.WithLabelValues(name, "0.95").Set(p95)
	m.load.quantiles.WithLabelValues(name, "0.99").Set(p99)
	m.load.errRatio.WithLabelValues(name).Set(errorRatio)
}

// LoadStopped zeroes the rate gauges of a load that ended, so a dashboard does not show a
// stopped load as still running.
func (m *Metrics) LoadStopped(name string) {
	if m == nil {
		return
	}
	m.load.requested.WithLabelValues(name).Set(0)
	m.load.achieved.WithLabelValues(name).Set(0)
}
