package experiments

import "time"

// The recorders' common vocabulary. A recorder's own document (Recording.Data) is free-form; what
// the engine judges, the reports chart and a baseline comparison compares is expressed in these
// types, so that none of them needs to know which recorder produced a figure or a lane.

// Figure is one recovery figure: a named number that can be judged against an objective and
// compared with the same figure of an earlier run.
type Figure struct {
	// Key is stable across runs of the same runbook, so that a baseline can be matched:
	// "<recorder>/<subject>/<metric>", e.g. "breakers/haproxy be_app/srv2/timeToClose".
	Key string `json:"key"`
	// Subject is what the figure is about, as a person reads it: "hpa shop/web", "breaker
	// be_app/srv2", "deployment shop/web", "experiment".
	Subject string `json:"subject"`
	// Metric names the figure; docs/recovery.md lists them (timeToScaleOut, peakReplicas,
	// directionChanges, timeToBaseline, timeToOpen, opens, openTime, timeToClose, timeToReady,
	// timeToDetect, budgetBurned, ...).
	Metric string `json:"metric"`
	// Unit is "s" (a duration in seconds), "count", "replicas" or "ratio".
	Unit string `json:"unit"`
	// Value is unset when the figure was not reached (a breaker that never closed); Note says why.
	Value *float64 `json:"value,omitempty"`
	// Uncertainty is the ± bound of Value in Unit (a Prometheus source: scrape + evaluation interval).
	Uncertainty float64 `json:"uncertainty,omitempty"`
	Note        string  `json:"note,omitempty"`
	// HigherIsBetter marks figures where a larger value is an improvement (none of the timing
	// figures); a baseline comparison flags a change in the worse direction only.
	HigherIsBetter bool `json:"higherIsBetter,omitempty"`
}

// Timeline is one chartable lane of a recording: a numeric series (replicas over time) or a
// state lane (a breaker's closed/half-open/open).
type Timeline struct {
	Key     string `json:"key"`
	Subject string `json:"subject"`
	// Type is "series" (Series set) or "state" (States set).
	Type   string         `json:"type"`
	Unit   string         `json:"unit,omitempty"`
	Series []Series       `json:"series,omitempty"`
	States []StateChange  `json:"states,omitempty"`
	Marks  []TimelineMark `json:"marks,omitempty"`
	// Resolution is how precisely the times are known, in words ("watch events, ≤100 ms",
	// "Prometheus scrape 15s + evaluation 1s").
	Resolution string `json:"resolution,omitempty"`
}

// Series is one named line of a series timeline ("current", "desired").
type Series struct {
	Name   string  `json:"name"`
	Points []Point `json:"points"`
}

// Point is a value at a time.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// StateChange is a state lane's transition into State at At, known to within ±Uncertainty
// seconds.
type StateChange struct {
	At          time.Time `json:"at"`
	State       string    `json:"state"`
	Uncertainty float64   `json:"uncertainty,omitempty"`
}

// TimelineMark is an event worth a marker on the lane (a SuccessfulRescale event, a pod killed).
type TimelineMark struct {
	At    time.Time `json:"at"`
	Label string    `json:"label"`
}

// ObjectiveResult is one recovery objective of the runbook judged against a figure.
type ObjectiveResult struct {
	// Name is the objective as the runbook spells it, e.g. "breakers.closedWithin".
	Name string `json:"name"`
	// Figure is the key of the figure judged (one objective can be judged against several
	// figures, one result each).
	Figure string `json:"figure,omitempty"`
	Limit  string `json:"limit"`
	Value  string `json:"value"`
	Passed bool   `json:"passed"`
	Reason string `json:"reason,omitempty"`
}
