package runbooks

import "fmt"

// Objectives are recovery objectives, judged from the recorders' figures into the verdict: a
// missed one fails the experiment (exit 1) and the reason names the figure, the limit and the value.
type Objectives struct {
	Breakers    *BreakerObjectives     `yaml:"breakers,omitempty" json:"breakers,omitempty"`
	Autoscaling *AutoscalingObjectives `yaml:"autoscaling,omitempty" json:"autoscaling,omitempty"`
	Workloads   *WorkloadObjectives    `yaml:"workloads,omitempty" json:"workloads,omitempty"`
	Detection   *DetectionObjectives   `yaml:"detection,omitempty" json:"detection,omitempty"`
}

// BreakerObjectives apply to every recorded breaker.
type BreakerObjectives struct {
	ClosedWithin Duration `yaml:"closedWithin,omitempty" json:"closedWithin,omitempty" doc:"Every breaker that opened is closed again within this long after the last revert."`
	MaxOpens     *int     `yaml:"maxOpens,omitempty" json:"maxOpens,omitempty" doc:"No breaker opens more often than this during the experiment (flapping)."`
}

// AutoscalingObjectives apply to every recorded autoscaler.
type AutoscalingObjectives struct {
	ScaleOutWithin      Duration `yaml:"scaleOutWithin,omitempty" json:"scaleOutWithin,omitempty" doc:"The autoscaler scales out within this long after the first fault."`
	MaxDirectionChanges *int     `yaml:"maxDirectionChanges,omitempty" json:"maxDirectionChanges,omitempty" doc:"The autoscaler changes direction (out/in) at most this often (thrash)."`
	BaselineWithin      Duration `yaml:"baselineWithin,omitempty" json:"baselineWithin,omitempty" doc:"The autoscaler is back at its replica count from before the fault within this long after the last revert."`
}

// WorkloadObjectives apply to every recorded workload.
type WorkloadObjectives struct {
	ReadyWithin Duration `yaml:"readyWithin,omitempty" json:"readyWithin,omitempty" doc:"Every disrupted workload is fully Ready again within this long after its last disruption."`
}

// DetectionObjectives bound how quickly the guardrails noticed the fault.
type DetectionObjectives struct {
	Within Duration `yaml:"within,omitempty" json:"within,omitempty" doc:"A guardrail breaches within this long after the first fault (time to detect)."`
}

// ObjectivesFor returns the objectives that apply to experiment i: the runbook's default
// (Runbook.Objectives) with each group the experiment sets (breakers, autoscaling, workloads,
// detection) replacing the default's group of the same name. Nil when neither sets any.
func (r *Runbook) ObjectivesFor(i int) *Objectives {
	x, d := r.Experiments[i].Objectives, r.Objectives
	switch {
	case d == nil:
		return x
	case x == nil:
		return d
	}
	o := *d
	if x.Breakers != nil {
		o.Breakers = x.Breakers
	}
	if x.Autoscaling != nil {
		o.Autoscaling = x.Autoscaling
	}
	if x.Workloads != nil {
		o.Workloads = x.Workloads
	}
	if x.Detection != nil {
		o.Detection = x.Detection
	}
	return &o
}

// validate checks that each objective sets a limit; path is where o is in the runbook.
func (o *Objectives) validate(v *Validator, path string) {
	if o.Breakers == nil && o.Autoscaling == nil && o.Workloads == nil && o.Detection == nil {
		v.Errorf(path, "sets no objective: give breakers, autoscaling, workloads or detection, e.g. workloads: {readyWithin: 30s}")
		return
	}
	count := func(p string, n *int) {
		if n != nil && *n < 0 {
			v.Errorf(p, "must not be negative")
		}
	}
	if b := o.Breakers; b != nil {
		if b.ClosedWithin == 0 && b.MaxOpens == nil {
			v.Errorf(path+".breakers", "sets no objective: give closedWithin or maxOpens")
		}
		count(path+".breakers.maxOpens", b.MaxOpens)
	}
	if a := o.Autoscaling; a != nil {
		if a.ScaleOutWithin == 0 && a.MaxDirectionChanges == nil && a.BaselineWithin == 0 {
			v.Errorf(path+".autoscaling", "sets no objective: give scaleOutWithin, maxDirectionChanges or baselineWithin")
		}
		count(path+".autoscaling.maxDirectionChanges", a.MaxDirectionChanges)
	}
	if w := o.Workloads; w != nil && w.ReadyWithin == 0 {
		v.Errorf(path+".workloads", "sets no objective: give readyWithin, e.g. readyWithin: 30s")
	}
	if d := o.Detection; d != nil && d.Within == 0 {
		v.Errorf(path+".detection", "sets no objective: give within, e.g. within: 10s")
	}
}

// validateObjectives checks the runbook's default and each experiment's objectives, and that
// something will be recorded for every objective that applies to an experiment: an objective
// nothing can measure would fail every run, which is better said before anything is touched.
func (r *Runbook) validateObjectives(v *Validator) {
	if r.Objectives != nil {
		r.Objectives.validate(v, "objectives")
	}
	for i := range r.Experiments {
		x := &r.Experiments[i]
		p := fmt.Sprintf("experiments[%d].objectives", i)
		if x.Objectives != nil {
			x.Objectives.validate(v, p)
		}
		o := r.ObjectivesFor(i)
		if o == nil {
			continue
		}
		// Where the objective came from decides where the problem is reported.
		report := func(group string, own bool, format string, args ...any) {
			if own {
				v.Errorf(p+"."+group, format, args...)
				return
			}
			v.Errorf("objectives."+group, "applies to experiment %q, but "+format, append([]any{x.Name}, args...)...)
		}
		kube := false
		for j := range x.Faults {
			switch x.Faults[j].Spec().(type) {
			case *PodKill, *ShardOutage:
				kube = true
			}
		}
		mine := x.Objectives
		if mine == nil {
			mine = &Objectives{}
		}
		if o.Workloads != nil && !kube {
			report("workloads", mine.Workloads != nil, "nothing records workloads: only podKill and shardOutage faults disrupt a workload the recorder follows")
		}
		if o.Autoscaling != nil && !kube && (x.Record == nil || len(x.Record.Autoscalers) == 0) {
			report("autoscaling", mine.Autoscaling != nil, "nothing records an autoscaler: add record: {autoscalers: [...]}, or a podKill or shardOutage fault on a workload an HPA scales")
		}
		if o.Breakers != nil && (x.Record == nil || len(x.Record.Breakers) == 0) {
			report("breakers", mine.Breakers != nil, "nothing records a circuit breaker: add record: {breakers: [...]}")
		}
		if o.Detection != nil && len(r.Guardrails) == 0 && len(x.Hypothesis) == 0 {
			report("detection", mine.Detection != nil, "nothing can detect the fault: add a guardrail or a hypothesis check")
		}
	}
}
