package experiments

import (
	"context"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
)

// Recorder observes how the system recovers from an experiment (workload readiness, autoscaler
// timelines, circuit breakers). The engine starts a session per experiment once the steady state
// holds, before the first fault, so that the recorder sees the system from before the damage.
type Recorder interface {
	// Name identifies the recorder in the result ("workloads", "hpa", ...).
	Name() string
	// Start begins watching for experiment x; it returns (nil, nil) when x gives it nothing to watch.
	Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (RecorderSession, error)
}

// RecorderSession is one experiment's recording.
type RecorderSession interface {
	// FaultApplied tells the recorder that a fault was applied to targets (as Action.Targets says).
	FaultApplied(kind string, targets []string, at time.Time)
	// Finish is called after every fault is reverted. It waits, until ctx ends at the latest, for
	// what it watches to recover, and returns the record. recovered=false with a reason turns a
	// passing experiment into failed (the runbook's recovery objective was not met).
	Finish(ctx context.Context, revertedAt time.Time) Recording
}

// Recording is one recorder's part of an experiment's result.
type Recording struct {
	Recorder  string `json:"recorder"`
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason,omitempty"`
	// Incomplete is true when the recorder could not see all it should have (its source was
	// unreachable for part of the recording); Reason says what is missing. An incomplete
	// recording never passes an objective silently.
	Incomplete bool `json:"incomplete,omitempty"`
	// Figures and Timelines are what objectives, reports and baseline comparisons read.
	Figures   []Figure   `json:"figures,omitempty"`
	Timelines []Timeline `json:"timelines,omitempty"`
	// Data is the recorder's own document (timelines, per-workload times); see docs/results.md.
	Data any `json:"data,omitempty"`
}
