package guardrail_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// compileKube compiles a one-guardrail runbook against the cluster the client configuration
// points at.
func compileKube(t *testing.T, cfg *rest.Config, gr string) *guardrail.Guardrail {
	t.Helper()
	doc := "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: t}\nenvironment: {name: t, type: local}\n" +
		"guardrails:\n  - name: g\n" + gr +
		"experiments:\n  - name: x\n    duration: 1s\n    faults: [{processPause: {exe: sleep}}]\n"
	rb, err := runbooks.Parse("rb.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubeclient.FromConfig(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := guardrail.Compile(rb.Guardrails, guardrail.DefaultProbes(), guardrail.ProbeEnv{Kube: kc})
	if err != nil {
		t.Fatal(err)
	}
	return gs[0]
}

// pollUntil polls cond through kubefix.Poll at this package's interval.
func pollUntil(ctx context.Context, t testing.TB, what string, cond func(ctx context.Context) (string, bool, error)) {
	t.Helper()
	kubefix.Poll(ctx, t, 100*time.Millisecond, what, cond)
}

func TestKubernetesGuardrail(t *testing.T) {
	c := kube.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := c.AddNodes(ctx, 1, "guard"); err != nil {
		t.Fatal(err)
	}
	const ns = "shop"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "checkout"}
	replicas := int32(5)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:   []corev1.Container{{Name: "app", Image: "registry.invalid/checkout:1"}},
					NodeSelector: map[string]string{"type": "kwok"},
				},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pollUntil(ctx, t, "deployment checkout 5/5 available", func(ctx context.Context) (string, bool, error) {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d available", d.Status.AvailableReplicas), d.Status.AvailableReplicas == 5, nil
	})

	workloadPct := compileKube(t, c.Config, "    kubernetes:\n      workload: {kind: Deployment, namespace: shop, name: checkout}\n      availableReplicas: {minPercent: 80}\n")
	workloadMin := compileKube(t, c.Config, "    kubernetes: {workload: {kind: Deployment, namespace: shop, name: checkout}, availableReplicas: {min: 5}}\n")
	podsPct := compileKube(t, c.Config, "    kubernetes:\n      pods: {namespace: shop, labelSelector: 'app=checkout'}\n      readyPods: {minPercent: 80}\n")
	missing := compileKube(t, c.Config, "    kubernetes: {workload: {kind: StatefulSet, namespace: shop, name: nope}, availableReplicas: {min: 1}}\n")

	if d := workloadPct.Probe.Describe(); d != "deployment shop/checkout available replicas >= 80% of desired" {
		t.Errorf("Describe() = %q", d)
	}
	for _, g := range []*guardrail.Guardrail{workloadPct, workloadMin, podsPct} {
		o := g.Evaluate(ctx)
		if !o.Pass || o.Value == nil || *o.Value != 5 {
			t.Fatalf("%s: steady state: %+v", g.Probe.Describe(), o)
		}
	}
	if o := workloadPct.Evaluate(ctx); o.Detail != "deployment shop/checkout: 5/5 available (want >= 80% = 4)" {
		t.Errorf("detail %q", o.Detail)
	}
	if o := missing.Evaluate(ctx); o.Pass || o.Error != "" || o.Detail != "statefulset shop/nope not found" {
		t.Errorf("missing workload: want a failing observation without error, got %+v", o)
	}

	// Availability drops: the node refuses new pods, then two pods are deleted, so their
	// replacements stay Pending and the Deployment is down to 3 of 5.
	// kwok and the controllers write these objects too: a conflict means "read again".
	taint := func(taints []corev1.Taint) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, "guard-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			node.Spec.Taints = taints
			_, err = c.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	taint([]corev1.Taint{{Key: "faultline.dev/test", Value: "full", Effect: corev1.TaintEffectNoSchedule}})
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=checkout"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items[:2] {
		if err := c.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(ctx, t, "the workload guardrail to fail at 3/5", func(ctx context.Context) (string, bool, error) {
		o := workloadPct.Evaluate(ctx)
		return o.Detail, !o.Pass && o.Detail == "deployment shop/checkout: 3/5 available (want >= 80% = 4)", nil
	})
	if o := workloadMin.Evaluate(ctx); o.Pass || *o.Value != 3 || !strings.Contains(o.Detail, "3/5 available (want >= 5)") {
		t.Errorf("min 5: %+v", o)
	}
	pollUntil(ctx, t, "the pods guardrail to fail at 3/5", func(ctx context.Context) (string, bool, error) {
		o := podsPct.Evaluate(ctx)
		return o.Detail, !o.Pass && o.Detail == "pods app=checkout in shop: 3/5 Ready (want >= 80% = 4)", nil
	})

	// The node takes pods again: the Pending replacements are scheduled and the guardrails pass.
	taint(nil)
	pollUntil(ctx, t, "both guardrails to pass again", func(ctx context.Context) (string, bool, error) {
		a, b := workloadPct.Evaluate(ctx), podsPct.Evaluate(ctx)
		return a.Detail + "; " + b.Detail, a.Pass && b.Pass, nil
	})

	t.Run("scaled to zero fails minPercent", func(t *testing.T) {
		zero := int32(0)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				return err
			}
			d.Spec.Replicas = &zero
			_, err = c.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if o := workloadPct.Evaluate(ctx); o.Pass || !strings.Contains(o.Detail, "scaled to 0 replicas") {
			t.Errorf("%+v", o)
		}
	})

	t.Run("unauthenticated client fails closed", func(t *testing.T) {
		g := compileKube(t, c.ConfigForToken("not-a-valid-token"), "    onError: fail\n    kubernetes: {workload: {kind: Deployment, namespace: shop, name: checkout}, availableReplicas: {min: 1}}\n")
		o := g.Evaluate(ctx)
		if o.Pass || !strings.Contains(o.Error, "Unauthorized") {
			t.Errorf("want a failing observation with the API error, got %+v", o)
		}
	})

	t.Run("unreachable API server fails closed unless ignored", func(t *testing.T) {
		cfg := rest.CopyConfig(c.Config)
		cfg.Host = "https://127.0.0.1:1" // nothing listens on port 1
		g := compileKube(t, cfg, "    kubernetes: {pods: {namespace: shop}, readyPods: {min: 1}}\n")
		if o := g.Evaluate(ctx); o.Pass || !strings.Contains(o.Error, "connection refused") || !strings.HasPrefix(o.Detail, "could not evaluate: list pods") {
			t.Errorf("want fail closed, got %+v", o)
		}
		ig := compileKube(t, cfg, "    onError: ignore\n    kubernetes: {pods: {namespace: shop}, readyPods: {min: 1}}\n")
		if o := ig.Evaluate(ctx); !o.Pass || !o.Ignored {
			t.Errorf("onError ignore: %+v", o)
		}
	})
}

func TestKubernetesGuardrailNeedsClient(t *testing.T) {
	doc := "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: t}\nenvironment: {name: t, type: local}\n" +
		"guardrails:\n  - name: g\n    kubernetes: {pods: {namespace: a}, readyPods: {min: 1}}\n" +
		"experiments:\n  - name: x\n    duration: 1s\n    faults: [{processPause: {exe: sleep}}]\n"
	rb, err := runbooks.Parse("rb.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = guardrail.Compile(rb.Guardrails, guardrail.DefaultProbes(), guardrail.ProbeEnv{})
	if err == nil || !strings.Contains(err.Error(), `guardrail "g": kubernetes guardrail needs a Kubernetes client: no Kubernetes client configured`) {
		t.Fatalf("got %v", err)
	}
}
