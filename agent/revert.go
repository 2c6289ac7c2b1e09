package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// retryBackoff spaces the keeper's attempts at a revert that failed.
const retryBackoff = 5 * time.Second

// Renew extends a held fault's lease to lease from now. A fault already reverted comes back with
// a 410 *statusError; one whose namespace is gone is closed ("pod gone") and answered the same way.
func (a *Agent) Renew(ctx context.Context, id string, lease time.Duration) (agentapi.Fault, error) {
	if err := validateLease(lease, a.cfg.MaxLease); err != nil {
		return agentapi.Fault{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	h, unlock, err := a.lockHeld(ctx, id)
	if err != nil {
		return agentapi.Fault{}, err
	}
	defer unlock()
	if a.state(h) == agentapi.StateApplied {
		if _, gone, err := h.target.Locate(); err == nil && gone {
			_ = a.revertHeld(ctx, h, agentapi.ReasonPodGone)
		}
	}
	a.mu.Lock()
	if h.f.State != agentapi.StateApplied {
		defer a.mu.Unlock()
		return h.f, &statusError{status: http.StatusGone, rule: "gone", msg: fmt.Sprintf("fault %s was already reverted: %s", id, h.f.RevertReason)}
	}
	prev := h.f.ExpiresAt
	h.f.ExpiresAt = time.Now().Add(lease)
	a.mu.Unlock()
	if err := a.writeMeta(ctx, h, nil); err != nil {
		// The old expiry stays in force: a restart must not hold a fault longer than the ledger says.
		a.mu.Lock()
		h.f.ExpiresAt = prev
		a.mu.Unlock()
		return agentapi.Fault{}, fmt.Errorf("renew %s: %w", id, err)
	}
	a.wake()
	return a.view(h), nil
}

// Revert reverts a fault now, at its caller's request. Reverting one already reverted returns it.
func (a *Agent) Revert(ctx context.Context, id string) (agentapi.Fault, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	h, unlock, err := a.lockHeld(ctx, id)
	if err != nil {
		return agentapi.Fault{}, err
	}
	defer unlock()
	if a.state(h) == agentapi.StateReverted {
		return a.view(h), nil
	}
	err = a.revertHeld(ctx, h, agentapi.ReasonRequested)
	return a.view(h), err
}

// lockHeld takes fault id's lock, finds it, then takes its namespace's lock: the order Apply
// takes them in, so that a revert asked while the fault is being applied waits for it and then
// reverts it, instead of answering that there is no such fault.
func (a *Agent) lockHeld(ctx context.Context, id string) (*held, func(), error) {
	unlockID, err := a.locks.lock(ctx, faultKey(id))
	if err != nil {
		return nil, nil, fmt.Errorf("fault %s: %w", id, err)
	}
	a.mu.Lock()
	h, ok := a.faults[id]
	a.mu.Unlock()
	if !ok {
		unlockID()
		return nil, nil, statusf(http.StatusNotFound, "id", "no fault %s on this agent", id)
	}
	unlockNS, err := a.locks.lock(ctx, netnsKey(h.target))
	if err != nil {
		unlockID()
		return nil, nil, fmt.Errorf("fault %s: %w", id, err)
	}
	return h, func() { unlockNS(); unlockID() }, nil
}

// state and view read what a concurrent List may read too.
func (a *Agent) state(h *held) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return h.f.State
}

func (a *Agent) view(h *held) agentapi.Fault {
	a.mu.Lock()
	defer a.mu.Unlock()
	return h.f
}

// revertHeld reverts h from its record and closes its ledger entry; the caller holds its locks
// (lockFault), not mu. A namespace that is gone closes it as "pod gone", whatever the reason
// asked: its rules went with it. A failed revert leaves the fault in state revert-failed, retried
// by the keeper.
func (a *Agent) revertHeld(ctx context.Context, h *held, reason string) error {
	wasHeld := a.state(h) == agentapi.StateApplied
	_, gone, lerr := h.target.Locate()
	if lerr == nil && gone {
		reason = agentapi.ReasonPodGone
	}
	var err error
	if !gone {
		inj, gerr := a.reg.Get(h.f.Kind)
		if err = gerr; err == nil {
			err = inj.Revert(ctx, h.record, a.env(h.f.RunID))
		}
	}
	if err != nil {
		a.m.errors.WithLabelValues("revert").Inc()
		a.mu.Lock()
		h.f.RevertReason = reason
		h.f.State, h.f.RevertError = ledger.StateRevertFailed, err.Error()
		h.retryAt = time.Now().Add(retryBackoff)
		a.mu.Unlock()
		if wasHeld {
			a.m.held.Dec()
		}
		_ = a.writeMeta(ctx, h, func(e *ledger.Entry) { e.State, e.LastError = ledger.StateRevertFailed, err.Error() })
		a.log.Error("revert failed; retrying", "id", h.f.ID, "run", h.f.RunID, "reason", reason, "netns", h.target.Label, "err", err)
		a.wake()
		return fmt.Errorf("revert %s: %w", h.f.ID, err)
	}
	now := time.Now()
	if wasHeld {
		a.m.held.Dec()
	}
	a.mu.Lock()
	h.f.State, h.f.RevertReason, h.f.RevertedAt, h.f.RevertError = agentapi.StateReverted, reason, now, ""
	a.mu.Unlock()
	a.m.reverts.WithLabelValues(reason).Inc()
	if werr := a.writeMeta(ctx, h, func(e *ledger.Entry) {
		e.State, e.RevertedAt, e.LastError = ledger.StateReverted, &now, ""
	}); werr != nil {
		a.log.Error("ledger: fault reverted but not marked", "id", h.f.ID, "err", werr)
	}
	a.log.Info("fault reverted", "id", h.f.ID, "run", h.f.RunID, "owner", h.f.Owner, "reason", reason, "netns", h.target.Label)
	return nil
}
