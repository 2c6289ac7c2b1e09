package runbooks

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
