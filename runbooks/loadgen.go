package runbooks

import (
	"fmt"
	"time"
)

// LoadSpec is HTTP traffic faultline drives itself while experiments run, so that breakers open,
// autoscalers react and client-side SLOs can be judged without a separate load tool. It is
// always bounded: by maxDuration and maxRequests, whichever comes first.
type LoadSpec struct {
	Targets      []LoadTarget `yaml:"targets" json:"targets" doc:"Requests to send, in turn (round robin)."`
	Rate         float64      `yaml:"rate" json:"rate" doc:"Requests per second (after the ramp, if any)."`
	Ramp         *LoadRamp    `yaml:"ramp,omitempty" json:"ramp,omitempty" doc:"Start at a lower rate and rise linearly to rate."`
	Workers      int          `yaml:"workers,omitempty" json:"workers,omitempty" doc:"Workers (concurrent requests) started at once (default 10). More are started as needed, up to maxWorkers."`
	MaxWorkers   int          `yaml:"maxWorkers,omitempty" json:"maxWorkers,omitempty" doc:"Upper bound on concurrent requests (default 1000). When it is reached the achieved rate falls below the requested one, and the result says so."`
	Connections  int          `yaml:"connections,omitempty" json:"connections,omitempty" doc:"Idle keep-alive connections kept per host (default 100)."`
	Timeout      Duration     `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Per-request timeout (default 5s); a request that takes longer counts as an error."`
	ExpectStatus []string     `yaml:"expectStatus,omitempty" json:"expectStatus,omitempty" doc:"Status codes that count as success, e.g. [2xx, 404] (default 2xx and 3xx)."`
	MaxDuration  Duration     `yaml:"maxDuration,omitempty" json:"maxDuration,omitempty" doc:"Hard stop for the load whatever happens (default 1h). faultline stops it itself when the runbook or experiment ends."`
	MaxRequests  int64        `yaml:"maxRequests,omitempty" json:"maxRequests,omitempty" doc:"Hard cap on requests sent (default: rate × maxDuration)."`
}

// LoadTarget is one request.
type LoadTarget struct {
	Method  string            `yaml:"method,omitempty" json:"method,omitempty" doc:"Default GET."`
	URL     string            `yaml:"url" json:"url"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty" json:"body,omitempty"`
}

// LoadRamp rises linearly from From requests per second to the load's rate over Over.
type LoadRamp struct {
	From float64  `yaml:"from" json:"from" doc:"Requests per second at the start."`
	Over Duration `yaml:"over" json:"over" doc:"How long the rise takes."`
}

// Load defaults, applied by the load generator.
const (
	DefaultLoadWorkers     = 10
	DefaultLoadMaxWorkers  = 1000
	DefaultLoadConnections = 100
	DefaultLoadTimeout     = 5 * time.Second
	DefaultLoadMaxDuration = time.Hour
	// MaxLoadRate bounds what a runbook may ask for; more is a mistake, not a test.
	MaxLoadRate = 100000
)

func (l *LoadSpec) validate(v *Validator, path string) {
	if len(l.Targets) == 0 {
		v.Errorf(path+".targets", "at least one target is required")
	}
	for i, t := range l.Targets {
		validateHTTPRequest(v, fmt.Sprintf("%s.targets[%d]", path, i), t.URL, t.Method)
	}
	if l.Rate <= 0 || l.Rate > MaxLoadRate {
		v.Errorf(path+".rate", "requests per second: must be positive and at most %d, got %g", MaxLoadRate, l.Rate)
	}
	if l.Ramp != nil {
		if l.Ramp.From < 0 || l.Ramp.From > l.Rate {
			v.Errorf(path+".ramp.from", "must be between 0 and rate (%g), got %g", l.Rate, l.Ramp.From)
		}
		if l.Ramp.Over <= 0 {
			v.Errorf(path+".ramp.over", "is required and must be positive, e.g. 30s")
		}
	}
	if l.Workers < 0 {
		v.Errorf(path+".workers", "must not be negative")
	}
	if l.MaxWorkers < 0 || (l.MaxWorkers > 0 && l.MaxWorkers < l.Workers) {
		v.Errorf(path+".maxWorkers", "must be at least workers (%d), got %d", l.Workers, l.MaxWorkers)
	}
	if l.Connections < 0 {
		v.Errorf(path+".connections", "must not be negative")
	}
	for i, s := range l.ExpectStatus {
		if _, _, err := ParseStatusRange(s); err != nil {
			v.Errorf(fmt.Sprintf("%s.expectStatus[%d]", path, i), "%v", err)
		}
	}
	if l.MaxRequests < 0 {
		v.Errorf(path+".maxRequests", "must not be negative")
	}
}

// LoadProbe is a guardrail on the client-side figures of faultline's own load: latency
// quantiles and the error ratio over a sliding window. It needs a `load:` in the runbook (or in
// the experiment whose hypothesis it is).
type LoadProbe struct {
	P50         *LoadLatencyLimit `yaml:"p50,omitempty" json:"p50,omitempty" doc:"Median latency limit."`
	P95         *LoadLatencyLimit `yaml:"p95,omitempty" json:"p95,omitempty" doc:"95th percentile latency limit."`
	P99         *LoadLatencyLimit `yaml:"p99,omitempty" json:"p99,omitempty" doc:"99th percentile latency limit."`
	ErrorRatio  *LoadRatioLimit   `yaml:"errorRatio,omitempty" json:"errorRatio,omitempty" doc:"Share of requests that failed (transport error, timeout or unexpected status)."`
	Window      Duration          `yaml:"window,omitempty" json:"window,omitempty" doc:"Sliding window the figures are computed over (default 5s)."`
	MinRequests int               `yaml:"minRequests,omitempty" json:"minRequests,omitempty" doc:"Fewer completed requests than this in the window cannot be judged and count as an evaluation error (default 10)."`
}

// LoadLatencyLimit bounds a latency quantile.
type LoadLatencyLimit struct {
	Max Duration `yaml:"max" json:"max"`
}

// LoadRatioLimit bounds a ratio between 0 and 1.
type LoadRatioLimit struct {
	Max float64 `yaml:"max" json:"max"`
}

// DefaultLoadWindow is the load guardrail's window when the runbook gives none.
const DefaultLoadWindow = 5 * time.Second

func (p *LoadProbe) validate(v *Validator, path string) {
	if p.P50 == nil && p.P95 == nil && p.P99 == nil && p.ErrorRatio == nil {
		v.Errorf(path, "set at least one of p50, p95, p99 and errorRatio")
	}
	for _, q := range []struct {
		name string
		l    *LoadLatencyLimit
	}{{"p50", p.P50}, {"p95", p.P95}, {"p99", p.P99}} {
		if q.l != nil && q.l.Max <= 0 {
			v.Errorf(path+"."+q.name+".max", "is required and must be positive, e.g. 300ms")
		}
	}
	if p.ErrorRatio != nil && (p.ErrorRatio.Max < 0 || p.ErrorRatio.Max >= 1) {
		v.Errorf(path+".errorRatio.max", "must be at least 0 and below 1, got %g", p.ErrorRatio.Max)
	}
	if p.Window != 0 && p.Window.D() < MinInterval {
		v.Errorf(path+".window", "%s is too short: the minimum is %s", p.Window, MinInterval)
	}
	if p.MinRequests < 0 {
		v.Errorf(path+".minRequests", "must not be negative")
	}
}

// validateLoadGuardrails refuses load guardrails that would have no load to judge: a runbook
// guardrail needs the runbook's load or one in every experiment; a hypothesis needs either.
func (r *Runbook) validateLoadGuardrails(v *Validator) {
	if r.Load != nil {
		return
	}
	for i, g := range r.Guardrails {
		if g.Load == nil {
			continue
		}
		for _, e := range r.Experiments {
			if e.Load == nil {
				v.Errorf(fmt.Sprintf("guardrails[%d].load", i), "needs a load to judge: add load: to the runbook (experiment %q has none of its own)", e.Name)
				break
			}
		}
	}
	for j, e := range r.Experiments {
		if e.Load != nil {
			continue
		}
		for k, g := range e.Hypothesis {
			if g.Load != nil {
				v.Errorf(fmt.Sprintf("experiments[%d].hypothesis[%d].load", j, k), "needs a load to judge: add load: to the runbook or to this experiment")
			}
		}
	}
}
