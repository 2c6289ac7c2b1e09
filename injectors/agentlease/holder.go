// Package agentlease holds faults on faultline agents for a run: it sends each fault to its
// agent, renews the leases while the window lasts, reports what the agents did meanwhile, and
// reverts from a ledger record alone. The pod network faults (injectors/pod) and the faults sent
// to plain hosts' agents (injectors/remote) are both made of it; they differ only in how they find
// the agents and what they target.
package agentlease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
)

// Fault is one fault on one agent. Callers keep their own ledger records (a pod's node, a host's
// name) and build these from them.
type Fault struct {
	ID    string
	Agent string // https://host:port
	// Where is how people read the target: "pod shop/web-1 on node n1", "host db-1".
	Where string
	// Subject is the target in structured form, for the recorders.
	Subject injectors.Target
	Target  agentapi.Target
}

// Holder holds a set of faults on their agents for one run.
type Holder struct {
	Agents *Agents
	Lease  time.Duration

	mu      sync.Mutex
	held    map[string]agentapi.Fault // by fault id, as the agents last answered
	gone    map[string]bool           // reverted by the agent during the window
	failing map[string]bool           // renewals failing, reported once per streak
}

// NewHolder returns a holder for faults on a lease.
func NewHolder(agents *Agents, lease time.Duration) *Holder {
	return &Holder{Agents: agents, Lease: lease, held: map[string]agentapi.Fault{}, gone: map[string]bool{}, failing: map[string]bool{}}
}

// Apply asks each fault's agent to apply req (its ID and Target filled in per fault), all at once.
// It returns every failure; the faults that were applied are held.
func (h *Holder) Apply(ctx context.Context, faults []Fault, req agentapi.FaultRequest) error {
	errs := make([]error, len(faults))
	ForEach(len(faults), func(k int) {
		af := faults[k]
		r := req
		r.ID, r.Target = af.ID, af.Target
		f, err := h.Agents.Get(af.Agent).Apply(ctx, r)
		if err != nil {
			errs[k] = fmt.Errorf("%s: %w", af.Where, err)
			return
		}
		h.mu.Lock()
		h.held[af.ID] = f
		h.mu.Unlock()
	})
	return errors.Join(errs...)
}

// Held returns the fault as its agent last answered, and whether it answered at all.
func (h *Holder) Held(id string) (agentapi.Fault, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.held[id]
	return f, ok
}

// Describe says, for each fault, where it is held and what its agent put in place.
func (h *Holder) Describe(faults []Fault) []string {
	var out []string
	for _, af := range faults {
		f, _ := h.Held(af.ID)
		line := fmt.Sprintf("%s: fault %s held by agent %s on a %s lease", af.Where, af.ID, af.Agent, h.Lease)
		if f.Netns.ID != "" && !strings.HasPrefix(f.Kind, "process-") {
			line += fmt.Sprintf(" (netns %s)", f.Netns.ID)
		}
		out = append(out, line)
		for _, d := range f.Describe {
			out = append(out, "  "+d)
		}
	}
	return out
}

// Sustain renews every held fault each lease/3 until ctx ends. A fault the agent has already
// reverted (its pod went away; the lease ran out while the run could not reach the agent) is
// reported and no longer renewed; a failing renewal is reported once per streak, since the agent
// reverts by itself if the failures outlast the lease.
func (h *Holder) Sustain(ctx context.Context, faults []Fault, report func(injectors.Event)) {
	t := time.NewTicker(h.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ForEach(len(faults), func(k int) { h.renew(ctx, faults[k], report) })
	}
}

func (h *Holder) renew(ctx context.Context, af Fault, report func(injectors.Event)) {
	h.mu.Lock()
	gone := h.gone[af.ID]
	h.mu.Unlock()
	if gone {
		return
	}
	f, err := h.Agents.Get(af.Agent).Renew(ctx, af.ID, h.Lease)
	if ctx.Err() != nil {
		return
	}
	event := func(msg string) injectors.Event {
		return injectors.Event{Time: time.Now(), Message: msg, Targets: []string{af.Where}, Subjects: []injectors.Target{af.Subject}}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case errors.Is(err, agentapi.ErrGone), errors.Is(err, agentapi.ErrNotFound):
		reason := f.RevertReason
		if reason == "" {
			reason = "unknown to the agent"
		}
		h.gone[af.ID] = true
		h.held[af.ID] = f
		report(event(fmt.Sprintf("the agent reverted the fault on %s before the window ended: %s", af.Where, reason)))
	case err != nil:
		if !h.failing[af.ID] {
			h.failing[af.ID] = true
			report(event(fmt.Sprintf("lease renewal for %s failed (the agent reverts the fault if no renewal reaches it within %s): %v", af.Where, h.Lease, err)))
		}
	default:
		if h.failing[af.ID] {
			h.failing[af.ID] = false
			report(event("lease renewal for " + af.Where + " succeeds again"))
		}
		h.held[af.ID] = f
	}
}
