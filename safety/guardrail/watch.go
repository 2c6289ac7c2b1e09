package guardrail

import (
	"context"
	"sync"
	"time"
)

// Breach is a guardrail that failed for long enough.
type Breach struct {
	Guardrail string      `json:"guardrail"`
	Kind      string      `json:"kind"`
	At        time.Time   `json:"at"`
	Last      Observation `json:"last"`
}

// Watch evaluates every guardrail on its own interval until ctx ends, sending each observation to
// observe and each breach (once per guardrail) to onBreach. The first evaluation happens at once.
// observe and onBreach may be called concurrently from different guardrails' goroutines.
func Watch(ctx context.Context, gs []*Guardrail, observe func(*Guardrail, Observation), onBreach func(Breach)) {
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := Tracker{For: g.For}
			tick := time.NewTicker(g.Interval)
			defer tick.Stop()
			breached := false
			for {
				o := g.Evaluate(ctx)
				if ctx.Err() != nil {
					return // an evaluation cut short by the end of the window says nothing
				}
				observe(g, o)
				if tr.Observe(o) && !breached {
					breached = true
					onBreach(Breach{Guardrail: g.Name, Kind: g.Kind, At: time.Now(), Last: o})
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
}

// CheckAll evaluates every guardrail once, concurrently, and reports whether all passed.
func CheckAll(ctx context.Context, gs []*Guardrail, observe func(*Guardrail, Observation)) bool {
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := true
	for _, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := g.Evaluate(ctx)
			observe(g, o)
			mu.Lock()
			ok = ok && o.Pass
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok
}

// WaitHealthy re-evaluates the guardrails until every one's latest evaluation passes, or ctx ends.
// It returns the time all were seen healthy, or false.
func WaitHealthy(ctx context.Context, gs []*Guardrail, observe func(*Guardrail, Observation)) (time.Time, bool) {
	if len(gs) == 0 {
		return time.Now(), true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	healthy := map[string]bool{}
	var at time.Time
	done := false
	Watch(ctx, gs, func(g *Guardrail, o Observation) {
		observe(g, o)
		mu.Lock()
		defer mu.Unlock()
		healthy[g.Name] = o.Pass
		if done {
			return
		}
		for _, g := range gs {
			if !healthy[g.Name] {
				return
			}
		}
		done, at = true, o.Time
		cancel()
	}, func(Breach) {})
	mu.Lock()
	defer mu.Unlock()
	return at, done
}
