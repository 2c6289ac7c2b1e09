package injectors

// Target is one thing a fault touches, in structured form. Actions give these to the recorders
// (TargetLister, Event.Subjects) so that no recorder has to parse the human-readable Targets()
// strings back.
type Target struct {
	// Kind is "pod", "process", "netns", "host", "proxy", or a workload kind ("deployment",
	// "statefulset", ...) for faults that act on a workload as a whole (shardOutage).
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	Node      string `json:"node,omitempty"`
	// Workload is the workload that owns a pod (resolved through its ReplicaSet to the
	// Deployment), or the workload itself for a workload-level fault.
	Workload *WorkloadRef `json:"workload,omitempty"`
}

// WorkloadRef names a Kubernetes workload.
type WorkloadRef struct {
	Kind      string `json:"kind"` // deployment, statefulset, replicaset, daemonset
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// TargetLister is implemented by actions that know their targets in structured form; the engine
// passes them to the recorders when the fault is applied.
type TargetLister interface {
	TargetRefs() []Target
}
