package daemon

import (
	"context"
	"time"
)

// Coordinator is the state replicas share in the cluster, so that the safety calls work on any
// replica: pause is read by whoever leads (and survives failover), and a halt sent to a standby
// reaches the leader. Nil means a single daemon, whose own memory is the truth.
type Coordinator interface {
	// Paused reads the pause state; the leader asks before every start, so a failed read is
	// treated as paused by the caller.
	Paused(ctx context.Context) (PauseState, error)
	// SetPaused writes it; when it returns, no later start is made (paused) or refused (resumed).
	SetPaused(ctx context.Context, st PauseState) error
	// RequestHalt asks the leader to halt one run (RunID set) or every run, and waits for its
	// answer: the runs halted, once their faults are reverted.
	RequestHalt(ctx context.Context, req HaltRequest) ([]string, error)
	// ServeHalts answers halt requests with fn until ctx ends; only the leader calls it, after
	// its recovery, so that a request pending across a failover is answered once orphans are
	// reverted too.
	ServeHalts(ctx context.Context, fn func(HaltRequest) ([]string, error))
}

// PauseState is the cluster's pause switch.
type PauseState struct {
	Paused bool      `json:"paused"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// HaltRequest is a halt sent to a replica that does not run anything itself.
type HaltRequest struct {
	RunID  string `json:"runId,omitempty"` // empty: the kill switch
	Reason string `json:"reason"`
	Who    string `json:"who"`
	Via    string `json:"via"` // the replica that received the call
}
