// Package kubernetes implements the Kubernetes faults: pod-kill (podkill.go) and shard-outage
// (shardoutage.go). Both resolve their targets here, through the policy in safety (namespace
// deny-list, opt-in label, blast radius), before anything is touched.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// pod is a pod as the ledger records it. The UID tells it from a later pod with the same name
// (a StatefulSet's replacement), so a kill never hits a pod it did not choose.
type pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Node      string `json:"node,omitempty"`
	Workload  string `json:"workload,omitempty"`
	// wl is Workload in structured form, for the recorders (not in the ledger).
	wl *injectors.WorkloadRef
}

// target is the pod in the structured form the recorders read.
func (p pod) target() injectors.Target {
	return injectors.Target{Kind: "pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID, Node: p.Node, Workload: p.wl}
}

func podTargets(ps []pod) []injectors.Target {
	out := make([]injectors.Target, len(ps))
	for i, p := range ps {
		out[i] = p.target()
	}
	return out
}

func (p pod) String() string {
	node := "on node " + p.Node
	if p.Node == "" {
		node = "not scheduled"
	}
	return fmt.Sprintf("pod %s/%s (uid %s) %s", p.Namespace, p.Name, p.UID, node)
}

func podOf(o *corev1.Pod, w *workload) pod {
	p := pod{Namespace: o.Namespace, Name: o.Name, UID: string(o.UID), Node: o.Spec.NodeName}
	if w != nil {
		p.Workload = w.String()
		p.wl = w.ref()
	}
	return p
}

// workload is the top-level controller of pods: a Deployment, StatefulSet, DaemonSet, a ReplicaSet
// without a Deployment, or a kind faultline does not know (a Job, a CRD's controller).
type workload struct {
	Kind, Namespace, Name string
	UID                   types.UID
	Replicas              int // desired (spec.replicas; a DaemonSet's desiredNumberScheduled); -1 when unknown
	Labels                map[string]string
	Template              map[string]string // pod template labels
	Selector              labels.Selector
}

func (w *workload) ref() *injectors.WorkloadRef {
	return &injectors.WorkloadRef{Kind: strings.ToLower(w.Kind), Namespace: w.Namespace, Name: w.Name}
}

func (w *workload) String() string {
	return fmt.Sprintf("%s %s/%s", strings.ToLower(w.Kind), w.Namespace, w.Name)
}

func replicasOf(p *int32) int {
	if p == nil {
		return 1
	}
	return int(*p)
}

// resolver resolves targets against the live cluster, caching namespaces and owners for the
// duration of one Prepare or one round of a sustained fault.
type resolver struct {
	cs     k8s.Interface
	pol    policy.KubePolicy
	ns     map[string]*corev1.Namespace
	owners map[string]*workload // kind/namespace/name → top-level workload (nil: none)
	rs     map[string]*appsv1.ReplicaSet
}

func newResolver(cs k8s.Interface, env injectors.Env) *resolver {
	return &resolver{
		cs:     cs,
		pol:    policy.KubePolicyFor(env.Policy, env.Kube.SelfNamespace()),
		ns:     map[string]*corev1.Namespace{},
		owners: map[string]*workload{},
		rs:     map[string]*appsv1.ReplicaSet{},
	}
}

// clone copies the resolver and its caches, for use in another goroutine.
func (r *resolver) clone() *resolver {
	c := &resolver{cs: r.cs, pol: r.pol, ns: maps.Clone(r.ns), owners: maps.Clone(r.owners), rs: maps.Clone(r.rs)}
	return c
}

// Clientset returns the client or a refusal saying why there is none.
func Clientset(env injectors.Env) (k8s.Interface, error) {
	cs, err := env.Kube.Clientset()
	if err != nil {
		return nil, policy.Refusef("kubernetes", "%v", err)
	}
	return cs, nil
}

// Forbidden turns an RBAC denial met while resolving targets into a refusal: nothing has been
// touched, and the fix is a permission, not a retry.
func Forbidden(err error) error {
	if err != nil && apierrors.IsForbidden(err) {
		return policy.Refusef("kubernetes RBAC", "%v (see deploy/rbac/ for the role faultline needs)", err)
	}
	return err
}

// namespace checks the deny-list and returns the live namespace.
func (r *resolver) namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	if err := r.pol.CheckNamespace(name); err != nil {
		return nil, err
	}
	if ns, ok := r.ns[name]; ok {
		return ns, nil
	}
	ns, err := r.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, policy.Refusef("target", "namespace %s does not exist", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get namespace %s: %w", name, err)
	}
	r.ns[name] = ns
	return ns, nil
}

// getWorkload reads a named workload; a missing one is a refusal.
func (r *resolver) getWorkload(ctx context.Context, ref runbooks.WorkloadRef) (*workload, error) {
	if _, err := r.namespace(ctx, ref.Namespace); err != nil {
		return nil, err
	}
	w, err := r.fetch(ctx, ref.Kind, ref.Namespace, ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, policy.Refusef("target", "%s does not exist", ref)
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// fetch reads a workload of a known kind.
func (r *resolver) fetch(ctx context.Context, kind, ns, name string) (*workload, error) {
	apps := r.cs.AppsV1()
	var (
		meta     metav1.ObjectMeta
		tmpl     map[string]string
		sel      *metav1.LabelSelector
		replicas int
	)
	switch kind {
	case "Deployment":
		o, err := apps.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get deployment %s/%s: %w", ns, name, err)
		}
		meta, tmpl, sel, replicas = o.ObjectMeta, o.Spec.Template.Labels, o.Spec.Selector, replicasOf(o.Spec.Replicas)
	case "StatefulSet":
		o, err := apps.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get statefulset %s/%s: %w", ns, name, err)
		}
		meta, tmpl, sel, replicas = o.ObjectMeta, o.Spec.Template.Labels, o.Spec.Selector, replicasOf(o.Spec.Replicas)
	case "DaemonSet":
		o, err := apps.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get daemonset %s/%s: %w", ns, name, err)
		}
		meta, tmpl, sel, replicas = o.ObjectMeta, o.Spec.Template.Labels, o.Spec.Selector, int(o.Status.DesiredNumberScheduled)
	case "ReplicaSet":
		o, err := r.replicaSet(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		meta, tmpl, sel, replicas = o.ObjectMeta, o.Spec.Template.Labels, o.Spec.Selector, replicasOf(o.Spec.Replicas)
	default:
		return nil, fmt.Errorf("workload kind %s is not supported", kind)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, ns, name, err)
	}
	return &workload{Kind: kind, Namespace: ns, Name: name, UID: meta.UID, Replicas: replicas,
		Labels: meta.Labels, Template: tmpl, Selector: s}, nil
}

func (r *resolver) replicaSet(ctx context.Context, ns, name string) (*appsv1.ReplicaSet, error) {
	key := ns + "/" + name
	if rs, ok := r.rs[key]; ok {
		return rs, nil
	}
	rs, err := r.cs.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get replicaset %s: %w", key, err)
	}
	r.rs[key] = rs
	return rs, nil
}

// owner returns the top-level workload of a pod (nil for a bare pod): a ReplicaSet's Deployment,
// else the pod's controller itself (kubeclient.TopController, shared with the recorders).
func (r *resolver) owner(ctx context.Context, p *corev1.Pod) (*workload, error) {
	ref := metav1.GetControllerOf(p)
	kind, name, err := kubeclient.TopController(ctx, p.Namespace, ref, func(ctx context.Context, ns, name string) (metav1.Object, error) {
		return r.replicaSet(ctx, ns, name)
	})
	if apierrors.IsNotFound(err) {
		return nil, nil // its ReplicaSet is gone: the pod is being garbage collected
	}
	if err != nil || kind == "" {
		return nil, err
	}
	key := kind + "/" + p.Namespace + "/" + name
	if w, ok := r.owners[key]; ok {
		return w, nil
	}
	var w *workload
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		var err error
		if w, err = r.fetch(ctx, kind, p.Namespace, name); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, err
			}
			w = nil
		}
	default:
		// A kind faultline cannot read (Job, a CRD's controller): its labels are unknown and its
		// size is counted from the candidates (see footprint).
		w = &workload{Kind: kind, Namespace: p.Namespace, Name: name, UID: ref.UID, Replicas: -1}
	}
	r.owners[key] = w
	return w, nil
}

// candidate is a live pod a target selects.
type candidate struct {
	pod *corev1.Pod
	wl  *workload
}

// live reports whether a pod is a candidate: not being deleted and not finished.
func live(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// slim keeps the fields selection, ownership, liveness and the deny/opt-in checks read. A listed
// Pod carries its whole spec and status (containers, volumes, managed fields); keeping 10,000 of
// them whole made the selection the peak of faultline's memory (about 110 MB of heap).
func slim(p *corev1.Pod) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels, ResourceVersion: p.ResourceVersion,
			OwnerReferences: p.OwnerReferences, DeletionTimestamp: p.DeletionTimestamp, CreationTimestamp: p.CreationTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{Phase: p.Status.Phase, Conditions: p.Status.Conditions},
	}
}

// listPods lists pods page by page, so that a namespace of 10,000 pods is not one huge response.
func listPods(ctx context.Context, cs k8s.Interface, ns string, opts metav1.ListOptions) ([]corev1.Pod, string, error) {
	var out []corev1.Pod
	opts.Limit = 500
	rv := ""
	for {
		l, err := cs.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, "", fmt.Errorf("list pods in %s: %w", ns, err)
		}
		if rv == "" {
			rv = l.ResourceVersion
		}
		for i := range l.Items {
			out = append(out, slim(&l.Items[i]))
		}
		if l.Continue == "" {
			return out, rv, nil
		}
		opts.Continue = l.Continue
	}
}

// podsOf resolves a pod target to its live pods, with their workloads, and enforces the
// namespace deny-list and the opt-in label. It also returns, per namespace, the resourceVersion
// of the list (where a watch continues from).
func (r *resolver) podsOf(ctx context.Context, t runbooks.PodTarget) ([]candidate, map[string]string, error) {
	var out []candidate
	versions := map[string]string{}
	var notOptedIn []string
	seen := map[string]bool{}
	add := func(ns *corev1.Namespace, p *corev1.Pod, w *workload) {
		var wlLabels, tmpl map[string]string
		if w != nil {
			wlLabels, tmpl = w.Labels, w.Template
		}
		if !r.pol.OptedIn(p.Labels, wlLabels, tmpl, ns.Labels) {
			name := "pod " + p.Namespace + "/" + p.Name
			if w != nil {
				name = w.String()
			}
			if !seen[name] {
				seen[name] = true
				notOptedIn = append(notOptedIn, name)
			}
			return
		}
		out = append(out, candidate{pod: p, wl: w})
	}
	if ref := t.Workload; ref != nil {
		w, err := r.getWorkload(ctx, *ref)
		if err != nil {
			return nil, nil, err
		}
		ns := r.ns[ref.Namespace]
		pods, rv, err := listPods(ctx, r.cs, ref.Namespace, metav1.ListOptions{LabelSelector: w.Selector.String()})
		if err != nil {
			return nil, nil, err
		}
		versions[ref.Namespace] = rv
		for i := range pods {
			p := &pods[i]
			if !live(p) {
				continue
			}
			o, err := r.owner(ctx, p)
			if err != nil {
				return nil, nil, err
			}
			if o == nil || o.UID != w.UID {
				continue // another controller's pod that happens to match the selector
			}
			add(ns, p, o)
		}
	} else {
		for _, name := range t.Namespaces {
			ns, err := r.namespace(ctx, name)
			if err != nil {
				return nil, nil, err
			}
			pods, rv, err := listPods(ctx, r.cs, name, metav1.ListOptions{LabelSelector: t.LabelSelector, FieldSelector: t.FieldSelector})
			if err != nil {
				return nil, nil, err
			}
			versions[name] = rv
			for i := range pods {
				p := &pods[i]
				if !live(p) {
					continue
				}
				o, err := r.owner(ctx, p)
				if err != nil {
					return nil, nil, err
				}
				add(ns, p, o)
			}
		}
	}
	if len(notOptedIn) > 0 {
		return nil, nil, policy.RefuseNotOptedIn(notOptedIn)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].pod, out[j].pod
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, versions, nil
}

// footprint sums what killing the chosen pods takes from each workload. Bare pods count toward
// maxPods and maxTargets only; a workload of a kind faultline cannot read is sized by its pods
// among all the candidates.
func footprint(chosen, all []candidate) policy.KubeFootprint {
	f := policy.KubeFootprint{Targets: len(chosen), Pods: len(chosen)}
	idx := map[*workload]int{}
	for _, c := range chosen {
		if c.wl == nil {
			continue
		}
		i, ok := idx[c.wl]
		if !ok {
			i = len(f.Workloads)
			idx[c.wl] = i
			replicas := c.wl.Replicas
			if replicas < 0 {
				replicas = 0
				for _, a := range all {
					if a.wl == c.wl {
						replicas++
					}
				}
			}
			f.Workloads = append(f.Workloads, policy.WorkloadShare{Name: c.wl.String(), Replicas: replicas})
		}
		f.Workloads[i].Affected++
	}
	return f
}

// count is how many of n candidates a pod-kill mode takes.
func count(mode string, value float64, n int, rng *rand.Rand) int {
	if n == 0 {
		return 0
	}
	switch mode {
	case runbooks.ModeAll:
		return n
	case runbooks.ModeFixed:
		return min(int(value), n)
	case runbooks.ModeFixedPercent:
		// Rounded up, at least one: 10% of 5 pods is 1 pod.
		return min(n, max(1, int(math.Ceil(float64(n)*value/100-1e-9))))
	case runbooks.ModeRandomMaxPercent:
		// A random count from 1 to value% of the pods, rounded down: never more than value%,
		// unless value% is less than one pod, then one.
		hi := max(1, int(math.Floor(float64(n)*value/100+1e-9)))
		return 1 + rng.IntN(min(hi, n))
	default: // one
		return 1
	}
}

// choose picks k candidates at random.
func choose(all []candidate, k int, rng *rand.Rand) []candidate {
	picked := append([]candidate(nil), all...)
	rng.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
	picked = picked[:k]
	sort.Slice(picked, func(i, j int) bool {
		a, b := picked[i].pod, picked[j].pod
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return picked
}

func targetText(t runbooks.PodTarget) string {
	if t.Workload != nil {
		return t.Workload.String()
	}
	var parts []string
	parts = append(parts, "namespaces "+strings.Join(t.Namespaces, ","))
	if t.LabelSelector != "" {
		parts = append(parts, "labels "+t.LabelSelector)
	}
	if t.FieldSelector != "" {
		parts = append(parts, "fields "+t.FieldSelector)
	}
	return strings.Join(parts, ", ")
}

// deletePod deletes exactly the pod that was chosen (UID precondition); a pod already gone, or
// replaced by a namesake, is not an error.
func deletePod(ctx context.Context, cs k8s.Interface, p pod, grace *int64) (bool, error) {
	uid := types.UID(p.UID)
	err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: grace,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("delete %s: %w", p, err)
}

// deleteConcurrency bounds the deletions in flight: enough to kill hundreds of pods in about the
// time of a few round trips, few enough to stay inside the client's rate limit.
const deleteConcurrency = 16

// deletePods deletes pods in parallel and returns, in order, those it deleted.
func deletePods(ctx context.Context, cs k8s.Interface, ps []pod, grace *int64) ([]pod, error) {
	ok := make([]bool, len(ps))
	errs := make([]error, len(ps))
	sem := make(chan struct{}, deleteConcurrency)
	var wg sync.WaitGroup
	for i, p := range ps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok[i], errs[i] = deletePod(ctx, cs, p, grace)
		}()
	}
	wg.Wait()
	var done []pod
	for i, p := range ps {
		if ok[i] {
			done = append(done, p)
		}
	}
	return done, errors.Join(errs...)
}

func gracePeriod(d *runbooks.Duration) *int64 {
	if d == nil {
		return nil
	}
	s := int64(math.Ceil(d.D().Seconds()))
	return &s
}

// newRand seeds the picks from the run (injectors.Env.Seed): the same seed and the same
// candidates, which podsOf sorts, give the same pods.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

// randomText says how a pick of k pods out of n was random, or "" when it took them all.
func randomText(mode string, k, n int) string {
	if k >= n && mode != runbooks.ModeRandomMaxPercent {
		return ""
	}
	if mode == "" {
		mode = runbooks.ModeOne
	}
	return fmt.Sprintf("pod pick is random (mode %s: %d of %d candidates)", mode, k, n)
}
