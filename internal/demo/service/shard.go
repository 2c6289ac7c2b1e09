package service

import (
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type shardConfig struct {
	name string
	work time.Duration
}

func shardFlags(fs *flag.FlagSet) *shardConfig {
	c := &shardConfig{}
	fs.StringVar(&c.name, "name", "shard", "the shard's name (label shard on its metrics)")
	fs.DurationVar(&c.work, "work", time.Millisecond, "how long one request's work takes")
	return c
}

// latencyBuckets resolve the demo's latencies: a millisecond of work up to a slow shard's seconds.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// newShard serves GET /work (the shard's answer), /metrics and /healthz.
func newShard(c *shardConfig) http.Handler {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_shard_requests_total",
		Help: "Requests the shard answered, by HTTP code.", ConstLabels: prometheus.Labels{"shard": c.name}}, []string{"code"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "demo_shard_request_duration_seconds",
		Help: "Time the shard took to answer.", ConstLabels: prometheus.Labels{"shard": c.name}, Buckets: latencyBuckets})
	reg.MustRegister(requests, latency)
	requests.WithLabelValues("200")
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		t := time.NewTimer(c.work)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "%s ok\n", c.name)
		requests.WithLabelValues(strconv.Itoa(http.StatusOK)).Inc()
		latency.Observe(time.Since(start).Seconds())
	})
	return mux
}
