package prom

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Target is a real HTTP server exposing metrics the test controls, scraped by the Server. Register
// collectors on Registry (at any time); Value, Requests and Latency are ready to use.
type Target struct {
	// Addr is host:port the target listens on.
	Addr     string
	Registry *prometheus.Registry
	// Value is a gauge test_value{series=...} for threshold tests.
	Value *prometheus.GaugeVec
	// Requests is a counter test_requests_total{service=..., code=...} for error-ratio SLOs.
	Requests *prometheus.CounterVec
	// Latency is a histogram test_request_duration_seconds{route=...} for latency SLOs.
	Latency *prometheus.HistogramVec

	mu      sync.Mutex
	scrapes []time.Time
	changed chan struct{} // closed and replaced on every scrape
}

// StartTarget starts a target on a free loopback port; t.Cleanup closes it.
func StartTarget(t testing.TB) *Target {
	t.Helper()
	tg := &Target{
		Registry: prometheus.NewRegistry(),
		Value:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_value", Help: "A value the test sets."}, []string{"series"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests the test counts."}, []string{"service", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "test_request_duration_seconds", Help: "Latencies the test observes.",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.5, 1, 2}}, []string{"route"}),
		changed: make(chan struct{}),
	}
	tg.Registry.MustRegister(tg.Value, tg.Requests, tg.Latency)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the prometheus target: %v", err)
	}
	tg.Addr = ln.Addr().String()
	h := promhttp.HandlerFor(tg.Registry, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.scrapes = append(tg.scrapes, time.Now())
		if len(tg.scrapes) > 100000 {
			tg.scrapes = tg.scrapes[50000:]
		}
		close(tg.changed)
		tg.changed = make(chan struct{})
		tg.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return tg
}

// ScrapeAfter waits for the first scrape that starts at or after since and returns when it was
// served (the metrics it carried are the values at that moment).
func (tg *Target) ScrapeAfter(ctx context.Context, since time.Time) (time.Time, error) {
	for {
		tg.mu.Lock()
		for i := len(tg.scrapes) - 1; i >= 0 && !tg.scrapes[i].Before(since); i-- {
			if i == 0 || tg.scrapes[i-1].Before(since) {
				at := tg.scrapes[i]
				tg.mu.Unlock()
				return at, nil
			}
		}
		ch := tg.changed
		tg.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-ch:
		}
	}
}

// Scrapes is how many times the target has been scraped.
func (tg *Target) Scrapes() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.scrapes)
}
