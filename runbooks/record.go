package runbooks

// Record names what an experiment's recorders watch beyond what its faults touch: the workloads
// a fault touches are always recorded, and so are the HorizontalPodAutoscalers that scale them.
type Record struct {
	Autoscalers []AutoscalerSpec `yaml:"autoscalers,omitempty" json:"autoscalers,omitempty" doc:"Autoscalers to record besides the HPAs of the workloads the faults touch."`
	Breakers    []BreakerSpec    `yaml:"breakers,omitempty" json:"breakers,omitempty" doc:"Circuit breakers to record, from Prometheus metrics (a preset or custom queries)."`
}
