// Package kubefix creates the Kubernetes objects tests act on — namespaces, Deployments,
// StatefulSets, HorizontalPodAutoscalers — in a real test cluster (internal/testenv/kube), and
// waits on their state with deadlines. Only tests import it.
package kubefix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// OptIn returns the label set with which a workload or namespace accepts faults.
func OptIn() map[string]string { return map[string]string{"faultline.dev/chaos": "enabled"} }

// Fixture is one test's namespace in a shared cluster.
type Fixture struct {
	T  testing.TB
	CS kubernetes.Interface
	NS string
}

// New creates a namespace named PREFIX-<random> with the labels and deletes it when the test ends.
func New(t testing.TB, cs kubernetes.Interface, prefix string, nsLabels map[string]string) *Fixture {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nsLabels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return &Fixture{T: t, CS: cs, NS: name}
}

// Ctx returns a context bounded by d that ends with the test.
func (f *Fixture) Ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	f.T.Cleanup(cancel)
	return ctx
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Spec describes a workload to create.
type Spec struct {
	Name     string
	Replicas int32
	// PodLabels are the template's labels (and the selector); "app": Name is always added.
	PodLabels map[string]string
	// Labels are the workload object's own labels (put OptIn() here to opt in).
	Labels map[string]string
	// Node pins the pods to one node (nodeName via node selector on kubernetes.io/hostname).
	Node string
}

func (s Spec) template() corev1.PodTemplateSpec {
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		TerminationGracePeriodSeconds: ptr(int64(0)),
	}
	if s.Node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.Node}
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: s.podLabels()}, Spec: spec}
}

func (s Spec) podLabels() map[string]string {
	return merge(s.PodLabels, map[string]string{"app": s.Name})
}

// Deployment creates a Deployment and waits until all its replicas are available.
func (f *Fixture) Deployment(s Spec) *appsv1.Deployment {
	f.T.Helper()
	ctx := f.Ctx(90 * time.Second)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: f.NS, Labels: s.Labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(s.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: s.podLabels()},
			Template: s.template(),
		},
	}
	d, err := f.CS.AppsV1().Deployments(f.NS).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		f.T.Fatalf("create deployment %s: %v", s.Name, err)
	}
	f.WaitReadyPods(ctx, labels.SelectorFromSet(s.podLabels()).String(), int(s.Replicas))
	return d
}

// StatefulSet creates a StatefulSet and waits until all its replicas are ready.
func (f *Fixture) StatefulSet(s Spec) *appsv1.StatefulSet {
	f.T.Helper()
	ctx := f.Ctx(90 * time.Second)
	o := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: f.NS, Labels: s.Labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr(s.Replicas),
			Selector:            &metav1.LabelSelector{MatchLabels: s.podLabels()},
			Template:            s.template(),
			ServiceName:         s.Name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
		},
	}
	o, err := f.CS.AppsV1().StatefulSets(f.NS).Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		f.T.Fatalf("create statefulset %s: %v", s.Name, err)
	}
	f.WaitReadyPods(ctx, labels.SelectorFromSet(s.podLabels()).String(), int(s.Replicas))
	return o
}

// HPA creates a HorizontalPodAutoscaler (a CPU target, or an external metric for minReplicas 0:
// the test cluster serves no metrics, so only its minReplicas/maxReplicas rules act) for a workload.
func (f *Fixture) HPA(kind, name string, minReplicas *int32, maxReplicas int32) *autoscalingv2.HorizontalPodAutoscaler {
	f.T.Helper()
	ctx := f.Ctx(30 * time.Second)
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.NS},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: kind, Name: name},
			MinReplicas:    minReplicas,
			MaxReplicas:    maxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(50))}},
			}},
		},
	}
	if minReplicas != nil && *minReplicas == 0 {
		// Scaling to zero (HPAScaleToZero) needs an Object or External metric.
		q := resource.MustParse("10")
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ExternalMetricSourceType,
			External: &autoscalingv2.ExternalMetricSource{Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: &q}},
		}}
	}
	h, err := f.CS.AutoscalingV2().HorizontalPodAutoscalers(f.NS).Create(ctx, h, metav1.CreateOptions{})
	if err != nil {
		f.T.Fatalf("create hpa %s: %v", name, err)
	}
	return h
}

// Pod creates a bare pod (no controller) and waits until it is ready.
func (f *Fixture) Pod(name string, podLabels map[string]string, node string) *corev1.Pod {
	f.T.Helper()
	ctx := f.Ctx(60 * time.Second)
	s := Spec{Name: name, PodLabels: podLabels, Node: node}
	tpl := s.template()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.NS, Labels: podLabels}, Spec: tpl.Spec}
	p, err := f.CS.CoreV1().Pods(f.NS).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		f.T.Fatalf("create pod %s: %v", name, err)
	}
	f.WaitReadyPods(ctx, labels.SelectorFromSet(podLabels).String(), -1)
	return p
}

// LivePods lists the pods matching the selector that are not terminating, sorted by name.
func (f *Fixture) LivePods(ctx context.Context, selector string) ([]corev1.Pod, error) {
	l, err := f.CS.CoreV1().Pods(f.NS).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods %s in %s: %w", selector, f.NS, err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Ready reports whether a pod is Ready and not terminating.
func Ready(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ReadyCount counts the ready pods matching the selector.
func (f *Fixture) ReadyCount(ctx context.Context, selector string) (int, error) {
	ps, err := f.LivePods(ctx, selector)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range ps {
		if Ready(&ps[i]) {
			n++
		}
	}
	return n, nil
}

// WaitReadyPods waits until exactly n pods matching the selector exist and all are ready
// (n < 0: at least one, all ready).
func (f *Fixture) WaitReadyPods(ctx context.Context, selector string, n int) {
	f.T.Helper()
	f.Until(ctx, fmt.Sprintf("%d ready pods %s", n, selector), func(ctx context.Context) (string, bool, error) {
		ps, err := f.LivePods(ctx, selector)
		if err != nil {
			return "", false, err
		}
		ready := 0
		for i := range ps {
			if Ready(&ps[i]) {
				ready++
			}
		}
		ok := ready == len(ps) && (n < 0 && ready > 0 || ready == n)
		return fmt.Sprintf("%d pods, %d ready", len(ps), ready), ok, nil
	})
}

// Until evaluates cond every 100ms until it holds; it fails the test with the last state when ctx
// ends first.
func (f *Fixture) Until(ctx context.Context, what string, cond func(ctx context.Context) (string, bool, error)) {
	f.T.Helper()
	Poll(ctx, f.T, 100*time.Millisecond, what, cond)
}

// Poll evaluates cond every interval until it holds; it fails the test with the last state cond
// described (or its last error) when ctx ends first.
func Poll(ctx context.Context, t testing.TB, every time.Duration, what string, cond func(ctx context.Context) (string, bool, error)) {
	t.Helper()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last string
	for {
		state, ok, err := cond(ctx)
		if err != nil {
			last = err.Error()
		} else {
			last = state
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %s)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Replicas reads spec.replicas of a Deployment or StatefulSet through its scale subresource.
func (f *Fixture) Replicas(ctx context.Context, kind, name string) (int32, error) {
	switch kind {
	case "Deployment":
		s, err := f.CS.AppsV1().Deployments(f.NS).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		return s.Spec.Replicas, nil
	case "StatefulSet":
		s, err := f.CS.AppsV1().StatefulSets(f.NS).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		return s.Spec.Replicas, nil
	}
	return 0, fmt.Errorf("no scale for %s", kind)
}

// HPAMin reads an HPA's minReplicas (nil when unset).
func (f *Fixture) HPAMin(ctx context.Context, name string) (*int32, error) {
	h, err := f.CS.AutoscalingV2().HorizontalPodAutoscalers(f.NS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return h.Spec.MinReplicas, nil
}

// UIDs returns the UIDs of pods.
func UIDs(ps []corev1.Pod) map[string]bool {
	out := map[string]bool{}
	for _, p := range ps {
		out[string(p.UID)] = true
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }
