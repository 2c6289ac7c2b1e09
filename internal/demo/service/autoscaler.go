package service

import (
	"context"
	"flag"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type scalerConfig struct {
	replicas, min, max int
	perReplica         int
	target, tolerance  float64
	sync, sample       time.Duration
	stabilization      time.Duration
	startup            time.Duration
}

func scalerFlags(fs *flag.FlagSet) *scalerConfig {
	c := &scalerConfig{}
	fs.IntVar(&c.replicas, "replicas", 2, "worker replicas at start")
	fs.IntVar(&c.min, "min-replicas", 2, "fewest worker replicas")
	fs.IntVar(&c.max, "max-replicas", 10, "most worker replicas")
	fs.IntVar(&c.perReplica, "per-replica", 2, "requests one worker replica works on at once")
	fs.Float64Var(&c.target, "target-utilisation", 0.5, "the utilisation the autoscaler aims at (in-flight work / capacity)")
	fs.Float64Var(&c.tolerance, "tolerance", 0.1, "no scaling while |utilisation/target - 1| is within this (the HPA's default)")
	fs.DurationVar(&c.sync, "sync-period", time.Second, "how often the autoscaler decides (the HPA's --horizontal-pod-autoscaler-sync-period)")
	fs.DurationVar(&c.sample, "sample-period", 100*time.Millisecond, "how often utilisation is sampled; a decision uses the mean since the last one")
	fs.DurationVar(&c.stabilization, "scale-down-stabilization", 10*time.Second, "a scale-in takes the highest recommendation of this window (the HPA's behavior.scaleDown.stabilizationWindowSeconds)")
	fs.DurationVar(&c.startup, "startup", 500*time.Millisecond, "how long a new replica takes to be ready")
	return c
}

// scaler is the HPA's algorithm over the gateway's worker pool:
//
//	desired = ceil(current × utilisation / target), unchanged within the tolerance,
//	clamped to [min, max]; a scale-in takes the highest recommendation of the stabilization
//	window, a scale-out is immediate; new replicas are ready after startup.
type scaler struct {
	cfg  scalerConfig
	pool *pool

	mu        sync.Mutex
	current   int
	desired   int
	desiredAt time.Time
	recs      []recommendation

	currentG, desiredG, utilG, inFlightG prometheus.Gauge
	events                               *prometheus.CounterVec
}

type recommendation struct {
	at       time.Time
	replicas int
}

func newScaler(cfg scalerConfig, p *pool, reg prometheus.Registerer) *scaler {
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"autoscaler": "workers"}})
		reg.MustRegister(x)
		return x
	}
	s := &scaler{cfg: cfg, pool: p, current: cfg.replicas, desired: cfg.replicas,
		currentG:  g("demo_autoscaler_current_replicas", "Worker replicas ready."),
		desiredG:  g("demo_autoscaler_desired_replicas", "Worker replicas the autoscaler wants."),
		utilG:     g("demo_autoscaler_utilisation_ratio", "In-flight work over capacity, as last decided on."),
		inFlightG: g("demo_autoscaler_in_flight", "Requests in the worker pool, running or waiting."),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_autoscaler_scale_events_total",
			Help: "Changes of the desired replicas.", ConstLabels: prometheus.Labels{"autoscaler": "workers"}}, []string{"direction"}),
	}
	reg.MustRegister(s.events)
	s.events.WithLabelValues("out")
	s.events.WithLabelValues("in")
	s.currentG.Set(float64(s.current))
	s.desiredG.Set(float64(s.desired))
	p.resize(s.current * cfg.perReplica)
	return s
}

func (s *scaler) run(ctx context.Context) {
	sample := time.NewTicker(s.cfg.sample)
	defer sample.Stop()
	lastSync := time.Now()
	var sum float64
	var n int
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-sample.C:
			inFlight, capacity := s.pool.load()
			s.inFlightG.Set(float64(inFlight))
			if capacity > 0 {
				sum += float64(inFlight) / float64(capacity)
				n++
			}
			if now.Sub(lastSync) >= s.cfg.sync && n > 0 {
				s.decide(now, sum/float64(n))
				lastSync, sum, n = now, 0, 0
			}
			s.converge(now)
		}
	}
}

// decide is one sync period of the HPA.
func (s *scaler) decide(now time.Time, util float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.utilG.Set(util)
	ratio := util / s.cfg.target
	rec := s.current
	if math.Abs(ratio-1) > s.cfg.tolerance {
		rec = int(math.Ceil(float64(s.current) * ratio))
	}
	rec = max(s.cfg.min, min(s.cfg.max, rec))
	s.recs = append(s.recs, recommendation{now, rec})
	// Keep the window's recommendations; the highest of them bounds a scale-in.
	kept := s.recs[:0]
	for _, r := range s.recs {
		if now.Sub(r.at) <= s.cfg.stabilization {
			kept = append(kept, r)
		}
	}
	s.recs = kept
	desired := rec
	if rec < s.current {
		for _, r := range s.recs {
			desired = max(desired, r.replicas)
		}
		desired = min(desired, s.current)
	}
	if desired != s.desired {
		dir := "out"
		if desired < s.desired {
			dir = "in"
		}
		s.events.WithLabelValues(dir).Inc()
		s.desired, s.desiredAt = desired, now
		s.desiredG.Set(float64(desired))
	}
}

// converge makes current follow desired: a scale-in at once, a scale-out once the new replicas
// have started.
func (s *scaler) converge(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == s.desired || (s.desired > s.current && now.Sub(s.desiredAt) < s.cfg.startup) {
		return
	}
	s.current = s.desired
	s.currentG.Set(float64(s.current))
	s.pool.resize(s.current * s.cfg.perReplica)
}
