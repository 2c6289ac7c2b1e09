package agent_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
)

// podSnapshot is iptables-save and ip6tables-save inside a pod's namespace, without comments and
// counters.
func podSnapshot(t testing.TB, netnsPath string) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := realnode.InNetNS(ctx, netnsPath, cmd)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("## " + cmd + "\n")
		var lines []string
		for _, line := range strings.Split(string(out), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				lines = append(lines, counters.ReplaceAllString(line, "[]"))
			}
		}
		for _, line := range dropEmptyTables(lines) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// dropEmptyTables leaves out tables without a rule whose built-in chains all accept: a pod starts
// with no filter table at all, and the kernel instantiates an empty one the first time anything
// uses it; it stays after the revert, and passes every packet as no table does.
func dropEmptyTables(lines []string) []string {
	var out, table []string
	empty := true
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "*"):
			table, empty = []string{l}, true
		case l == "COMMIT":
			if !empty {
				out = append(out, append(table, l)...)
			}
			table = nil
		default:
			table = append(table, l)
			if !strings.HasPrefix(l, ":") || !strings.HasSuffix(l, " ACCEPT []") {
				empty = false
			}
		}
	}
	return out
}

func sameNetns(t testing.TB, a, b string) bool {
	t.Helper()
	ta, err := network.ResolveTarget("", a)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := network.ResolveTarget("", b)
	if err != nil {
		t.Fatal(err)
	}
	return ta.ID == tb.ID
}

// On a real node (kubelet, containerd, CNI): the agent finds a pod's namespace through CRI and
// through /proc, a partition of the pod makes requests to it time out and its revert restores them
// with the pod's rules as they were, and pods not on the node are refused.
func TestPodsOnARealNode(t *testing.T) {
	require(t)
	ctx := ctxFor(t, 10*time.Minute)
	c := kube.Start(t, kube.WithRealNode())
	n := realnode.Start(ctx, t, c)
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, n.HTTPDDeployment("default", "web", 2, img), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := n.WaitPodsReady(ctx, "default", "app=web", 2)
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

	proc := &podnetns.Proc{}
	cri := &podnetns.CRI{Endpoints: []string{n.CRISocket}, Proc: proc}
	viaCRI, err := cri.Resolve(ctx, "default", a.Pod, "")
	if err != nil {
		t.Fatal(err)
	}
	if viaCRI.PausePID != a.PID || viaCRI.UID != a.UID || viaCRI.RuntimeNetns != a.NetNS || !sameNetns(t, viaCRI.Netns, a.NetNS) {
		t.Errorf("CRI resolution %+v, want the sandbox %+v", viaCRI, a)
	}
	viaProc, err := proc.Resolve(ctx, a.UID)
	if err != nil {
		t.Fatal(err)
	}
	if viaProc.PausePID != a.PID || !sameNetns(t, viaProc.Netns, a.NetNS) {
		t.Errorf("/proc resolution %+v, want pause pid %d", viaProc, a.PID)
	}

	for _, mode := range []struct {
		name string
		pods *podnetns.Resolver
	}{
		{"cri", &podnetns.Resolver{CRI: cri, Proc: proc}},
		// No runtime socket: the /proc fallback, given the pod's uid.
		{"proc", &podnetns.Resolver{CRI: &podnetns.CRI{Endpoints: []string{"/nonexistent/containerd.sock"}}, Proc: proc}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			h := startAgent(t, func(cfg *agent.Config, _ *agent.HandlerOptions) {
				cfg.NodeName, cfg.Pods = n.Name, mode.pods
			})
			url := "http://" + a.IP.String() + ":8080/"
			if _, err := n.Probe(ctx, b.NetNS, url, 5*time.Second); err != nil {
				t.Fatalf("pod to pod before the fault: %v", err)
			}
			before := podSnapshot(t, a.NetNS)
			req := partition(t, agentapi.Target{Pod: &agentapi.PodRef{Namespace: "default", Name: a.Pod, UID: a.UID}}, 30*time.Second)
			f, err := h.client.Apply(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if f.Netns.PausePID != a.PID || !sameNetns(t, f.Netns.Path, a.NetNS) {
				t.Errorf("fault applied in %+v, want the pod's namespace (pause pid %d)", f.Netns, a.PID)
			}
			if _, err := n.Probe(ctx, b.NetNS, url, 2*time.Second); err == nil {
				t.Fatal("a request to the partitioned pod succeeded")
			}
			if _, err := h.client.Revert(ctx, f.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := n.Probe(ctx, b.NetNS, url, 5*time.Second); err != nil {
				t.Errorf("pod to pod after the revert: %v", err)
			}
			if after := podSnapshot(t, a.NetNS); after != before {
				t.Errorf("pod's rules differ after the revert:\nbefore:\n%s\nafter:\n%s", before, after)
			}

			for name, ref := range map[string]agentapi.PodRef{
				"unknown pod": {Namespace: "default", Name: "no-such-pod", UID: "00000000-0000-0000-0000-000000000000"},
				"wrong uid":   {Namespace: "default", Name: a.Pod, UID: "00000000-0000-0000-0000-000000000001"},
			} {
				if mode.name == "proc" && name == "wrong uid" {
					continue // without CRI the node knows pods only by uid
				}
				_, err := h.client.Apply(ctx, partition(t, agentapi.Target{Pod: &ref}, 30*time.Second))
				var ae *agentapi.APIError
				if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Rule != "node" {
					t.Errorf("%s: %v, want 403 rule node", name, err)
				}
			}
			if after := podSnapshot(t, a.NetNS); after != before {
				t.Errorf("refused requests changed the pod's rules:\n%s", after)
			}
		})
	}

	// A pod deleted while faulted: its fault is closed as "pod gone", without an error.
	h := startAgent(t, func(cfg *agent.Config, _ *agent.HandlerOptions) {
		cfg.NodeName, cfg.Pods = n.Name, &podnetns.Resolver{CRI: cri, Proc: proc}
	})
	f, err := h.client.Apply(ctx, partition(t, agentapi.Target{Pod: &agentapi.PodRef{Namespace: "default", Name: b.Pod}}, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := c.Client.CoreV1().Pods("default").Delete(ctx, b.Pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the deleted pod's sandbox gone", func() bool {
		_, err := cri.Resolve(ctx, "default", b.Pod, b.UID)
		return errors.Is(err, podnetns.ErrNotOnNode)
	})
	eventually(t, 2*time.Minute, "the renewal to learn the pod is gone", func() bool {
		g, err := h.client.Renew(ctx, f.ID, time.Minute)
		if err != nil && !errors.Is(err, agentapi.ErrGone) {
			t.Fatalf("renewal after the pod's deletion: %v", err)
		}
		return err != nil && g.RevertReason == agentapi.ReasonPodGone
	})
	if got := h.metric(t, "faultline_agent_errors_total"); got != 0 {
		t.Errorf("errors_total = %v after a pod was deleted while faulted, want 0", got)
	}
}
