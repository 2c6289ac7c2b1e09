package agent

import (
	"context"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// keep is the lease keeper: one timer, set to the earliest expiry (or revert retry) of all faults,
// reset whenever a fault is applied, renewed or reverted. What expired is reverted and counted.
func (a *Agent) keep(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := a.sweep(ctx)
		t.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-t.C:
		}
	}
}

// sweep reverts every fault whose lease passed, retries failed reverts that are due, forgets
// reverted faults older than the retention, and returns when to look again.
func (a *Agent) sweep(ctx context.Context) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	next := now.Add(time.Hour)
	for id, h := range a.faults {
		if ctx.Err() != nil {
			return now
		}
		switch h.f.State {
		case agentapi.StateApplied:
			if !h.f.ExpiresAt.After(now) {
				a.m.expiries.Inc()
				a.log.Warn("lease expired: reverting (its run stopped renewing)", "id", id, "run", h.f.RunID, "owner", h.f.Owner, "expiredAt", h.f.ExpiresAt)
				_ = a.revertLocked(ctx, h, agentapi.ReasonLeaseExpired)
			}
		case ledger.StateRevertFailed:
			if !h.retryAt.After(now) {
				reason := h.f.RevertReason
				if reason == "" {
					reason = agentapi.ReasonLeaseExpired
				}
				_ = a.revertLocked(ctx, h, reason)
			}
		case agentapi.StateReverted:
			if now.Sub(h.f.RevertedAt) > a.cfg.Retain {
				delete(a.faults, id)
				continue
			}
		}
		switch h.f.State {
		case agentapi.StateApplied:
			next = earlier(next, h.f.ExpiresAt)
		case ledger.StateRevertFailed:
			next = earlier(next, h.retryAt)
		case agentapi.StateReverted:
			next = earlier(next, h.f.RevertedAt.Add(a.cfg.Retain))
		}
	}
	return next
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
