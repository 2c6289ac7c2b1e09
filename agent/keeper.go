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
	now := time.Now()
	due := a.due(now)
	for _, h := range due {
		if ctx.Err() != nil {
			return now
		}
		a.sweepOne(ctx, h)
	}
	if len(due) > 0 {
		// Reverts took time and set retries: look again at once, with the times they left.
		return time.Now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	next := now.Add(time.Hour)
	for id, h := range a.faults {
		switch h.f.State {
		case agentapi.StateApplied:
			next = earlier(next, h.f.ExpiresAt)
		case ledger.StateRevertFailed:
			next = earlier(next, h.retryAt)
		case agentapi.StateReverted:
			if now.Sub(h.f.RevertedAt) > a.cfg.Retain {
				delete(a.faults, id)
				continue
			}
			next = earlier(next, h.f.RevertedAt.Add(a.cfg.Retain))
		}
	}
	return next
}

// due lists the faults whose lease passed or whose revert retry is due at now.
func (a *Agent) due(now time.Time) []*held {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*held
	for _, h := range a.faults {
		if isDue(h, now) {
			out = append(out, h)
		}
	}
	return out
}

func isDue(h *held, now time.Time) bool {
	switch h.f.State {
	case agentapi.StateApplied:
		return !h.f.ExpiresAt.After(now)
	case ledger.StateRevertFailed:
		return !h.retryAt.After(now)
	}
	return false
}

// sweepOne reverts h if it is still due once its locks are held: a renewal or a revert on
// request may have come first.
func (a *Agent) sweepOne(ctx context.Context, h *held) {
	unlock, err := a.lockFault(ctx, h.f.ID, h.target)
	if err != nil {
		return
	}
	defer unlock()
	a.mu.Lock()
	now := time.Now()
	due, f := isDue(h, now), h.f
	a.mu.Unlock()
	if !due {
		return
	}
	reason := agentapi.ReasonLeaseExpired
	if f.State == agentapi.StateApplied {
		a.m.expiries.Inc()
		a.log.Warn("lease expired: reverting (its run stopped renewing)", "id", f.ID, "run", f.RunID, "owner", f.Owner, "expiredAt", f.ExpiresAt)
	} else if f.RevertReason != "" {
		reason = f.RevertReason
	}
	_ = a.revertHeld(ctx, h, reason)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
