package recorder_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
)

// pollUntil polls cond through kubefix.Poll at this package's interval.
func pollUntil(ctx context.Context, t testing.TB, what string, cond func(ctx context.Context) (string, bool, error)) {
	t.Helper()
	kubefix.Poll(ctx, t, 50*time.Millisecond, what, cond)
}

func envFor(t testing.TB, c *kube.Cluster) injectors.Env {
	t.Helper()
	kc, err := kubeclient.FromConfig(c.Config, "")
	if err != nil {
		t.Fatal(err)
	}
	return injectors.Env{Kube: kc}
}

func createNamespace(ctx context.Context, t testing.TB, cs kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"faultline.dev/chaos": "enabled"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podTemplate(app, node string) corev1.PodTemplateSpec {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/" + app + ":1"}}}
	if node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: spec}
}

// createDeployment creates a Deployment of replicas pods (app=NAME), pinned to node when set, and
// waits until all of them are available.
func createDeployment(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, name string, replicas int32, node string) {
	t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, node),
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAvailable(ctx, t, cs, ns, name, replicas)
}

func waitAvailable(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	pollUntil(ctx, t, fmt.Sprintf("deployment %s/%s %d/%d available", ns, name, replicas, replicas), func(ctx context.Context) (string, bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d available, %d updated", d.Status.AvailableReplicas, d.Status.UpdatedReplicas),
			d.Status.AvailableReplicas == replicas && d.Status.ObservedGeneration >= d.Generation, nil
	})
}

func setReplicas(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	// The deployment controller writes the object too: a conflict means "read again", as the
	// shard-outage injector handles it.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cs.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = replicas
		_, err = cs.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func taintNode(ctx context.Context, t testing.TB, cs kubernetes.Interface, name string, on bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = nil
		if on {
			n.Spec.Taints = []corev1.Taint{{Key: "faultline.dev/test", Value: "full", Effect: corev1.TaintEffectNoSchedule}}
		}
		_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// killPods deletes n pods of the selection directly (as the pod-kill injector does) and returns
// their "NAMESPACE/NAME" names.
func killPods(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, selector string, n int) []injectors.Target {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var names []injectors.Target
	for _, p := range list.Items {
		if len(names) == n {
			break
		}
		if p.DeletionTimestamp != nil {
			continue
		}
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, injectors.Target{Kind: "pod", Namespace: ns, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName})
	}
	if len(names) != n {
		t.Fatalf("only %d pods of %q in %s to kill, want %d", len(names), selector, ns, n)
	}
	return names
}

func metav1ListApp(app string) metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: "app=" + app}
}

// waitReadyPods waits until exactly n pods of the selection exist, none terminating, all Ready.
func waitReadyPods(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, selector string, n int) {
	t.Helper()
	pollUntil(ctx, t, fmt.Sprintf("%d Ready pods %s in %s", n, selector, ns), func(ctx context.Context) (string, bool, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return "", false, err
		}
		ready := 0
		for i := range l.Items {
			p := &l.Items[i]
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		return fmt.Sprintf("%d pods, %d Ready", len(l.Items), ready), len(l.Items) == n && ready == n, nil
	})
}
