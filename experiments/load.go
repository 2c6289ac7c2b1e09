package experiments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/faultline-dev/faultline/load"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// Load warm-up before the steady-state check: enough completed requests for a load guardrail to
// judge (its default minRequests), or this long at most for a slow rate.
const (
	loadWarmRequests = 10
	loadWarmMax      = 5 * time.Second
)

// probeEnvFor gives one run's guardrails its own load hub, so that concurrent runs in the daemon
// each judge their own traffic.
func (e *Engine) probeEnvFor(hub *load.Hub) guardrail.ProbeEnv {
	env := e.ProbeEnv
	env.Extra = maps.Clone(env.Extra)
	if env.Extra == nil {
		env.Extra = map[string]any{}
	}
	env.Extra[load.ProbeKind] = hub
	return env
}

// startLoad starts a load and makes it the one the guardrails judge. An unreachable target is
// a steady state that does not hold (not started, nothing injected); other errors abort.
func (e *Engine) startLoad(ctx context.Context, name string, spec runbooks.LoadSpec, hub *load.Hub) (*load.Generator, *Verdict, error) {
	var obs load.Observer
	if e.Metrics != nil {
		obs = e.Metrics
	}
	g, err := load.New(spec, load.Options{Name: name, Observer: obs, Logger: e.logger()})
	if err != nil {
		v := Refused
		return nil, &v, fmt.Errorf("load %s: %w", name, err)
	}
	e.progress(Progress{Phase: "load", Experiment: name, Since: time.Now()})
	if err := g.Start(ctx); err != nil {
		v := Aborted
		if _, ok := errors.AsType[*load.UnreachableError](err); ok {
			v = NotStarted
		}
		return nil, &v, fmt.Errorf("%w; nothing was injected", err)
	}
	hub.Push(g)
	// A wait cut short by ctx is the run being halted, which the caller sees in ctx itself.
	_ = g.WaitRequests(ctx, loadWarmRequests, loadWarmMax)
	return g, nil, nil
}

// stopLoad ends a load and takes it off the hub; the wait for in-flight requests is bounded by
// the request timeout so that a hanging target cannot hold the run.
func (e *Engine) stopLoad(g *load.Generator, hub *load.Hub) *load.Summary {
	hub.Pop(g)
	ctx, cancel := context.WithTimeout(context.Background(), g.Timeout()+time.Second)
	defer cancel()
	return g.Stop(ctx)
}
