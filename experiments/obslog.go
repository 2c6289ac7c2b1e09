package experiments

import (
	"fmt"
	"sync"

	"github.com/faultline-dev/faultline/safety/guardrail"
)

// maxObservations bounds what one guardrail keeps in a result (a 250 ms guardrail over an hour
// is 14,400 observations); the oldest "during" samples are dropped first and counted.
const maxObservations = 5000

// obsLog collects observations per guardrail for the result document, the metrics and the TTY.
type obsLog struct {
	e      *Engine
	mu     sync.Mutex
	order  []*guardrail.Guardrail
	byName map[string]*GuardrailResult
	last   map[string]guardrail.Observation
}

func newObsLog(gs []*guardrail.Guardrail, e *Engine) *obsLog {
	l := &obsLog{e: e, order: gs, byName: map[string]*GuardrailResult{}, last: map[string]guardrail.Observation{}}
	for _, g := range gs {
		l.byName[g.Name] = &GuardrailResult{Name: g.Name, Kind: g.Kind, Describe: g.Probe.Describe()}
		if lim, ok := g.Probe.(guardrail.Limiter); ok {
			if v, op, ok := lim.Limit(); ok {
				l.byName[g.Name].Threshold, l.byName[g.Name].ThresholdOp = &v, op
			}
		}
	}
	return l
}

func (l *obsLog) observer(phase string) func(*guardrail.Guardrail, guardrail.Observation) {
	return func(g *guardrail.Guardrail, o guardrail.Observation) {
		result := "pass"
		switch {
		case o.Error != "":
			result = "error"
		case !o.Pass:
			result = "fail"
		}
		l.e.Metrics.Evaluation(g.Name, g.Kind, result, o.Duration)
		l.mu.Lock()
		r := l.byName[g.Name]
		if len(r.Observations) >= maxObservations {
			r.Observations = r.Observations[1:]
			r.Truncated++
		}
		r.Observations = append(r.Observations, PhasedSample{Phase: phase, Observation: o})
		if o.Error != "" {
			r.Blind = true
		}
		l.last[g.Name] = o
		l.mu.Unlock()
		l.e.progress(Progress{Phase: phase, Guardrail: g.Name, Obs: &o})
	}
}

func (l *obsLog) markBreached(name string) {
	l.mu.Lock()
	l.byName[name].Breached = true
	l.mu.Unlock()
}

// failing describes the guardrails whose latest observation failed.
func (l *obsLog) failing() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, g := range l.order {
		if o, ok := l.last[g.Name]; ok && !o.Pass {
			out = append(out, fmt.Sprintf("%s: %s", g.Name, o.Detail))
		}
	}
	return out
}

func (l *obsLog) results() []GuardrailResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]GuardrailResult, 0, len(l.order))
	for _, g := range l.order {
		out = append(out, *l.byName[g.Name])
	}
	return out
}
