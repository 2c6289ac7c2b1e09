package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/agentlease"
	"github.com/faultline-dev/faultline/runbooks"
)

type action struct {
	kind string
	env  injectors.Env
	send runbooks.Fault // the fault as the agents get it: no on, no netns
	// interval is a processKill's: the run sends a new kill to every host each interval.
	interval time.Duration
	hold     *agentlease.Holder
	rec      record
	// planned is what each host's agent said it would touch (by host, in rec.Faults' order).
	planned [][]string
}

func (a *action) leased() []agentlease.Fault {
	out := make([]agentlease.Fault, len(a.rec.Faults))
	for i, hf := range a.rec.Faults {
		out[i] = hf.leased()
	}
	return out
}

func (a *action) Targets() []string {
	var out []string
	for i, hf := range a.rec.Faults {
		where := fmt.Sprintf("%s via agent %s", hf.leased().Where, hf.Agent)
		if i >= len(a.planned) || len(a.planned[i]) == 0 {
			out = append(out, where)
			continue
		}
		for _, t := range a.planned[i] {
			out = append(out, where+": "+t)
		}
	}
	return out
}

// RandomPick implements injectors.RandomPicker: the agents pick processes with the run's seed.
func (a *action) RandomPick() string {
	var t *runbooks.ProcessTarget
	switch {
	case a.send.ProcessKill != nil:
		t = &a.send.ProcessKill.ProcessTarget
	case a.send.ProcessPause != nil:
		t = &a.send.ProcessPause.ProcessTarget
	}
	if t == nil || (t.Count == 0 && t.Percent == 0) {
		return ""
	}
	return "process pick on each host is random (made by its agent with this seed)"
}

func (a *action) Record() (json.RawMessage, error) { return json.Marshal(a.rec) }

func (a *action) request() agentapi.FaultRequest {
	return agentapi.FaultRequest{RunID: a.env.RunID, Owner: agentlease.Owner(), Lease: runbooks.Duration(a.hold.Lease),
		Fault: a.send, Seed: a.env.Seed, MaxTargets: a.env.Policy.MaxTargets}
}

// Apply asks every host's agent to apply the fault. A failure leaves the record listing every
// host, so the engine's revert asks each agent (a fault never applied is a 404: reverted).
func (a *action) Apply(ctx context.Context, _ injectors.Recorder) error {
	return a.hold.Apply(ctx, a.leased(), a.request())
}

// Describe lists what each agent put in place.
func (a *action) Describe() []string { return a.hold.Describe(a.leased()) }

// Sustain renews the leases until the window ends; for a processKill with an interval it also
// sends a new kill to every host each interval, the way a local one keeps killing.
func (a *action) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	if a.interval <= 0 {
		a.hold.Sustain(ctx, a.leased(), report)
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.hold.Sustain(ctx, a.leased(), report)
	}()
	defer func() { <-done }()
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		a.killRound(ctx, round, report)
	}
}

// killRound sends one more kill to every host. A kill has nothing to revert, so each round's fault
// is closed at once rather than held: the ledger record keeps only the first round's.
func (a *action) killRound(ctx context.Context, round int, report func(injectors.Event)) {
	agentlease.ForEach(len(a.rec.Faults), func(k int) {
		lf := a.rec.Faults[k].leased()
		req := a.request()
		req.ID, req.Target = fmt.Sprintf("%s-r%d", lf.ID, round), lf.Target
		c := a.hold.Agents.Get(lf.Agent)
		f, err := c.Apply(ctx, req)
		if ctx.Err() != nil {
			return
		}
		where := lf.Where
		ev := injectors.Event{Time: time.Now(), Targets: []string{where}, Subjects: []injectors.Target{lf.Subject}}
		if err != nil {
			ev.Message = fmt.Sprintf("round %d on %s: %v", round, where, err)
		} else {
			ev.Message = fmt.Sprintf("round %d on %s: %s", round, where, strings.Join(f.Describe, "; "))
			_, _ = c.Revert(ctx, req.ID) // a kill has nothing to undo; the lease would close it anyway
		}
		report(ev)
	})
}
