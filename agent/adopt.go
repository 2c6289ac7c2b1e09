package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// adopt takes over the ledger a previous agent on this node left: faults whose lease still runs
// are held again, expired ones reverted (and counted as lease expiries), ones whose namespace is
// gone closed, and ones the old process could not hand over reverted as "agent restarted": a
// fault it had recorded but not finished applying, a latency fault whose proxy ran in it.
// Recently reverted faults are listed again, so that a late renewal still learns why (410).
func (a *Agent) adopt(ctx context.Context) error {
	if _, err := a.led.Prune(ctx, a.cfg.Retain); err != nil {
		return fmt.Errorf("prune agent ledger: %w", err)
	}
	entries, err := a.led.Entries(ctx, nil)
	if err != nil {
		return fmt.Errorf("read agent ledger: %w", err)
	}
	// Nothing else runs yet (New starts the keeper after), so no fault locks are taken; mu still
	// guards faults for the reverts' sake.
	now := time.Now()
	for _, e := range entries {
		var m meta
		if err := json.Unmarshal(e.Meta, &m); err != nil || m.Fault.ID == "" {
			// Not written by an agent: revert it like recover would, with what the entry has.
			m.Fault = agentapi.Fault{ID: e.ID, RunID: e.RunID, Kind: e.Kind, Name: e.Fault, State: agentapi.StateApplied}
		}
		h := &held{f: m.Fault, record: e.Record, target: m.NetTarget}
		a.mu.Lock()
		a.faults[e.ID] = h
		a.mu.Unlock()
		switch e.State {
		case ledger.StateReverted:
			h.f.State = agentapi.StateReverted
			continue
		case ledger.StateRecorded:
			a.log.Warn("fault was recorded but not confirmed applied when the agent stopped: reverting", "id", e.ID, "run", e.RunID)
			h.f.State = agentapi.StateApplied
			a.m.held.Inc()
			_ = a.revertHeld(ctx, h, ReasonAgentRestarted)
			continue
		}
		h.f.State = agentapi.StateApplied
		a.m.held.Inc()
		switch {
		case !h.f.ExpiresAt.After(now):
			a.m.expiries.Inc()
			a.log.Warn("lease expired while the agent was down: reverting", "id", e.ID, "run", e.RunID, "expiredAt", h.f.ExpiresAt)
			_ = a.revertHeld(ctx, h, agentapi.ReasonLeaseExpired)
		case proxyMechanism(e.Record):
			a.log.Warn("latency fault's transparent proxy ran in the previous agent process: reverting", "id", e.ID, "run", e.RunID)
			_ = a.revertHeld(ctx, h, ReasonAgentRestarted)
		default:
			if _, gone, err := h.target.Locate(); err == nil && gone {
				_ = a.revertHeld(ctx, h, agentapi.ReasonPodGone)
				continue
			}
			a.log.Info("holding fault again after a restart", "id", e.ID, "run", e.RunID, "kind", h.f.Kind, "netns", h.target.Label, "expiresAt", h.f.ExpiresAt)
		}
	}
	return nil
}

// proxyMechanism tells a latency record of the transparent proxy.
func proxyMechanism(record json.RawMessage) bool {
	var r struct {
		Mechanism string `json:"mechanism"`
	}
	return json.Unmarshal(record, &r) == nil && r.Mechanism == "proxy"
}

func sortFaults(fs []agentapi.Fault) {
	sort.Slice(fs, func(i, j int) bool {
		if !fs[i].AppliedAt.Equal(fs[j].AppliedAt) {
			return fs[i].AppliedAt.Before(fs[j].AppliedAt)
		}
		return fs[i].ID < fs[j].ID
	})
}
