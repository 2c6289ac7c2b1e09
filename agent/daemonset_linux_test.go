package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
)

// The DaemonSet of deploy/kustomize/components/agent, as documented, on a real node: admitted
// under the namespace's Pod Security label, Ready, reached at its pod IP over mutual TLS, and
// partitioning a pod of its node through the runtime's socket. Only the image (built here from
// this tree, with the host's iptables tools), the runtime's socket path and the ledger's hostPath
// are patched for the test node.
func TestDaemonSetOnARealNode(t *testing.T) {
	require(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl not installed (scripts/testenv)")
		}
		t.Skip("kubectl not installed (scripts/testenv installs it)")
	}
	ctx := ctxFor(t, 10*time.Minute)
	c := kube.Start(t, kube.WithRealNode())
	n := realnode.Start(ctx, t, c)
	const image = "faultline.test/faultline:agent"
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.LoadImage(ctx, image, bin,
		realnode.WithHostTools("iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore")); err != nil {
		t.Fatal(err)
	}
	httpd, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, n.HTTPDDeployment("default", "web", 2, httpd), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ca := pki.NewCA(t, "agents")
	srv := ca.Server("agent", []string{agentapi.ServerName})
	overlay := t.TempDir()
	state := t.TempDir()
	comp, err := filepath.Abs(filepath.Join("..", "deploy", "kustomize", "components", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overlay, comp)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: faultline\n  labels: {app.kubernetes.io/name: faultline}\n",
		"kustomization.yaml": fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: faultline
resources: [namespace.yaml]
components: [%s]
patches:
  - target: {kind: DaemonSet, name: faultline-agent}
    patch: |-
      - {op: replace, path: /spec/template/spec/containers/0/image, value: %s}
      - {op: add, path: /spec/template/spec/containers/0/imagePullPolicy, value: Never}
      - {op: replace, path: /spec/template/spec/volumes/0/hostPath/path, value: %s}
      - {op: replace, path: /spec/template/spec/volumes/1/hostPath/path, value: %s}
`, rel, image, state, n.CRISocket),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kubectl := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}
	manifests := kubectl(nil, "kustomize", overlay)
	if !strings.Contains(string(manifests), "pod-security.kubernetes.io/enforce: privileged") {
		t.Fatalf("the component does not label its namespace privileged:\n%s", manifests)
	}
	kubectl(manifests, "apply", "-f", "-")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "faultline-agent-tls", Namespace: "faultline"}, Data: map[string][]byte{}}
	for key, path := range map[string]string{"ca.crt": ca.CertPEM, "tls.crt": srv.Cert, "tls.key": srv.Key} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[key] = b
	}
	if _, err := c.Client.CoreV1().Secrets("faultline").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	agents, err := n.WaitPodsReady(wctx, "faultline", "app.kubernetes.io/name=faultline-agent", 1)
	if err != nil {
		t.Fatalf("agent DaemonSet pod not Ready: %v\n%s", err, kubectl(nil, "-n", "faultline", "describe", "pods"))
	}
	pods, err := n.WaitPodsReady(wctx, "default", "app=web", 2)
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.Sandbox(ctx, "default", pods[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Sandbox(ctx, "default", pods[1].Name)
	if err != nil {
		t.Fatal(err)
	}

	run := ca.Client("run")
	conf, err := agentapi.ClientTLS(ca.CertPEM, run.Cert, run.Key)
	if err != nil {
		t.Fatal(err)
	}
	client := agentapi.NewClient(fmt.Sprintf("https://%s:%d", agents[0].Status.PodIP, agentapi.DefaultPort), conf)
	t.Cleanup(client.CloseIdleConnections)
	url := "http://" + a.IP.String() + ":8080/"
	if _, err := n.Probe(ctx, b.NetNS, url, 5*time.Second); err != nil {
		t.Fatalf("pod to pod before the fault: %v", err)
	}
	before := podSnapshot(t, a.NetNS)
	f, err := client.Apply(ctx, partition(t, agentapi.Target{Pod: &agentapi.PodRef{Namespace: "default", Name: a.Pod, UID: a.UID}}, 30*time.Second))
	if err != nil {
		t.Fatalf("apply through the DaemonSet's agent: %v\n%s", err, kubectl(nil, "-n", "faultline", "logs", "-l", "app.kubernetes.io/name=faultline-agent"))
	}
	if f.Netns.PausePID != a.PID {
		t.Errorf("applied in %+v, want pause pid %d", f.Netns, a.PID)
	}
	if _, err := n.Probe(ctx, b.NetNS, url, 2*time.Second); err == nil {
		t.Fatal("a request to the partitioned pod succeeded")
	}
	if _, err := client.Revert(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Probe(ctx, b.NetNS, url, 5*time.Second); err != nil {
		t.Errorf("pod to pod after the revert: %v", err)
	}
	if after := podSnapshot(t, a.NetNS); after != before {
		t.Errorf("pod's rules differ after the revert:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The agent's ledger is on the node, where the next agent finds it.
	if _, err := os.Stat(filepath.Join(state, "ledger.db")); err != nil {
		t.Errorf("no ledger in the hostPath: %v", err)
	}
}
