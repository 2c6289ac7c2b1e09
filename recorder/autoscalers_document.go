package recorder

import "time"

// AutoscalerDocument is the autoscaler recorder's part of the result (Recording.Data), see
// docs/recovery.md. Times are when this process saw a change (the watch event's arrival, or the
// Prometheus evaluation that first showed it), on the clock the fault and revert times are on.
type AutoscalerDocument struct {
	FirstFault  *time.Time         `json:"firstFault,omitempty"`
	RevertedAt  *time.Time         `json:"revertedAt,omitempty"`
	Autoscalers []AutoscalerRecord `json:"autoscalers"`
}

// AutoscalerRecord is one autoscaler's recording.
type AutoscalerRecord struct {
	// Subject is "hpa NAMESPACE/NAME" or "prometheus NAME{labels}".
	Subject string `json:"subject"`
	// Source is "kubernetes" (watched) or "prometheus" (evaluated at the scrape resolution).
	Source string `json:"source"`
	// Why says why it was recorded: the workload a fault touches that it scales, or the runbook.
	Why string `json:"why,omitempty"`
	// Target is the HPA's scaleTargetRef ("deployment shop/web").
	Target      string `json:"target,omitempty"`
	MinReplicas int32  `json:"minReplicas,omitempty"`
	MaxReplicas int32  `json:"maxReplicas,omitempty"`
	// Query and DesiredQuery are a Prometheus source's PromQL.
	Query        string `json:"query,omitempty"`
	DesiredQuery string `json:"desiredQuery,omitempty"`
	// Changes are every change of current or desired capacity, the first being the state when
	// recording began. Desired is absent where the source does not know it.
	Changes []ReplicaChange `json:"changes"`
	// Conditions are the HPA's condition transitions (AbleToScale, ScalingActive, ScalingLimited).
	Conditions []ConditionChange `json:"conditions,omitempty"`
	// Events are the HPA's events seen live (SuccessfulRescale, FailedGetResourceMetric, ...).
	Events []AutoscalerEvent `json:"events,omitempty"`
	// Blind is set when the source showed nothing at all (a query with no series): the figures
	// are then unknown, not "no scaling".
	Blind string `json:"blind,omitempty"`
}

// ReplicaChange is the capacity from At on.
type ReplicaChange struct {
	At      time.Time `json:"at"`
	Current float64   `json:"current"`
	Desired *float64  `json:"desired,omitempty"`
}

// ConditionChange is one HPA condition's new status and reason. APIServer is the condition's own
// lastTransitionTime (whole seconds, the controller's clock).
type ConditionChange struct {
	At        time.Time  `json:"at"`
	APIServer *time.Time `json:"apiServer,omitempty"`
	Type      string     `json:"type"`
	Status    string     `json:"status"`
	Reason    string     `json:"reason,omitempty"`
	Message   string     `json:"message,omitempty"`
}

// AutoscalerEvent is a Kubernetes event about the HPA, as it arrived (an event repeated by the
// controller arrives again with a higher count).
type AutoscalerEvent struct {
	At        time.Time  `json:"at"`
	APIServer *time.Time `json:"apiServer,omitempty"`
	Type      string     `json:"type"`
	Reason    string     `json:"reason"`
	Message   string     `json:"message,omitempty"`
	Count     int32      `json:"count,omitempty"`
}
