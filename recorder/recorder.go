package recorder

import (
	"context"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
)

// Recorder mirrors experiments.Recorder: it starts a Session per experiment, after the steady
// state holds and before the first fault.
type Recorder interface {
	// Name identifies the recorder in the result ("workloads").
	Name() string
	// Start begins watching for experiment x; it returns (nil, nil) when x gives it nothing to watch.
	Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (Session, error)
}

// Session mirrors experiments.RecorderSession.
type Session interface {
	// FaultApplied tells the recorder that a fault was applied to targets.
	FaultApplied(kind string, targets []string, at time.Time)
	// Finish is called after every fault is reverted; it waits, until ctx ends at the latest, for
	// what it watches to recover, stops watching and returns the record.
	Finish(ctx context.Context, revertedAt time.Time) Result
}

// Result is one recorder's part of an experiment's result (experiments.Recording without the
// recorder's name).
type Result struct {
	// Recovered is false when what the recorder watches did not recover in time; Reason says why.
	Recovered bool
	Reason    string
	// Data is the recorder's own document (*Document for Workloads).
	Data any
}
