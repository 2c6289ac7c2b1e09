package runbooks

import (
	"math"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// KubernetesProbe checks a condition read from the Kubernetes API on every evaluation: how many
// replicas of a workload are available, or how many of the pods a selector matches are Ready.
// Exactly one target (workload or pods) is set, with the condition that fits it:
//
//	kubernetes:
//	  workload: {kind: Deployment, namespace: shop, name: checkout}
//	  availableReplicas: {minPercent: 80}   # or {min: 3}
//
//	kubernetes:
//	  pods: {namespace: shop, labelSelector: "app=cart"}
//	  readyPods: {min: 4}                   # or {minPercent: 80}
//
// The workload is named the way pod-kill and shard-outage faults name theirs (WorkloadRef), so a
// runbook can guard exactly the workload it breaks.
type KubernetesProbe struct {
	Workload *WorkloadRef           `yaml:"workload,omitempty" json:"workload,omitempty" target:"workload" doc:"A Deployment, StatefulSet, ReplicaSet or DaemonSet; healthy while its available replicas meet availableReplicas."`
	Pods     *KubernetesPodSelector `yaml:"pods,omitempty" json:"pods,omitempty" target:"pods" doc:"Pods matching a label selector in one namespace; healthy while the Ready ones meet readyPods."`

	AvailableReplicas *KubernetesMinimum `yaml:"availableReplicas,omitempty" json:"availableReplicas,omitempty" doc:"For a workload: the fewest available replicas that are healthy, as a count (min) or a percentage (minPercent) of the desired replicas (spec.replicas; a DaemonSet's desiredNumberScheduled). A workload scaled to 0 fails minPercent."`
	ReadyPods         *KubernetesMinimum `yaml:"readyPods,omitempty" json:"readyPods,omitempty" doc:"For pods: the fewest Ready, not terminating pods that are healthy, as a count (min) or a percentage (minPercent) of the matching pods that are neither terminating nor finished (Succeeded/Failed). A pod deleted and not yet re-created drops out of the percentage: prefer a workload, or min, to catch it."`
	Timeout           Duration           `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Per-request timeout (default: the smaller of the interval and 5s)."`
}

// KubernetesPodSelector selects pods in one namespace.
type KubernetesPodSelector struct {
	Namespace     string `yaml:"namespace" json:"namespace"`
	LabelSelector string `yaml:"labelSelector,omitempty" json:"labelSelector,omitempty" doc:"Kubernetes label selector, e.g. \"app=cart,tier in (web,api)\". Empty means every pod in the namespace."`
}

// KubernetesMinimum is a lower bound: a count or a percentage, exactly one of them.
type KubernetesMinimum struct {
	Min        *int     `yaml:"min,omitempty" json:"min,omitempty" bound:"min" doc:"At least this many (1 or more)."`
	MinPercent *float64 `yaml:"minPercent,omitempty" json:"minPercent,omitempty" bound:"minPercent" doc:"At least this percentage, above 0 and at most 100; the count it requires is rounded up."`
}

// Target returns the target that is set: workload, pods or "".
func (p *KubernetesProbe) Target() string {
	m := setMembers(p, "target")
	if len(m) == 0 {
		return ""
	}
	return m[0].tag
}

// Required returns how many of total must be available/ready: min, or minPercent of total
// rounded up (so 80 % of 5 is 4, and 80 % of 3 is 3).
func (m *KubernetesMinimum) Required(total int) int {
	if m.Min != nil {
		return *m.Min
	}
	if m.MinPercent == nil {
		return 0
	}
	// The epsilon keeps 70 % of 10 at 7 despite 0.7*10 = 7.000000000000001 in floating point.
	return int(math.Ceil(*m.MinPercent*float64(total)/100 - 1e-9))
}

// String renders the bound as the runbook wrote it: ">= 3" or ">= 80%".
func (m *KubernetesMinimum) String() string {
	if m.Min != nil {
		return ">= " + strconv.Itoa(*m.Min)
	}
	if m.MinPercent != nil {
		return ">= " + strconv.FormatFloat(*m.MinPercent, 'g', -1, 64) + "%"
	}
	return ""
}

func (p *KubernetesProbe) validate(v *Validator, path string) {
	validateUnion(v, path, p, "target", "kubernetes guardrail target")
	if w := p.Workload; w != nil {
		ref := path + ".workload"
		switch w.Kind {
		case "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet":
		case "":
			v.Errorf(ref+".kind", "is required: Deployment, StatefulSet, ReplicaSet or DaemonSet")
		default:
			v.Errorf(ref+".kind", "must be Deployment, StatefulSet, ReplicaSet or DaemonSet, got %q", w.Kind)
		}
		validateKubeNamespace(v, ref+".namespace", w.Namespace)
		if w.Name == "" {
			v.Errorf(ref+".name", "is required")
		} else if msgs := validation.IsDNS1123Subdomain(w.Name); len(msgs) > 0 {
			v.Errorf(ref+".name", "%q is not a valid object name: %s", w.Name, strings.Join(msgs, "; "))
		}
		if p.ReadyPods != nil {
			v.Errorf(path+".readyPods", "applies to pods; for a workload use availableReplicas")
		}
		if p.AvailableReplicas == nil {
			v.Errorf(path+".availableReplicas", "is required for a workload, e.g. {minPercent: 80} or {min: 3}")
		} else {
			p.AvailableReplicas.validate(v, path+".availableReplicas")
		}
	}
	if s := p.Pods; s != nil {
		validateKubeNamespace(v, path+".pods.namespace", s.Namespace)
		if _, err := labels.Parse(s.LabelSelector); err != nil {
			v.Errorf(path+".pods.labelSelector", "%q: %v", s.LabelSelector, err)
		}
		if p.AvailableReplicas != nil {
			v.Errorf(path+".availableReplicas", "applies to a workload; for pods use readyPods")
		}
		if p.ReadyPods == nil {
			v.Errorf(path+".readyPods", "is required for pods, e.g. {minPercent: 80} or {min: 4}")
		} else {
			p.ReadyPods.validate(v, path+".readyPods")
		}
	}
	if p.Timeout < 0 {
		v.Errorf(path+".timeout", "must not be negative")
	}
}

func (m *KubernetesMinimum) validate(v *Validator, path string) {
	validateUnion(v, path, m, "bound", "minimum")
	if m.Min != nil && *m.Min < 1 {
		v.Errorf(path+".min", "must be at least 1, got %d (a minimum of 0 always holds)", *m.Min)
	}
	if m.MinPercent != nil && !(*m.MinPercent > 0 && *m.MinPercent <= 100) {
		v.Errorf(path+".minPercent", "must be above 0 and at most 100, got %g", *m.MinPercent)
	}
}

func validateKubeNamespace(v *Validator, path, ns string) {
	if ns == "" {
		v.Errorf(path, "is required")
		return
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		v.Errorf(path, "%q is not a valid namespace name: %s", ns, strings.Join(msgs, "; "))
	}
}
