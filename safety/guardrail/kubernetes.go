package guardrail

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/faultline-dev/faultline/runbooks"
)

// kubernetesProbe is a compiled Kubernetes guardrail. Every Check reads the object(s) afresh from
// the API server (one GET of the workload, or one LIST of the selected pods) instead of reading an
// informer's cache: a cache keeps answering from its last state while its watch is broken, so a
// guardrail built on one could not fail closed when the API server becomes unreachable, which is
// exactly when it must. A GET, or a LIST narrowed by namespace and label selector, once per
// interval (250ms at the fastest) is a small load the API server serves from its watch cache.
type kubernetesProbe struct {
	spec    runbooks.KubernetesProbe
	client  kubernetes.Interface
	timeout time.Duration
}

func newKubernetesProbe(spec any, g runbooks.Guardrail, env ProbeEnv) (Probe, error) {
	s := *spec.(*runbooks.KubernetesProbe)
	cfg, err := env.Kube.Config()
	if err != nil {
		return nil, fmt.Errorf("kubernetes guardrail needs a Kubernetes client: %w", err)
	}
	// Protobuf: a LIST of a few thousand pods decodes several times faster than in JSON.
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	p := &kubernetesProbe{spec: s, client: cs, timeout: s.Timeout.D()}
	if p.timeout == 0 {
		iv := g.Interval.D()
		if iv == 0 {
			iv = DefaultInterval
		}
		p.timeout = min(iv, 5*time.Second)
	}
	return p, nil
}

func (p *kubernetesProbe) Describe() string {
	if w := p.spec.Workload; w != nil {
		return fmt.Sprintf("%s available replicas %s", workloadName(w), describeMin(p.spec.AvailableReplicas, "of desired"))
	}
	s := p.spec.Pods
	sel := s.LabelSelector
	if sel == "" {
		sel = "all pods"
	}
	return fmt.Sprintf("pods %s in namespace %s: Ready %s", sel, s.Namespace, describeMin(p.spec.ReadyPods, "of matching"))
}

func describeMin(m *runbooks.KubernetesMinimum, of string) string {
	if m.MinPercent != nil {
		return m.String() + " " + of
	}
	return m.String()
}

func workloadName(w *runbooks.WorkloadRef) string {
	return fmt.Sprintf("%s %s/%s", strings.ToLower(w.Kind), w.Namespace, w.Name)
}

func (p *kubernetesProbe) Check(ctx context.Context) (Observation, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	if w := p.spec.Workload; w != nil {
		return p.checkWorkload(ctx, start, w)
	}
	return p.checkPods(ctx, start)
}

// workloadCounts reads the desired and available replicas of a workload.
func workloadCounts(ctx context.Context, cs kubernetes.Interface, w *runbooks.WorkloadRef) (desired, available int, err error) {
	get := metav1.GetOptions{}
	replicas := func(r *int32) int {
		if r == nil {
			return 1 // the API server defaults spec.replicas to 1
		}
		return int(*r)
	}
	switch w.Kind {
	case "Deployment":
		d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, get)
		if err == nil {
			return replicas(d.Spec.Replicas), int(d.Status.AvailableReplicas), nil
		}
		return 0, 0, err
	case "StatefulSet":
		s, err := cs.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, get)
		if err == nil {
			return replicas(s.Spec.Replicas), int(s.Status.AvailableReplicas), nil
		}
		return 0, 0, err
	case "ReplicaSet":
		r, err := cs.AppsV1().ReplicaSets(w.Namespace).Get(ctx, w.Name, get)
		if err == nil {
			return replicas(r.Spec.Replicas), int(r.Status.AvailableReplicas), nil
		}
		return 0, 0, err
	case "DaemonSet":
		d, err := cs.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, get)
		if err == nil {
			return int(d.Status.DesiredNumberScheduled), int(d.Status.NumberAvailable), nil
		}
		return 0, 0, err
	}
	return 0, 0, fmt.Errorf("unsupported workload kind %q", w.Kind)
}

func (p *kubernetesProbe) checkWorkload(ctx context.Context, start time.Time, w *runbooks.WorkloadRef) (Observation, error) {
	desired, available, err := workloadCounts(ctx, p.client, w)
	switch {
	case apierrors.IsNotFound(err):
		// The API server answered: the workload is gone, so nothing of it is available.
		zero := 0.0
		return Observation{Time: start, Value: &zero, Detail: workloadName(w) + " not found"}, nil
	case err != nil:
		return Observation{Time: start}, fmt.Errorf("get %s: %w", workloadName(w), err)
	}
	m := p.spec.AvailableReplicas
	need := m.Required(desired)
	v := float64(available)
	obs := Observation{Time: start, Value: &v, Pass: available >= need}
	want := fmt.Sprintf("want %s", m)
	if m.MinPercent != nil {
		want += fmt.Sprintf(" = %d", need)
	}
	obs.Detail = fmt.Sprintf("%s: %d/%d available (%s)", workloadName(w), available, desired, want)
	if desired == 0 && m.MinPercent != nil {
		// A percentage of nothing is meaningless; a workload scaled to zero serves nothing.
		obs.Pass = false
		obs.Detail = fmt.Sprintf("%s: scaled to 0 replicas (want %s of desired)", workloadName(w), m)
	}
	return obs, nil
}

func (p *kubernetesProbe) checkPods(ctx context.Context, start time.Time) (Observation, error) {
	s := p.spec.Pods
	total, ready := 0, 0
	// Pages of 500 bound the memory one evaluation takes, whatever the selector matches; the pages
	// of one LIST are one consistent snapshot.
	opts := metav1.ListOptions{LabelSelector: s.LabelSelector, Limit: 500}
	for {
		list, err := p.client.CoreV1().Pods(s.Namespace).List(ctx, opts)
		if err != nil {
			return Observation{Time: start}, fmt.Errorf("list pods %q in namespace %s: %w", s.LabelSelector, s.Namespace, err)
		}
		for i := range list.Items {
			pod := &list.Items[i]
			if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			total++
			if podReady(pod) {
				ready++
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	m := p.spec.ReadyPods
	need := m.Required(total)
	v := float64(ready)
	obs := Observation{Time: start, Value: &v, Pass: ready >= need}
	sel := s.LabelSelector
	if sel == "" {
		sel = "(all)"
	}
	want := fmt.Sprintf("want %s", m)
	if m.MinPercent != nil {
		want += fmt.Sprintf(" = %d", need)
	}
	obs.Detail = fmt.Sprintf("pods %s in %s: %d/%d Ready (%s)", sel, s.Namespace, ready, total, want)
	if total == 0 {
		obs.Pass = false
		obs.Detail = fmt.Sprintf("pods %s in %s: none match (want %s)", sel, s.Namespace, m)
	}
	return obs, nil
}

// podReady reports whether the pod's Ready condition is True.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
