package load

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// ProbeKind is the guardrail probe kind this package implements.
const ProbeKind = "load"

// Hub is one run's loads: the runbook's, and an experiment's own while it runs (which the
// guardrails then judge instead). The engine makes one per run and hands it to the probes
// through guardrail.ProbeEnv.Extra[ProbeKind].
type Hub struct {
	mu    sync.Mutex
	stack []*Generator
}

// Push makes g the load the guardrails judge until Pop.
func (h *Hub) Push(g *Generator) {
	h.mu.Lock()
	h.stack = append(h.stack, g)
	h.mu.Unlock()
}

// Pop removes g (and anything pushed after it).
func (h *Hub) Pop(g *Generator) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.stack {
		if x == g {
			h.stack = h.stack[:i]
			return
		}
	}
}

// Current is the load the guardrails judge now, or nil.
func (h *Hub) Current() *Generator {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.stack) == 0 {
		return nil
	}
	return h.stack[len(h.stack)-1]
}

// ErrNoLoad is a load guardrail evaluated while no load runs (it counts as failing, like any
// source that cannot be seen, unless the guardrail says onError: ignore).
var ErrNoLoad = errors.New("no load is running")

type probe struct {
	hub    *Hub
	spec   runbooks.LoadProbe
	window time.Duration
	minReq int
}

// NewProbe is the guardrail.ProbeFactory for load guardrails.
func NewProbe(spec any, _ runbooks.Guardrail, env guardrail.ProbeEnv) (guardrail.Probe, error) {
	s, ok := spec.(*runbooks.LoadProbe)
	if !ok {
		return nil, fmt.Errorf("load probe: unexpected spec %T", spec)
	}
	hub, _ := env.Extra[ProbeKind].(*Hub)
	if hub == nil {
		return nil, errors.New("load guardrails need the runbook's load, and this engine has none")
	}
	p := &probe{hub: hub, spec: *s, window: s.Window.D(), minReq: s.MinRequests}
	if p.window == 0 {
		p.window = runbooks.DefaultLoadWindow
	}
	if p.minReq == 0 {
		p.minReq = 10
	}
	return p, nil
}

func (p *probe) Describe() string {
	var parts []string
	for _, l := range p.limits() {
		parts = append(parts, l.name+" < "+l.describe)
	}
	return fmt.Sprintf("client-side %s over %s of faultline's load", strings.Join(parts, ", "), p.window)
}

type limit struct {
	name, describe string
	value          func(Stats) float64
	max            float64
	format         func(float64) string
}

func (p *probe) limits() []limit {
	var out []limit
	lat := func(name string, l *runbooks.LoadLatencyLimit, f func(Stats) time.Duration) {
		if l != nil {
			out = append(out, limit{name: name, describe: l.Max.String(), max: l.Max.D().Seconds(),
				value: func(s Stats) float64 { return f(s).Seconds() },
				format: func(v float64) string {
					return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
				}})
		}
	}
	lat("p50", p.spec.P50, func(s Stats) time.Duration { return s.P50 })
	lat("p95", p.spec.P95, func(s Stats) time.Duration { return s.P95 })
	lat("p99", p.spec.P99, func(s Stats) time.Duration { return s.P99 })
	if r := p.spec.ErrorRatio; r != nil {
		out = append(out, limit{name: "errorRatio", describe: fmt.Sprint(r.Max), max: r.Max,
			value:  func(s Stats) float64 { return s.ErrorRatio },
			format: func(v float64) string { return fmt.Sprintf("%.4g", v) }})
	}
	return out
}

// Check judges the current load's last window. The observation's value is the first limit's
// figure (p95 in seconds for `p95: {max: 300ms}`); the detail names every figure.
func (p *probe) Check(_ context.Context) (guardrail.Observation, error) {
	g := p.hub.Current()
	if g == nil {
		return guardrail.Observation{}, ErrNoLoad
	}
	s := g.Snapshot(p.window)
	if s.Requests+s.InFlight < p.minReq {
		return guardrail.Observation{Time: time.Now()}, fmt.Errorf("only %d requests completed in the last %s and %d in flight (minRequests %d)",
			s.Requests, s.Window.Round(time.Millisecond), s.InFlight, p.minReq)
	}
	obs := guardrail.Observation{Time: time.Now(), Pass: true}
	var details []string
	for i, l := range p.limits() {
		v := l.value(s)
		if i == 0 {
			obs.Value = &v
		}
		if v >= l.max {
			obs.Pass = false
			details = append(details, fmt.Sprintf("%s %s ≥ %s", l.name, l.format(v), l.describe))
		} else {
			details = append(details, fmt.Sprintf("%s %s", l.name, l.format(v)))
		}
	}
	obs.Detail = fmt.Sprintf("%s over %d requests in %s", strings.Join(details, ", "), s.Requests, s.Window.Round(time.Millisecond))
	if s.InFlight > 0 {
		obs.Detail += fmt.Sprintf(" and %d in flight", s.InFlight)
	}
	return obs, nil
}

// Limit gives the reports the first limit, which is what the observation's value is.
func (p *probe) Limit() (float64, string, bool) {
	ls := p.limits()
	if len(ls) == 0 {
		return 0, "", false
	}
	return ls[0].max, "<", true
}
