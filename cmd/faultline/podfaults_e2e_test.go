package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
)

// podFaultRunbook renders a runbook with pod network faults and the agents' TLS files.
func podFaultRunbook(t testing.TB, uid, server, agentNS string, port int, tls [3]string, duration, faults string) string {
	t.Helper()
	return runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-pod-network}
environment:
  name: golden
  type: golden-copy
  kubernetes:
    clusterID: "{{.UID}}"
    server: "{{.Server}}"
    agent: {namespace: {{.NS}}, port: {{.Port}}, tls: {caFile: "{{index .TLS 0}}", certFile: "{{index .TLS 1}}", keyFile: "{{index .TLS 2}}"}}
experiments:
  - name: chaos
    duration: {{.Duration}}
    faults: {{.Faults}}
`, struct {
		UID, Server, NS, Duration, Faults string
		Port                              int
		TLS                               [3]string
	}{uid, server, agentNS, duration, faults, port, tls})
}

// With a token bound to deploy/rbac/clusterrole.yaml's role, every bad input of a pod network
// fault is refused (exit 4) with its reason, after the role let faultline read what it needed
// (pods, the agent pods, a Service and its EndpointSlices): no ledger entry, no pod touched.
func TestPodFaultRefusalsWithRBAC(t *testing.T) {
	c, f := kubeFixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 2, Node: "e2e-0"})
	agents := kubefix.New(t, c.Client, "e2e-agents", nil)
	agents.Pod("agent-e2e-1", map[string]string{"app.kubernetes.io/name": "faultline-agent"}, "e2e-1")
	ctx := f.Ctx(30 * time.Second)
	if _, err := c.Client.CoreV1().Services(f.NS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "empty"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nobody"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := "faultline-e2e-pn-" + f.NS
	createRole(t, c.Client, rbacObjects(t, "clusterrole.yaml")["faultline"], role)
	bindCluster(t, c.Client, role, rbacClusterUser)
	tokenCS, err := kubernetes.NewForConfig(c.ConfigForToken(rbacClusterToken))
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, tokenCS, f.NS)
	kubeconfig := c.KubeconfigForToken(rbacClusterToken)
	ca := pki.NewCA(t, "agents")
	run := ca.Client("run")
	tls := [3]string{ca.CertPEM, run.Cert, run.Key}
	uid := clusterUID(t, c)
	before := podUIDs(t, f, "app=web")

	for _, tc := range []struct{ name, faults, want string }{
		{"no pod matches", fmt.Sprintf(`[{podPartition: {namespaces: [%s], labelSelector: app=nothing}}]`, f.NS), "refused by target: no live pod matches"},
		{"namespace denied", `[{podPartition: {namespaces: [kube-system]}}]`, "refused by namespace deny-list: namespace kube-system"},
		{"service without endpoints", fmt.Sprintf(`[{podPartition: {namespaces: [%s], labelSelector: app=web, peers: {service: {namespace: %s, name: empty}}}}]`, f.NS, f.NS),
			"refused by peers.service: Service " + f.NS + "/empty has no ready endpoints"},
		{"no agent on the node", fmt.Sprintf(`[{podLatency: {namespaces: [%s], labelSelector: app=web, delay: 50ms}}]`, f.NS),
			"refused by agent: no faultline agent on node e2e-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			rb := podFaultRunbook(t, uid, c.Server, agents.NS, 7470, tls, "1s", tc.faults)
			out := faultline(t, state, "run", "--kubeconfig", kubeconfig, rb)
			if out.code != exitInvalid || !strings.Contains(out.stdout+out.stderr, tc.want) {
				t.Fatalf("exit %d, want 4 and %q\n%s%s", out.code, tc.want, out.stdout, out.stderr)
			}
			if strings.Contains(out.stdout+out.stderr, "refused by kubernetes RBAC") {
				t.Fatalf("the role lacks a permission pod network faults need:\n%s%s", out.stdout, out.stderr)
			}
			if open := openEntries(t, state); len(open) != 0 {
				t.Fatalf("a refused run left %d ledger entries", len(open))
			}
		})
	}
	if got := podUIDs(t, f, "app=web"); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("pods changed")
	}
	// What the new rules do not grant.
	if _, err := tokenCS.CoreV1().Services(f.NS).List(context.Background(), metav1.ListOptions{}); err == nil {
		t.Error("the role lists Services; it needs get only")
	}
}
