package recorder

import (
	"time"
)

// Document is the workload recorder's part of the result (Recording.Data), see docs/recovery.md.
//
// Every moment carries two clocks: `at`, when this process received the watch event that showed
// it (millisecond precision, this host's clock, the clock fault and revert times are on), and
// `apiServer`, the timestamp Kubernetes itself recorded for it where one exists (creationTimestamp,
// the PodScheduled and Ready conditions' lastTransitionTime, deletionTimestamp minus the grace
// period) — whole seconds, written by the API server or the kubelet on their own clocks. Durations
// are computed from `at`, except for a moment marked `late` (see Moment).
type Document struct {
	// Faults are the faults the engine reported applied, with their targets.
	Faults []FaultMark `json:"faults,omitempty"`
	// RevertedAt is when the last fault of the experiment was reverted.
	RevertedAt *time.Time `json:"revertedAt,omitempty"`
	// Workloads are the workloads the experiment's faults target, one entry each.
	Workloads []WorkloadRecord `json:"workloads"`
	// Pods are the pods deleted while the recorder watched, in the order the deletions were seen,
	// each with the pod that replaced it.
	Pods []PodTimeline `json:"pods"`
}

// FaultMark is one fault as the engine reported it applied.
type FaultMark struct {
	Name      string    `json:"name,omitempty"`
	Kind      string    `json:"kind"`
	Targets   []string  `json:"targets,omitempty"`
	AppliedAt time.Time `json:"appliedAt"`
}

// WorkloadRecord is one workload's recovery.
type WorkloadRecord struct {
	// Workload is "deployment NAMESPACE/NAME" (statefulset, replicaset, daemonset).
	Workload string `json:"workload"`
	// Desired is the replica count the workload must reach again: the larger of spec.replicas when
	// the recorder started and now (a DaemonSet's desiredNumberScheduled), so that a workload
	// scaled to zero by the fault is not "recovered" at zero.
	Desired int `json:"desired"`
	// Ready and Available are the counts at the end of the recording: Ready pods (not terminating)
	// seen by the recorder, and the controller's status.availableReplicas.
	Ready     int `json:"ready"`
	Available int `json:"available"`
	// MinAvailable and MinReady are the lowest counts seen while recording.
	MinAvailable int `json:"minAvailable"`
	MinReady     int `json:"minReady"`
	// PodsKilled counts the workload's pods deleted while recording.
	PodsKilled int `json:"podsKilled"`
	// DisruptedAt is the first deletion of one of its pods, or the first drop in availability if
	// that came first. LastKillAt is the last deletion.
	DisruptedAt *Moment `json:"disruptedAt,omitempty"`
	LastKillAt  *Moment `json:"lastKillAt,omitempty"`
	// RecoveredAt is when, after the last deletion, the workload was fully available again: at least
	// Desired pods Ready and not terminating, status.availableReplicas at least Desired, and the
	// controller's status current (observedGeneration). Unset when it did not recover, or was never
	// disrupted.
	RecoveredAt *Moment `json:"recoveredAt,omitempty"`
	// TimeToRecover is RecoveredAt − DisruptedAt ("from the fault"); AfterLastKill is
	// RecoveredAt − LastKillAt; AfterRevert is RecoveredAt − the last revert, set only when the
	// workload recovered after the revert (a shard held down until revert); RecoveredBeforeRevert
	// says it recovered while the fault window was still open.
	TimeToRecover         string `json:"timeToRecover,omitempty"`
	AfterLastKill         string `json:"afterLastKill,omitempty"`
	AfterRevert           string `json:"afterRevert,omitempty"`
	RecoveredBeforeRevert bool   `json:"recoveredBeforeRevert,omitempty"`
	// Recovered is false when the workload was not fully available by the recovery deadline;
	// Reason then says what was missing.
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason,omitempty"`
}

// PodTimeline is one deleted pod: killed → replacement created → scheduled → Ready.
type PodTimeline struct {
	Pod      string `json:"pod"` // NAMESPACE/NAME
	UID      string `json:"uid"`
	Workload string `json:"workload,omitempty"`
	Node     string `json:"node,omitempty"`
	// Targeted is true when a fault named this pod among its targets (a pod the controller deleted
	// on its own, e.g. scaling down, is false).
	Targeted bool `json:"targeted,omitempty"`
	// KilledAt is when the deletion was seen (deletionTimestamp set, or the pod gone at once);
	// GoneAt is when the pod object disappeared (the kubelet confirmed it stopped).
	KilledAt *Moment `json:"killedAt"`
	GoneAt   *Moment `json:"goneAt,omitempty"`
	// Replacement is the pod the controller created in its place, matched by name for a
	// StatefulSet, by node for a DaemonSet, and otherwise in order (the n-th pod created after
	// the first deletion replaces the n-th deleted pod). Unset for a pod without a tracked
	// controller, or when no replacement appeared.
	Replacement *Replacement `json:"replacement,omitempty"`
	// TimeToReady is Replacement.ReadyAt − KilledAt.
	TimeToReady string `json:"timeToReady,omitempty"`
}

// Replacement is the pod that took a killed pod's place.
type Replacement struct {
	Pod         string  `json:"pod"`
	UID         string  `json:"uid"`
	Node        string  `json:"node,omitempty"`
	CreatedAt   *Moment `json:"createdAt"`
	ScheduledAt *Moment `json:"scheduledAt,omitempty"`
	ReadyAt     *Moment `json:"readyAt,omitempty"`
	// Pending says why the pod is not scheduled, in the scheduler's words, when it is not.
	Pending string `json:"pending,omitempty"`
	// CreatedToReady is ReadyAt − CreatedAt.
	CreatedToReady string `json:"createdToReady,omitempty"`
}

// Moment is when something happened, on two clocks.
type Moment struct {
	// At is when the watch event showing it reached this process (millisecond precision).
	At time.Time `json:"at"`
	// APIServer is Kubernetes' own timestamp for it, in whole seconds, when there is one.
	APIServer *time.Time `json:"apiServer,omitempty"`
	// Late is true when At is more than the recorder's lateness bound (2s) after APIServer: the
	// event was delivered late (a watch that broke and re-listed), so durations use APIServer.
	Late bool `json:"late,omitempty"`
}

// Best is the time durations are computed from: At, or APIServer for a late moment.
func (m *Moment) Best() time.Time {
	if m.Late && m.APIServer != nil {
		return *m.APIServer
	}
	return m.At
}

func newMoment(at time.Time, server *time.Time, lateAfter time.Duration) *Moment {
	m := &Moment{At: at}
	if server != nil && !server.IsZero() {
		s := *server
		m.APIServer = &s
		m.Late = at.Sub(s) > lateAfter
	}
	return m
}

// span renders b − a as a Go duration string rounded to the millisecond.
func span(a, b *Moment) string {
	if a == nil || b == nil {
		return ""
	}
	return b.Best().Sub(a.Best()).Round(time.Millisecond).String()
}
