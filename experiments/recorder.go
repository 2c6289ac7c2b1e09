package experiments

// The recorder contract. Package experiments owns the only Recorder interface; package recorder
// (and any other) implements it, and the command wires the recorders into the Engine.
//
//	type Recorder interface {
//		Name() string
//		Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (RecorderSession, error)
//	}
//
//	type RecorderSession interface {
//		FaultApplied(f AppliedFault)
//		FaultEvent(f AppliedFault, ev injectors.Event)
//		Finish(ctx context.Context, end RecordingEnd) Recording
//	}
//
//	type AppliedFault struct {
//		Name, Kind string              // the fault's name and kind in the runbook
//		Targets    []injectors.Target  // structured (injectors.TargetLister); nil when the action has none
//		Described  []string            // Action.Targets(), for people
//		At         time.Time           // when Apply returned
//	}
//
//	type RecordingEnd struct {
//		FirstFaultAt, RevertedAt time.Time
//		Objectives               *runbooks.Objectives // the experiment's (or the runbook's default); nil when none
//	}
//
// The engine calls, for each experiment: Start once the steady state holds and before the first
// fault; FaultApplied after each fault's Apply; FaultEvent for every event a Sustainer reports
// during the window (e.g. the pods an interval podKill deletes in later rounds, Event.Subjects);
// Finish once, after every fault is reverted and every sustainer has returned. FaultApplied and
// FaultEvent can be called from several goroutines at once. Finish waits, until ctx ends at the
// latest, for what the recorder watches to recover; ctx's deadline is the last revert plus the
// longest of the recovery window and the objectives' own limits, so that a recorder never stops
// watching before an objective could have been met.

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
	// Name identifies the recorder in the result ("workloads", "autoscalers", "breakers") and is
	// the first part of its figures' keys.
	Name() string
	// Start begins watching for experiment x; it returns (nil, nil) when x gives it nothing to watch.
	Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (RecorderSession, error)
}

// RecorderSession is one experiment's recording. See the contract at the top of this file.
type RecorderSession interface {
	// FaultApplied tells the recorder that a fault was applied, with its targets.
	FaultApplied(f AppliedFault)
	// FaultEvent passes on an event a sustained fault reported during the window; ev.Subjects
	// are the targets it touched (nil when the event touched nothing).
	FaultEvent(f AppliedFault, ev injectors.Event)
	// Finish is called after every fault is reverted. It waits, until ctx ends at the latest, for
	// what it watches to recover, and returns the record. Recovered=false with a reason turns a
	// passing experiment into failed.
	Finish(ctx context.Context, end RecordingEnd) Recording
}

// AppliedFault is one fault as the engine applied it.
type AppliedFault struct {
	Name string
	Kind string
	// Targets are the fault's targets in structured form (injectors.TargetLister); nil for an
	// action that does not list them.
	Targets []injectors.Target
	// Described are the action's human-readable targets (Action.Targets).
	Described []string
	At        time.Time
}

// RecordingEnd is what Finish is told.
type RecordingEnd struct {
	// FirstFaultAt is when the first fault was applied (zero when none was).
	FirstFaultAt time.Time
	// RevertedAt is when the last revert finished (zero when nothing was applied).
	RevertedAt time.Time
	// Objectives are the experiment's recovery objectives, so that a recorder can say in a
	// figure's Note how far it watched; the engine judges them, not the recorder.
	Objectives *runbooks.Objectives
}

// Recording is one recorder's part of an experiment's result.
type Recording struct {
	// Recorder is the recorder's Name; the engine fills it in when the session leaves it empty.
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
	// Data is the recorder's own document (timelines, per-workload times); see docs/recovery.md.
	Data any `json:"data,omitempty"`
}
