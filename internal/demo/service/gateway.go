package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sony/gobreaker/v2"
)

type gatewayConfig struct {
	shards       []shardAddr
	failures     uint
	openFor      time.Duration
	shardTimeout time.Duration
	queueTimeout time.Duration
	scaler       *scalerConfig
}

type shardAddr struct{ name, addr string }

func gatewayFlags(fs *flag.FlagSet) *gatewayConfig {
	c := &gatewayConfig{scaler: scalerFlags(fs)}
	fs.Func("shard", "NAME=HOST:PORT of a shard (repeat; in order)", func(v string) error {
		name, addr, ok := strings.Cut(v, "=")
		if !ok || name == "" || addr == "" {
			return fmt.Errorf("want NAME=HOST:PORT, got %q", v)
		}
		c.shards = append(c.shards, shardAddr{name, addr})
		return nil
	})
	fs.UintVar(&c.failures, "breaker-failures", 3, "consecutive failures that open a shard's breaker")
	fs.DurationVar(&c.openFor, "breaker-open-for", 2*time.Second, "how long a breaker stays open before one call tries the shard (half-open)")
	fs.DurationVar(&c.shardTimeout, "shard-timeout", time.Second, "how long a call to a shard may take before it counts as failed")
	fs.DurationVar(&c.queueTimeout, "queue-timeout", 2*time.Second, "how long a request may wait for a worker before it is refused")
	return c
}

// gateway answers GET / (a shard picked round-robin, or ?shard=NAME) through the worker pool and
// the shard's breaker. While a shard's breaker is open the gateway degrades gracefully: a fallback
// answer (200, X-Demo-Fallback: 1), counted apart, instead of an error.
type gateway struct {
	cfg      *gatewayConfig
	log      *slog.Logger
	mux      *http.ServeMux
	client   *http.Client
	pool     *pool
	scaler   *scaler
	breakers map[string]*gobreaker.CircuitBreaker[struct{}]
	next     atomic.Uint64

	requests  *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

func newGateway(cfg *gatewayConfig, log *slog.Logger) (*gateway, error) {
	if len(cfg.shards) == 0 {
		return nil, errors.New("gateway: no --shard")
	}
	sc := cfg.scaler
	if sc.min < 1 || sc.max < sc.min || sc.replicas < sc.min || sc.replicas > sc.max || sc.perReplica < 1 || sc.target <= 0 {
		return nil, fmt.Errorf("gateway: want 1 <= --min-replicas <= --replicas <= --max-replicas, --per-replica >= 1 and --target-utilisation > 0")
	}
	reg := prometheus.NewRegistry()
	g := &gateway{
		cfg: cfg, log: log, mux: http.NewServeMux(),
		client: &http.Client{Timeout: cfg.shardTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}},
		pool:     newPool(0),
		breakers: map[string]*gobreaker.CircuitBreaker[struct{}]{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_gateway_requests_total",
			Help: "Requests the gateway answered, by shard and HTTP code."}, []string{"shard", "code"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_gateway_fallbacks_total",
			Help: "Requests answered with the fallback because the shard's breaker was open."}, []string{"shard"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "demo_gateway_request_duration_seconds",
			Help: "Time the gateway took to answer, by shard.", Buckets: latencyBuckets}, []string{"shard"}),
	}
	reg.MustRegister(g.requests, g.fallbacks, g.latency)
	bm := newBreakerMetrics(reg)
	for _, s := range cfg.shards {
		g.breakers[s.name] = bm.newBreaker(s.name, uint32(cfg.failures), cfg.openFor)
		g.requests.WithLabelValues(s.name, "200")
		g.fallbacks.WithLabelValues(s.name)
	}
	g.scaler = newScaler(*sc, g.pool, reg)
	g.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	g.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	g.mux.HandleFunc("/", g.serve)
	return g, nil
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

func (g *gateway) close() { g.client.CloseIdleConnections() }

func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	shard := r.URL.Query().Get("shard")
	if shard == "" {
		shard = g.cfg.shards[g.next.Add(1)%uint64(len(g.cfg.shards))].name
	}
	cb := g.breakers[shard]
	if cb == nil {
		http.Error(w, "no such shard", http.StatusNotFound)
		return
	}
	code := g.answer(w, r, shard, cb)
	g.requests.WithLabelValues(shard, strconv.Itoa(code)).Inc()
	g.latency.WithLabelValues(shard).Observe(time.Since(start).Seconds())
}

func (g *gateway) answer(w http.ResponseWriter, r *http.Request, shard string, cb *gobreaker.CircuitBreaker[struct{}]) int {
	qctx, cancel := context.WithTimeout(r.Context(), g.cfg.queueTimeout)
	err := g.pool.acquire(qctx)
	cancel()
	if err != nil {
		http.Error(w, "overloaded: no worker within "+g.cfg.queueTimeout.String(), http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable
	}
	defer g.pool.release()
	var body []byte
	_, err = cb.Execute(func() (struct{}, error) {
		var err error
		body, err = g.call(r.Context(), shard)
		return struct{}{}, err
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		g.fallbacks.WithLabelValues(shard).Inc()
		w.Header().Set("X-Demo-Fallback", "1")
		fmt.Fprintf(w, "%s unavailable: fallback answer\n", shard)
		return http.StatusOK
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
		return http.StatusBadGateway
	}
	_, _ = w.Write(body)
	return http.StatusOK
}

func (g *gateway) call(ctx context.Context, shard string) ([]byte, error) {
	var addr string
	for _, s := range g.cfg.shards {
		if s.name == shard {
			addr = s.addr
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/work", nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shard, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shard, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", shard, resp.StatusCode)
	}
	return body, nil
}
