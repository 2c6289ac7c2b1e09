// Package guardrail owns the checks that watch a system before, during and after an experiment:
// probes (HTTP, Prometheus, Kubernetes) compiled once from the runbook and evaluated many times,
// the breach tracker, and the SLO queries and error budget built on Prometheus.
package guardrail

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
)

// Observation is the outcome of one evaluation of a probe.
type Observation struct {
	Time time.Time `json:"time"`
	Pass bool      `json:"pass"`
	// Value is the measured figure (latency in seconds, a query result), when there is one.
	Value *float64 `json:"value,omitempty"`
	// Series holds per-series values for probes that return several (a PromQL vector).
	Series []Sample `json:"series,omitempty"`
	// Detail says why in words: "status 503 not in 2xx", "0.031 > 0.01 for {route=\"/pay\"}".
	Detail string `json:"detail,omitempty"`
	// Error is set when the source could not be evaluated (unreachable, timeout, bad query).
	Error string `json:"error,omitempty"`
	// Ignored is true when an error or empty result did not count because the runbook said ignore.
	Ignored bool `json:"ignored,omitempty"`
	// Duration is how long the evaluation took.
	Duration time.Duration `json:"duration"`
}

// Sample is one series of a multi-series result.
type Sample struct {
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
	Pass   bool              `json:"pass"`
}

// Probe evaluates a guardrail once. An error means the source could not be seen; the guardrail's
// onError setting decides whether that counts as failing (the default: fail closed).
type Probe interface {
	Check(ctx context.Context) (Observation, error)
	// Describe says what is checked, e.g. "GET http://svc/healthz expects 2xx within 200ms".
	Describe() string
}

// ProbeEnv carries what probes may need from outside (clients for other sources are added here).
type ProbeEnv struct {
	Logger *slog.Logger
	// Extra holds clients for probe kinds compiled in by other packages (e.g. a Kubernetes client),
	// keyed by probe kind, so that this package does not import them all.
	Extra map[string]any
	// Kube is the Kubernetes client, resolved on first use (nil when none is configured: its
	// methods then return kubeclient.ErrNotConfigured).
	Kube *kubeclient.Client
}

// ProbeFactory builds a probe from its runbook settings; called once per guardrail.
type ProbeFactory func(spec any, g runbooks.Guardrail, env ProbeEnv) (Probe, error)

// Probes is the registry of probe kinds, built by the command (no global registry).
type Probes map[string]ProbeFactory

// DefaultProbes holds the probe kinds implemented in this package.
func DefaultProbes() Probes {
	return Probes{"http": newHTTPProbe, "prometheus": newPrometheusProbe, "kubernetes": newKubernetesProbe}
}

// Guardrail is a compiled guardrail: settings parsed and checked once, ready to evaluate often.
type Guardrail struct {
	Name      string
	Kind      string
	Interval  time.Duration
	For       runbooks.Threshold
	IgnoreErr bool
	Probe     Probe
}

// DefaultInterval applies when a runbook gives none.
const DefaultInterval = time.Second

// Compile builds guardrails from validated runbook entries.
func Compile(gs []runbooks.Guardrail, probes Probes, env ProbeEnv) ([]*Guardrail, error) {
	out := make([]*Guardrail, 0, len(gs))
	for _, g := range gs {
		kind := g.ProbeKind()
		f, ok := probes[kind]
		if !ok {
			return nil, fmt.Errorf("guardrail %q: probe kind %q is not available in this build", g.Name, kind)
		}
		p, err := f(g.Probe(), g, env)
		if err != nil {
			return nil, fmt.Errorf("guardrail %q: %w", g.Name, err)
		}
		iv := g.Interval.D()
		if iv == 0 {
			iv = DefaultInterval
		}
		out = append(out, &Guardrail{Name: g.Name, Kind: kind, Interval: iv, For: g.For, IgnoreErr: g.OnError == "ignore", Probe: p})
	}
	return out, nil
}

// Evaluate runs the probe once and applies onError: an unreachable source fails unless ignored.
func (g *Guardrail) Evaluate(ctx context.Context) Observation {
	start := time.Now()
	obs, err := g.Probe.Check(ctx)
	if obs.Time.IsZero() {
		obs.Time = start
	}
	obs.Duration = time.Since(start)
	if err != nil {
		obs.Error = err.Error()
		obs.Pass = g.IgnoreErr
		obs.Ignored = g.IgnoreErr
		if obs.Detail == "" {
			obs.Detail = "could not evaluate: " + err.Error()
		}
	}
	return obs
}

// Tracker turns a stream of observations into breaches according to the guardrail's `for`.
// The zero value is ready; it is not safe for concurrent use.
type Tracker struct {
	For          runbooks.Threshold
	consecutive  int
	failingSince time.Time
}

// Observe records one observation and reports whether the guardrail is now breached.
func (t *Tracker) Observe(o Observation) bool {
	if o.Pass {
		t.consecutive, t.failingSince = 0, time.Time{}
		return false
	}
	if t.consecutive == 0 {
		t.failingSince = o.Time
	}
	t.consecutive++
	if t.For.Duration > 0 {
		return o.Time.Sub(t.failingSince) >= t.For.Duration
	}
	return t.consecutive >= max(t.For.Count, 1)
}

// Consecutive is the current run of failed evaluations.
func (t *Tracker) Consecutive() int { return t.consecutive }
