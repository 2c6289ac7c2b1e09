package experiments

import (
	"time"

	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// PlannedExperiment is what a dry run prints for one experiment.
type PlannedExperiment struct {
	Name       string            `json:"name"`
	Duration   string            `json:"duration"`
	Faults     []PlannedFault    `json:"faults"`
	Guardrails []PlannedCheck    `json:"guardrails,omitempty"`
	Hypothesis []PlannedCheck    `json:"hypothesis,omitempty"`
	Recovery   runbooks.Duration `json:"recoveryWithin,omitempty"`
}

// PlannedFault is one fault and the exact targets it would touch now.
type PlannedFault struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
}

// PlannedCheck is a guardrail as it would be evaluated.
type PlannedCheck struct {
	Name     string `json:"name"`
	Describe string `json:"describe"`
	Interval string `json:"interval"`
	For      string `json:"for"`
}

func plan(x runbooks.Experiment, acts []prepared, guards, hyps []*guardrail.Guardrail) PlannedExperiment {
	p := PlannedExperiment{Name: x.Name, Duration: x.Duration.String()}
	if x.Recovery != nil {
		p.Recovery = x.Recovery.Within
	}
	for _, a := range acts {
		p.Faults = append(p.Faults, PlannedFault{Name: a.fault.Name, Kind: a.fault.Kind(), Targets: a.act.Targets()})
	}
	p.Guardrails = planChecks(guards)
	p.Hypothesis = planChecks(hyps)
	return p
}

func planChecks(gs []*guardrail.Guardrail) []PlannedCheck {
	var out []PlannedCheck
	for _, g := range gs {
		out = append(out, PlannedCheck{Name: g.Name, Describe: g.Probe.Describe(), Interval: g.Interval.String(), For: g.For.String()})
	}
	return out
}

// Progress is a snapshot for live displays.
type Progress struct {
	Phase      string // preflight, steady-state, inject, observe, revert, after, pause
	RunID      string
	Experiment string
	Since      time.Time     // when the phase began
	Duration   time.Duration // the phase's planned length, when it has one
	Guardrail  string        // set on an observation
	Obs        *guardrail.Observation
}
