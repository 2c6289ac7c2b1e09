package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/faultline-dev/faultline/runbooks"
)

// DefaultDeniedNamespaces returns the namespaces no Kubernetes fault may touch, whatever the
// runbook says: the control plane's own. faultline's own namespace is added by KubePolicyFor.
func DefaultDeniedNamespaces() []string {
	return []string{"kube-system", "kube-public", "kube-node-lease"}
}

// KubePolicy is the runbook's policy as it applies to Kubernetes targets: the namespace
// deny-list, the opt-in label and the blast-radius limits. Injectors resolve what a fault would
// touch into a KubeFootprint and ask the policy before acting; every refusal names its rule.
type KubePolicy struct {
	Denied       map[string]string // namespace → why it is denied
	RequireOptIn bool
	MaxTargets   int
	MaxPods      int
	MaxPercent   float64
	MaxWorkloads int
}

// KubePolicyFor builds the policy for a run; selfNamespace is faultline's own namespace ("" when
// it does not run in a cluster).
func KubePolicyFor(p runbooks.Policy, selfNamespace string) KubePolicy {
	kp := KubePolicy{
		Denied:       map[string]string{},
		RequireOptIn: p.RequireOptIn == nil || *p.RequireOptIn,
		MaxTargets:   p.MaxTargets,
		MaxPods:      p.MaxPods,
		MaxPercent:   p.MaxPercent,
		MaxWorkloads: p.MaxWorkloads,
	}
	for _, ns := range DefaultDeniedNamespaces() {
		kp.Denied[ns] = "a control-plane namespace"
	}
	if selfNamespace != "" {
		kp.Denied[selfNamespace] = "faultline's own namespace"
	}
	return kp
}

// CheckNamespace refuses a denied namespace.
func (p KubePolicy) CheckNamespace(ns string) error {
	if why, ok := p.Denied[ns]; ok {
		return Refusef("namespace deny-list", "namespace %s is %s and is never a target", ns, why)
	}
	return nil
}

// OptedIn reports whether any of the label sets (the pod's, its workload's, its namespace's)
// carries the opt-in label, or whether the policy does not require it.
func (p KubePolicy) OptedIn(labelSets ...map[string]string) bool {
	if !p.RequireOptIn {
		return true
	}
	for _, l := range labelSets {
		if l[runbooks.OptInLabel] == "enabled" {
			return true
		}
	}
	return false
}

// RefuseNotOptedIn is the refusal for targets that did not opt in.
func RefuseNotOptedIn(what []string) error {
	sort.Strings(what)
	more := ""
	if len(what) > 5 {
		more = fmt.Sprintf(" and %d more", len(what)-5)
		what = what[:5]
	}
	return Refusef("policy.requireOptIn",
		"%s%s did not opt in: label the workload or its namespace %s=enabled, or set policy.requireOptIn: false",
		strings.Join(what, ", "), more, runbooks.OptInLabel)
}

// KubeFootprint is what one Kubernetes fault would touch.
type KubeFootprint struct {
	Targets   int             // lines the fault lists as targets
	Pods      int             // pods killed or taken down
	Workloads []WorkloadShare // the workloads those pods belong to
}

// WorkloadShare is how much of one workload a fault takes.
type WorkloadShare struct {
	Name     string // "deployment shop/checkout"
	Replicas int    // desired replicas (a DaemonSet's desired number scheduled)
	Affected int    // pods of it the fault kills or takes down
}

// CheckBlastRadius refuses a footprint beyond the policy's limits.
func (p KubePolicy) CheckBlastRadius(f KubeFootprint) error {
	if p.MaxTargets > 0 && f.Targets > p.MaxTargets {
		return Refusef("policy.maxTargets", "the fault would touch %d targets, the limit is %d", f.Targets, p.MaxTargets)
	}
	if p.MaxPods > 0 && f.Pods > p.MaxPods {
		return Refusef("policy.maxPods", "the fault would take down %d pods, the limit is %d", f.Pods, p.MaxPods)
	}
	if p.MaxWorkloads > 0 && len(f.Workloads) > p.MaxWorkloads {
		names := make([]string, len(f.Workloads))
		for i, w := range f.Workloads {
			names[i] = w.Name
		}
		sort.Strings(names)
		return Refusef("policy.maxWorkloads", "the fault would touch %d workloads (%s), the limit is %d",
			len(f.Workloads), strings.Join(names, ", "), p.MaxWorkloads)
	}
	if p.MaxPercent > 0 {
		for _, w := range f.Workloads {
			if w.Affected == 0 {
				continue
			}
			pct := 100.0
			if w.Replicas > 0 {
				pct = 100 * float64(w.Affected) / float64(w.Replicas)
			}
			if pct > p.MaxPercent+1e-9 {
				return Refusef("policy.maxPercent", "the fault would take %d of the %d replicas of %s (%.4g%%), the limit is %g%%",
					w.Affected, w.Replicas, w.Name, pct, p.MaxPercent)
			}
		}
	}
	return nil
}
