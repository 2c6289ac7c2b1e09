package runbooks

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// KubernetesEnvironment pins a runbook to one Kubernetes cluster. Before anything is listed or
// touched, faultline compares it with the live cluster (see `faultline cluster-id`) and refuses
// the run on any mismatch.
type KubernetesEnvironment struct {
	ClusterID string    `yaml:"clusterID,omitempty" json:"clusterID,omitempty" doc:"UID of the cluster's kube-system namespace, as printed by 'faultline cluster-id'. Created once with the cluster, it tells a golden copy from production even behind the same address."`
	Server    string    `yaml:"server,omitempty" json:"server,omitempty" doc:"API server URL the client must be talking to, e.g. https://staging-api.example.com:6443, as printed by 'faultline cluster-id'."`
	Agent     *PodAgent `yaml:"agent,omitempty" json:"agent,omitempty" doc:"The faultline agents that apply pod network faults (podPartition, podLatency, ...) inside pods; required with those faults."`
}

// OptInLabel is the label (value "enabled") with which a workload, a pod or a namespace accepts
// faults, unless the runbook's policy sets requireOptIn: false.
const OptInLabel = "faultline.dev/chaos"

// WorkloadRef names one workload.
type WorkloadRef struct {
	Kind      string `yaml:"kind" json:"kind" enum:"Deployment,StatefulSet,ReplicaSet,DaemonSet" doc:"Deployment, StatefulSet, ReplicaSet or DaemonSet."`
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace"`
}

func (w WorkloadRef) String() string {
	return fmt.Sprintf("%s %s/%s", strings.ToLower(w.Kind), w.Namespace, w.Name)
}

// PodTarget selects pods: by namespaces and selectors, or as the pods of one workload.
type PodTarget struct {
	Namespaces    []string     `yaml:"namespaces,omitempty" json:"namespaces,omitempty" doc:"Namespaces to select pods in (required unless workload is set)."`
	LabelSelector string       `yaml:"labelSelector,omitempty" json:"labelSelector,omitempty" doc:"Label selector in kubectl syntax, e.g. 'app=checkout,shard in (2,3)'. Empty selects every pod of the namespaces."`
	FieldSelector string       `yaml:"fieldSelector,omitempty" json:"fieldSelector,omitempty" doc:"Field selector in kubectl syntax, e.g. 'spec.nodeName=node-3' or 'status.phase=Running'."`
	Workload      *WorkloadRef `yaml:"workload,omitempty" json:"workload,omitempty" doc:"Select the pods of this workload instead (exclusive with namespaces)."`
}

// Pod-kill modes.
const (
	ModeOne              = "one"
	ModeFixed            = "fixed"
	ModeFixedPercent     = "fixed-percent"
	ModeRandomMaxPercent = "random-max-percent"
	ModeAll              = "all"
)

// PodKill deletes pods, once or every interval; their controllers replace them.
type PodKill struct {
	PodTarget   `yaml:",inline" json:",inline"`
	Mode        string    `yaml:"mode,omitempty" json:"mode,omitempty" enum:"one,fixed,fixed-percent,random-max-percent,all" doc:"How many of the selected pods to kill: one (default), fixed (value pods), fixed-percent (value % rounded up), random-max-percent (a random count between 1 and value %), all."`
	Value       float64   `yaml:"value,omitempty" json:"value,omitempty" doc:"The count for fixed, the percentage for fixed-percent and random-max-percent."`
	GracePeriod *Duration `yaml:"gracePeriod,omitempty" json:"gracePeriod,omitempty" doc:"Grace period of the deletion; 0 kills immediately. Unset means each pod's own terminationGracePeriodSeconds."`
	Interval    Duration  `yaml:"interval,omitempty" json:"interval,omitempty" doc:"Select afresh and kill again every interval during the fault window, the way chaos monkey does. 0 means once."`
}

// Shard-outage modes.
const (
	ModeScaleToZero = "scale-to-zero"
	ModeKeepDown    = "keep-down"
)

// ShardOutage takes a whole shard away for the fault window: the pods selected by a label (e.g.
// shard=2) or one workload.
type ShardOutage struct {
	PodTarget   `yaml:",inline" json:",inline"`
	Mode        string    `yaml:"mode" json:"mode" enum:"scale-to-zero,keep-down" doc:"scale-to-zero: scale the shard's Deployments and StatefulSets to 0 through the scale subresource and restore the exact replica counts on revert. keep-down: delete the shard's pods, and every pod that comes back, for the whole window."`
	GracePeriod *Duration `yaml:"gracePeriod,omitempty" json:"gracePeriod,omitempty" doc:"keep-down only: grace period of the deletions (default 0, immediate)."`
}

// kubernetesFault marks fault kinds that act on a Kubernetes cluster: a runbook using one must
// pin the cluster with environment.kubernetes.
type kubernetesFault interface{ kubernetesFault() }

func (*PodKill) kubernetesFault()     {}
func (*ShardOutage) kubernetesFault() {}

// UsesKubernetes reports whether any fault of the runbook acts on a Kubernetes cluster.
func (r *Runbook) UsesKubernetes() bool {
	for _, x := range r.Experiments {
		for i := range x.Faults {
			if _, ok := x.Faults[i].Spec().(kubernetesFault); ok {
				return true
			}
		}
	}
	return false
}

// validateKubernetes checks environment.kubernetes and the Kubernetes policy fields, and refuses
// Kubernetes faults in a runbook that does not pin its cluster: faultline does not guess.
func (r *Runbook) validateKubernetes(v *Validator) {
	if k := r.Environment.Kubernetes; k != nil {
		if k.ClusterID == "" && k.Server == "" {
			v.Errorf("environment.kubernetes", "set clusterID, server or both (run 'faultline cluster-id' against the cluster to get them)")
		}
		if k.Server != "" {
			if u, err := url.Parse(k.Server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				v.Errorf("environment.kubernetes.server", "%q is not an API server URL such as https://10.0.0.1:6443", k.Server)
			}
		}
		r.validatePodAgents(v)
	} else if r.UsesKubernetes() {
		v.Errorf("environment", "this runbook has Kubernetes faults but no environment.kubernetes: pin the cluster with clusterID and/or server (see 'faultline cluster-id'); faultline refuses to guess which cluster is the golden copy")
	}
	p := r.Policy
	if p.MaxPods < 0 {
		v.Errorf("policy.maxPods", "must not be negative")
	}
	if p.MaxWorkloads < 0 {
		v.Errorf("policy.maxWorkloads", "must not be negative")
	}
	if p.MaxPercent < 0 || p.MaxPercent > 100 {
		v.Errorf("policy.maxPercent", "must be between 0 and 100, got %g", p.MaxPercent)
	}
}

func (t *PodTarget) validate(v *Validator, path string) {
	if t.Workload != nil {
		if len(t.Namespaces) > 0 || t.LabelSelector != "" || t.FieldSelector != "" {
			v.Errorf(path, "workload is exclusive with namespaces, labelSelector and fieldSelector: choose one way to select")
		}
		w := t.Workload
		switch w.Kind {
		case "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet":
		default:
			v.Errorf(path+".workload.kind", "must be Deployment, StatefulSet, ReplicaSet or DaemonSet, got %q", w.Kind)
		}
		if errs := validation.IsDNS1123Subdomain(w.Name); len(errs) > 0 {
			v.Errorf(path+".workload.name", "%q is not a valid object name", w.Name)
		}
		if errs := validation.IsDNS1123Label(w.Namespace); len(errs) > 0 {
			v.Errorf(path+".workload.namespace", "%q is not a valid namespace name (required)", w.Namespace)
		}
		return
	}
	if len(t.Namespaces) == 0 {
		v.Errorf(path+".namespaces", "is required (or select a workload): name the namespaces explicitly, faultline never selects across the whole cluster")
	}
	for i, ns := range t.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			v.Errorf(fmt.Sprintf("%s.namespaces[%d]", path, i), "%q is not a valid namespace name", ns)
		}
	}
	if t.LabelSelector != "" {
		if _, err := labels.Parse(t.LabelSelector); err != nil {
			v.Errorf(path+".labelSelector", "%v", err)
		}
	}
	if t.FieldSelector != "" {
		if _, err := fields.ParseSelector(t.FieldSelector); err != nil {
			v.Errorf(path+".fieldSelector", "%v", err)
		}
	}
}

func validateGrace(v *Validator, path string, d *Duration) {
	if d != nil && d.D()%time.Second != 0 {
		v.Errorf(path, "%s: Kubernetes takes grace periods in whole seconds", d)
	}
}

func (k *PodKill) validate(v *Validator, path string) {
	k.PodTarget.validate(v, path)
	validateGrace(v, path+".gracePeriod", k.GracePeriod)
	validatePodMode(v, path, k.Mode, k.Value)
}

// validatePodMode checks how many of the selected pods a mode takes (podKill, pod network faults).
func validatePodMode(v *Validator, path, mode string, value float64) {
	switch mode {
	case "", ModeOne, ModeAll:
		if value != 0 {
			v.Errorf(path+".value", "mode %s takes no value", orDefault(mode, ModeOne))
		}
	case ModeFixed:
		if value < 1 || value != math.Trunc(value) {
			v.Errorf(path+".value", "mode fixed needs a whole number of pods of at least 1, got %g", value)
		}
	case ModeFixedPercent, ModeRandomMaxPercent:
		if value <= 0 || value > 100 {
			v.Errorf(path+".value", "mode %s needs a percentage above 0 and at most 100, got %g", mode, value)
		}
	default:
		v.Errorf(path+".mode", "must be one, fixed, fixed-percent, random-max-percent or all, got %q", mode)
	}
}

func (s *ShardOutage) validate(v *Validator, path string) {
	s.PodTarget.validate(v, path)
	validateGrace(v, path+".gracePeriod", s.GracePeriod)
	switch s.Mode {
	case ModeScaleToZero:
		if s.FieldSelector != "" {
			v.Errorf(path+".fieldSelector", "scale-to-zero acts on whole workloads: select the shard with labelSelector or workload")
		}
		if w := s.Workload; w != nil && w.Kind != "Deployment" && w.Kind != "StatefulSet" {
			v.Errorf(path+".workload.kind", "scale-to-zero scales Deployments and StatefulSets, not %s (use mode keep-down)", w.Kind)
		}
		if s.GracePeriod != nil {
			v.Errorf(path+".gracePeriod", "applies to keep-down only: scale-to-zero lets the controller terminate pods with their own grace period")
		}
	case ModeKeepDown:
	case "":
		v.Errorf(path+".mode", "is required: scale-to-zero or keep-down")
	default:
		v.Errorf(path+".mode", "must be scale-to-zero or keep-down, got %q", s.Mode)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
