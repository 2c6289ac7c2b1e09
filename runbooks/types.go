// Package runbooks owns the runbook format: the Go types, the strict loader, semantic validation and
// the JSON Schema generated from these types. Everything else in faultline consumes a validated *Runbook.
package runbooks

// APIVersion is the only runbook apiVersion this build understands.
const APIVersion = "faultline.dev/v1alpha1"

// Runbook is one game day: where it may run, what watches over it, and the experiments in order.
type Runbook struct {
	APIVersion  string       `yaml:"apiVersion" json:"apiVersion" doc:"Must be faultline.dev/v1alpha1."`
	Kind        string       `yaml:"kind" json:"kind" doc:"Must be Runbook."`
	Metadata    Metadata     `yaml:"metadata" json:"metadata"`
	Environment Environment  `yaml:"environment" json:"environment" doc:"The environment this runbook is allowed to touch; anything else is refused before a fault is applied."`
	Policy      Policy       `yaml:"policy,omitempty" json:"policy,omitempty" doc:"Limits on what the faults may touch (blast radius)."`
	Guardrails  []Guardrail  `yaml:"guardrails,omitempty" json:"guardrails,omitempty" doc:"SLO checks that must hold before injection (steady state), are watched during it (a breach halts and reverts everything) and must hold again after it."`
	Load        *LoadSpec    `yaml:"load,omitempty" json:"load,omitempty" doc:"HTTP load faultline drives from before the first steady-state check to the end of the last experiment's recovery window."`
	Experiments []Experiment `yaml:"experiments" json:"experiments" doc:"Run in order; a halted or not-started experiment stops the game day."`
	Objectives  *Objectives  `yaml:"objectives,omitempty" json:"objectives,omitempty" doc:"Default recovery objectives for every experiment; a group an experiment sets (breakers, autoscaling, workloads, detection) replaces the default's."`
	Baseline    *Baseline    `yaml:"baseline,omitempty" json:"baseline,omitempty" doc:"How a run is compared with a baseline run (--baseline, faultline compare): tolerances for the recovery figures."`
}

// Metadata names and labels a runbook.
type Metadata struct {
	Name        string            `yaml:"name" json:"name" doc:"A short name, used in history, metrics and reports."`
	Description string            `yaml:"description,omitempty" json:"description,omitempty"`
	Owner       string            `yaml:"owner,omitempty" json:"owner,omitempty" doc:"Team or person to contact about this game day."`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Environment declares what the runbook may touch. Preflight compares it with the live environment
// and refuses to start on any mismatch: chaos belongs in staging and golden copies, never elsewhere.
type Environment struct {
	Name  string   `yaml:"name" json:"name" doc:"Name of the environment, e.g. staging-eu1."`
	Type  string   `yaml:"type" json:"type" enum:"staging,golden-copy,local" doc:"What the environment is: staging, golden-copy or local. There is no production type."`
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty" doc:"Host names (shell globs) where host-level faults (processes, network) may run. Empty means any host."`
	// Kubernetes pins the cluster; required when the runbook has Kubernetes faults.
	// Agents are the faultline agents of plain Linux hosts, for faults with `on`.
	Agents     *HostAgents            `yaml:"agents,omitempty" json:"agents,omitempty" doc:"The faultline agents of plain Linux hosts (golden copies built of VMs) that faults with on: are sent to."`
	Kubernetes *KubernetesEnvironment `yaml:"kubernetes,omitempty" json:"kubernetes,omitempty" doc:"The one Kubernetes cluster this runbook may touch (required with Kubernetes faults); any other cluster is refused before anything is listed."`
}

// Policy bounds the blast radius of every fault in the runbook.
type Policy struct {
	MaxTargets int `yaml:"maxTargets,omitempty" json:"maxTargets,omitempty" doc:"Refuse a fault that would touch more than this many targets (processes, pods, ...). 0 means no limit."`

	// Kubernetes blast radius and opt-in (safety/kubernetes_policy.go).
	MaxPods      int     `yaml:"maxPods,omitempty" json:"maxPods,omitempty" doc:"Refuse a Kubernetes fault that would kill or take down more than this many pods. 0 means no limit."`
	MaxPercent   float64 `yaml:"maxPercent,omitempty" json:"maxPercent,omitempty" doc:"Refuse a Kubernetes fault that would take more than this percentage of any one workload's replicas (scale-to-zero takes 100%). 0 means no limit."`
	MaxWorkloads int     `yaml:"maxWorkloads,omitempty" json:"maxWorkloads,omitempty" doc:"Refuse a Kubernetes fault that would touch more than this many workloads. 0 means no limit."`
	RequireOptIn *bool   `yaml:"requireOptIn,omitempty" json:"requireOptIn,omitempty" doc:"Default true: a pod is a target only when it, its workload or its namespace carries the label faultline.dev/chaos=enabled. Set false explicitly to drop that requirement."`
}

// Experiment is one hypothesis tested under a set of faults.
type Experiment struct {
	Name        string      `yaml:"name" json:"name"`
	Description string      `yaml:"description,omitempty" json:"description,omitempty"`
	Duration    Duration    `yaml:"duration" json:"duration" doc:"How long the faults stay applied."`
	Faults      []Fault     `yaml:"faults" json:"faults" doc:"Applied together at the start, reverted together at the end or on halt."`
	Hypothesis  []Guardrail `yaml:"hypothesis,omitempty" json:"hypothesis,omitempty" doc:"Checks that should hold while the faults are active. A deviation fails the experiment (exit 1) but does not halt it."`
	Recovery    *Recovery   `yaml:"recovery,omitempty" json:"recovery,omitempty" doc:"What must be true again after the faults are reverted."`
	PauseAfter  Duration    `yaml:"pauseAfter,omitempty" json:"pauseAfter,omitempty" doc:"Wait this long before the next experiment."`
	Record      *Record     `yaml:"record,omitempty" json:"record,omitempty" doc:"What to record besides the workloads the faults touch: autoscalers and circuit breakers."`
	Load        *LoadSpec   `yaml:"load,omitempty" json:"load,omitempty" doc:"HTTP load for this experiment only (from its steady-state check to the end of its recovery window), instead of the runbook's."`
	Objectives  *Objectives `yaml:"objectives,omitempty" json:"objectives,omitempty" doc:"Recovery objectives judged from the recordings; a missed one fails the experiment (exit 1)."`
}

// Recovery is the objective after revert: the guardrails hold again within a window.
type Recovery struct {
	Within Duration `yaml:"within" json:"within" doc:"Guardrails must all hold again within this long after the last fault is reverted, else the verdict is failed."`
}
