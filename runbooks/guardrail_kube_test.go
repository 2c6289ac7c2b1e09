package runbooks

import (
	"strings"
	"testing"
)

func TestKubernetesProbeValid(t *testing.T) {
	for name, g := range map[string]string{
		"deployment count":   "    kubernetes:\n      workload: {kind: Deployment, namespace: shop, name: checkout}\n      availableReplicas: {min: 3}\n",
		"deployment percent": "    kubernetes:\n      workload: {kind: Deployment, namespace: shop, name: checkout.v2}\n      availableReplicas: {minPercent: 80}\n      timeout: 2s\n",
		"statefulset":        "    kubernetes: {workload: {kind: StatefulSet, namespace: db, name: pg}, availableReplicas: {min: 2}}\n",
		"daemonset":          "    kubernetes: {workload: {kind: DaemonSet, namespace: kube-system, name: agent}, availableReplicas: {minPercent: 100}}\n",
		"replicaset":         "    kubernetes: {workload: {kind: ReplicaSet, namespace: a, name: b}, availableReplicas: {minPercent: 0.5}}\n",
		"pods":               "    kubernetes:\n      pods: {namespace: shop, labelSelector: 'app=cart,tier in (web,api),!canary'}\n      readyPods: {minPercent: 80}\n",
		"all pods":           "    kubernetes: {pods: {namespace: shop}, readyPods: {min: 1}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			rb, err := Parse("rb.yaml", []byte(promRunbook(g)))
			if err != nil {
				t.Fatalf("valid runbook refused: %v", err)
			}
			if k := rb.Guardrails[0].ProbeKind(); k != "kubernetes" {
				t.Fatalf("probe kind %q", k)
			}
		})
	}
}

func TestKubernetesProbeInvalid(t *testing.T) {
	const dep = "workload: {kind: Deployment, namespace: a, name: b}"
	cases := []struct{ name, guardrail, want string }{
		{"no target", "    kubernetes: {availableReplicas: {min: 1}}\n",
			"rb.yaml:7:5: guardrails[0].kubernetes: a kubernetes guardrail target must set exactly one of: workload, pods"},
		{"two targets", "    kubernetes: {" + dep + ", pods: {namespace: a}, availableReplicas: {min: 1}}\n",
			"guardrails[0].kubernetes: a kubernetes guardrail target must set exactly one kind, got workload and pods"},
		{"no namespace", "    kubernetes:\n      workload: {kind: Deployment, name: b}\n      availableReplicas: {min: 1}\n",
			"rb.yaml:8:7: guardrails[0].kubernetes.workload.namespace: is required"},
		{"bad namespace", "    kubernetes: {workload: {kind: StatefulSet, namespace: Shop_1, name: b}, availableReplicas: {min: 1}}\n",
			`guardrails[0].kubernetes.workload.namespace: "Shop_1" is not a valid namespace name`},
		{"bad name", "    kubernetes: {workload: {kind: Deployment, namespace: a, name: 'Check out'}, availableReplicas: {min: 1}}\n",
			`guardrails[0].kubernetes.workload.name: "Check out" is not a valid object name`},
		{"bad kind", "    kubernetes: {workload: {kind: Job, namespace: a, name: b}, availableReplicas: {min: 1}}\n",
			"guardrails[0].kubernetes.workload.kind: "},
		{"no condition", "    kubernetes: {" + dep + "}\n",
			"guardrails[0].kubernetes.availableReplicas: is required for a workload, e.g. {minPercent: 80} or {min: 3}"},
		{"pods condition on workload", "    kubernetes: {" + dep + ", availableReplicas: {min: 1}, readyPods: {min: 1}}\n",
			"guardrails[0].kubernetes.readyPods: applies to pods; for a workload use availableReplicas"},
		{"workload condition on pods", "    kubernetes: {pods: {namespace: a}, availableReplicas: {min: 1}}\n",
			"guardrails[0].kubernetes.availableReplicas: applies to a workload; for pods use readyPods"},
		{"bad selector", "    kubernetes:\n      pods: {namespace: a, labelSelector: 'app in cart'}\n      readyPods: {min: 1}\n",
			`rb.yaml:8:28: guardrails[0].kubernetes.pods.labelSelector: "app in cart": `},
		{"both bounds", "    kubernetes: {pods: {namespace: a}, readyPods: {min: 1, minPercent: 50}}\n",
			"guardrails[0].kubernetes.readyPods: a minimum must set exactly one kind, got min and minPercent"},
		{"no bound", "    kubernetes: {pods: {namespace: a}, readyPods: {}}\n",
			"guardrails[0].kubernetes.readyPods: a minimum must set exactly one of: min, minPercent"},
		{"zero min", "    kubernetes:\n      " + dep + "\n      availableReplicas:\n        min: 0\n",
			"rb.yaml:10:9: guardrails[0].kubernetes.availableReplicas.min: must be at least 1"},
		{"percent too high", "    kubernetes: {" + dep + ", availableReplicas: {minPercent: 120}}\n",
			"guardrails[0].kubernetes.availableReplicas.minPercent: must be above 0 and at most 100, got 120"},
		{"typo", "    kubernetes: {" + dep + ", availableReplica: {min: 1}}\n",
			`unknown field "availableReplica" (did you mean "availableReplicas"?)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("rb.yaml", []byte(promRunbook(c.guardrail)))
			if err == nil {
				t.Fatal("invalid runbook accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}

func TestKubernetesMinimumRequired(t *testing.T) {
	pct := func(f float64) *KubernetesMinimum { return &KubernetesMinimum{MinPercent: &f} }
	n := func(i int) *KubernetesMinimum { return &KubernetesMinimum{Min: &i} }
	for _, c := range []struct {
		m           *KubernetesMinimum
		total, want int
	}{
		{pct(80), 5, 4}, {pct(80), 3, 3}, {pct(70), 10, 7}, {pct(100), 7, 7}, {pct(1), 10000, 100},
		{pct(50), 0, 0}, {pct(0.5), 3, 1}, {n(3), 10, 3}, {n(3), 1, 3},
	} {
		if got := c.m.Required(c.total); got != c.want {
			t.Errorf("%s of %d: got %d, want %d", c.m, c.total, got, c.want)
		}
	}
}
