package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors/proxy"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// podNet is a real node with the faultline agent running on its host, found by the run through
// a hostNetwork pod labelled as an agent pod, and two workloads: web (the target) and client (its
// peer).
type podNet struct {
	c          *kube.Cluster
	n          *realnode.Node
	f          *kubefix.Fixture
	agentNS    string
	port       int
	tls        [3]string
	agentTLS   [3]string
	agentState string
	client     string // netns of the client pod
	webIP      string
	uid        string
}

func startPodNet(t *testing.T) *podNet {
	t.Helper()
	ctx := t.Context()
	c := kube.Start(t, kube.WithRealNode())
	n := realnode.Start(ctx, t, c)
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := kubefix.New(t, c.Client, "pn", kubefix.OptIn())
	agents := kubefix.New(t, c.Client, "faultline", nil)
	for _, name := range []string{"web", "client"} {
		if _, err := c.Client.AppsV1().Deployments(f.NS).Create(ctx, n.HTTPDDeployment(f.NS, name, 1, img), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	web, err := n.WaitPodsReady(wctx, f.NS, "app=web", 1)
	if err != nil {
		t.Fatal(err)
	}
	client, err := n.WaitPodsReady(wctx, f.NS, "app=client", 1)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := n.Sandbox(ctx, f.NS, client[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	// The agent pod only tells the run where the node's agent listens: hostNetwork, so its IP is
	// the node's, where the agent process below listens.
	grace := int64(0)
	ap := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: agents.NS, Labels: map[string]string{"app.kubernetes.io/name": "faultline-agent"}},
		Spec: corev1.PodSpec{NodeName: n.Name, HostNetwork: true, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "agent", Image: realnode.PauseImage, ImagePullPolicy: corev1.PullNever}}}}
	if _, err := c.Client.CoreV1().Pods(agents.NS).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	ca := pki.NewCA(t, "agents")
	run := ca.Client("run")
	srv := ca.Server("agent", []string{agentapi.ServerName})
	p := &podNet{c: c, n: n, f: f, agentNS: agents.NS, port: port, tls: [3]string{ca.CertPEM, run.Cert, run.Key},
		agentTLS: [3]string{ca.CertPEM, srv.Cert, srv.Key}, agentState: t.TempDir(), client: sb.NetNS,
		webIP: web[0].Status.PodIP, uid: clusterUID(t, c)}
	if _, err := n.WaitPodsReady(wctx, agents.NS, "app.kubernetes.io/name=faultline-agent", 1); err != nil {
		t.Fatal(err)
	}
	return p
}

// startAgent runs `faultline agent` on the node's host.
func (p *podNet) startAgent(t *testing.T) *started {
	t.Helper()
	a := startFaultline(t, nil, p.agentState, "agent", "--node-name", p.n.Name, "--state-dir", p.agentState,
		"--cri-socket", p.n.CRISocket, "--no-proc-fallback", "--listen", net.JoinHostPort(p.n.IP.String(), strconv.Itoa(p.port)),
		"--metrics-listen", "", "--tls-ca", p.agentTLS[0], "--tls-cert", p.agentTLS[1], "--tls-key", p.agentTLS[2])
	a.waitFor(t, 30*time.Second, "the agent to listen", func() bool { return strings.Contains(a.stdout.String(), "listening on") })
	return a
}

func (p *podNet) agentClient(t *testing.T) *agentapi.Client {
	t.Helper()
	conf, err := agentapi.ClientTLS(p.tls[0], p.tls[1], p.tls[2])
	if err != nil {
		t.Fatal(err)
	}
	return agentapi.NewClient("https://"+net.JoinHostPort(p.n.IP.String(), strconv.Itoa(p.port)), conf)
}

// reachable says whether the client pod gets an answer from the web pod within 1 s.
func (p *podNet) reachable(t *testing.T) bool {
	t.Helper()
	_, err := p.n.Probe(t.Context(), p.client, "http://"+p.webIP+":8080/", time.Second)
	return err == nil
}

func (p *podNet) runbook(t *testing.T, duration, faults string) string {
	t.Helper()
	return podFaultRunbook(t, p.uid, p.c.Server, p.agentNS, p.port, p.tls, duration, faults)
}

func (p *podNet) partition() string {
	return fmt.Sprintf(`[{podPartition: {namespaces: [%s], labelSelector: app=web, lease: 3s, peers: {pods: {namespace: %s, labelSelector: app=client}}}}]`, p.f.NS, p.f.NS)
}

// One real node, one agent: a pod partition cuts the client off from the web pod and its revert
// restores it; a run SIGKILLed mid-fault is reverted by the agent within the lease (+1 s) with no
// recover; with both killed, the restarted agent reverts and recover is clean; a pod deleted
// mid-fault is no error.
func TestPodPartitionRealNode(t *testing.T) {
	p := startPodNet(t)
	outer := t // the agent outlives each subtest
	agent := p.startAgent(outer)
	if !p.reachable(t) {
		t.Fatal("client cannot reach web before any fault")
	}
	blocked := func(s *started, state string) {
		s.waitFor(t, 60*time.Second, "the partition to cut the client off", func() bool {
			open := openEntries(t, state)
			return len(open) == 1 && open[0].State == ledger.StateApplied && !p.reachable(t)
		})
	}

	t.Run("apply and revert", func(t *testing.T) {
		state := t.TempDir()
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, p.runbook(t, "6s", p.partition()))
		blocked(run, state)
		if out := run.wait(t, 2*time.Minute); out.code != 0 {
			t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if !p.reachable(t) {
			t.Fatal("client still cut off after the run reverted")
		}
	})

	t.Run("run SIGKILLed: the agent reverts within lease + 1s", func(t *testing.T) {
		state := t.TempDir()
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, p.runbook(t, "10m", p.partition()))
		blocked(run, state)
		_ = run.cmd.Process.Kill()
		<-run.done
		killed := time.Now()
		ac := p.agentClient(t)
		var revertedAt time.Time
		waitFor(t, 30*time.Second, "the agent to revert on lease expiry", func() bool {
			fs, err := ac.List(t.Context())
			if err != nil {
				return false
			}
			for _, f := range fs {
				if f.RunID != "" && f.State == agentapi.StateReverted && f.RevertReason == agentapi.ReasonLeaseExpired && f.RevertedAt.After(killed.Add(-time.Second)) {
					revertedAt = f.RevertedAt
					return true
				}
			}
			return false
		})
		took := revertedAt.Sub(killed)
		t.Logf("measured: the agent reverted %s after the run was SIGKILLed (lease 3s)", took.Round(time.Millisecond))
		if took > 4*time.Second {
			t.Errorf("revert %s after the kill, want within lease + 1s = 4s", took)
		}
		waitFor(t, 10*time.Second, "the client to reach web again", func() bool { return p.reachable(t) })
		if out := faultline(t, state, "recover", "--kubeconfig", p.c.Kubeconfig); out.code != 0 {
			t.Fatalf("recover after the agent's revert: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("recover left %d entries", len(open))
		}
	})

	t.Run("both SIGKILLed: the restarted agent reverts, recover is clean", func(t *testing.T) {
		state := t.TempDir()
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, p.runbook(t, "10m", p.partition()))
		blocked(run, state)
		_ = run.cmd.Process.Kill()
		_ = agent.cmd.Process.Kill()
		<-run.done
		<-agent.done
		if p.reachable(t) {
			t.Fatal("the fault vanished with the agent process: it must stay until a revert")
		}
		agent = p.startAgent(outer)
		waitFor(t, 30*time.Second, "the restarted agent to revert the expired fault", func() bool { return p.reachable(t) })
		out := faultline(t, state, "recover", "--kubeconfig", p.c.Kubeconfig)
		if out.code != 0 {
			t.Fatalf("recover: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("recover left %d entries", len(open))
		}
	})

	for _, mech := range []string{"auto", "netem"} {
		t.Run("latency measured, mechanism "+mech, func(t *testing.T) { p.latency(t, mech) })
	}

	// The agent dies mid-window and comes back: the run's failing renewals (or, if the lease ran out
	// meanwhile, the agent's revert) are events of the fault in the result, never silent, and the
	// experiment goes on.
	t.Run("agent SIGKILLed mid-window", func(t *testing.T) {
		state := t.TempDir()
		result := filepath.Join(t.TempDir(), "result.json")
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, "--result-file", result, p.runbook(t, "8s", p.partition()))
		blocked(run, state)
		_ = agent.cmd.Process.Kill()
		<-agent.done
		killed := time.Now()
		// The agent's downtime is the fault here: it lasts one and a half renewal intervals (lease/3
		// = 1s), so at least one renewal meets it.
		run.waitFor(t, 10*time.Second, "1.5 renewal intervals with the agent down", func() bool {
			return time.Since(killed) > 1500*time.Millisecond
		})
		agent = p.startAgent(outer)
		out := run.wait(t, 2*time.Minute)
		if out.code != 0 {
			t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		b, err := os.ReadFile(result)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "lease renewal for pod "+p.f.NS+"/") && !strings.Contains(string(b), "the agent reverted the fault on pod") {
			t.Errorf("the result shows neither the failing renewals nor the agent's revert:\n%s", b)
		}
		if !p.reachable(t) {
			t.Fatal("client still cut off after the run")
		}
	})

	t.Run("pod deleted mid-fault", func(t *testing.T) {
		state := t.TempDir()
		result := filepath.Join(t.TempDir(), "result.json")
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, "--result-file", result, p.runbook(t, "12s", p.partition()))
		blocked(run, state)
		ctx := t.Context()
		web, err := p.c.Client.CoreV1().Pods(p.f.NS).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(web.Items) != 1 {
			t.Fatalf("web pods: %v", err)
		}
		zero := int64(0)
		if err := p.c.Client.CoreV1().Pods(p.f.NS).Delete(ctx, web.Items[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		out := run.wait(t, 2*time.Minute)
		if out.code != 0 {
			t.Fatalf("run with its pod deleted mid-fault: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		b, err := os.ReadFile(result)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "the agent reverted the fault on pod "+p.f.NS+"/"+web.Items[0].Name) {
			t.Errorf("the result does not show the agent's revert of the deleted pod's fault:\n%s", b)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("run left %d entries", len(open))
		}
	})
}

// latency measures the delay podLatency adds to a request from the client pod to the web pod: the
// median of 7 probes during the fault minus the median of 7 before it.
func (p *podNet) latency(t *testing.T, mechanism string) {
	if mechanism == "netem" {
		if ok, err := proxy.ProbeNetem(); err != nil || !ok {
			t.Skipf("this kernel has no netem qdisc (%v): the agent would refuse mechanism netem; auto uses the transparent proxy here", err)
		}
	}
	// The least of several probes: load on a shared machine only ever adds to a round trip (a
	// late wake-up, a descheduled client), so the minimum is the round trip's own cost.
	fastest := func() time.Duration {
		var ds []time.Duration
		for range 9 {
			d, err := p.n.Probe(t.Context(), p.client, "http://"+p.webIP+":8080/", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
		return slices.Min(ds)
	}
	// under measures the round trip while a podLatency of delay is applied. A fault of 1 ms is the
	// baseline: the transparent proxy's own relay (its accept and its connection to the pod, which
	// a loaded machine makes slower) is in both, so their difference is what the delay adds.
	under := func(delay string) time.Duration {
		state := t.TempDir()
		faults := fmt.Sprintf(`[{podLatency: {namespaces: [%s], labelSelector: app=web, lease: 3s, delay: %s, mechanism: %s, peers: {pods: {namespace: %s, labelSelector: app=client}}}}]`, p.f.NS, delay, mechanism, p.f.NS)
		run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, p.runbook(t, "10m", faults))
		run.waitFor(t, 60*time.Second, "the latency fault to be applied", func() bool {
			open := openEntries(t, state)
			return len(open) == 1 && open[0].State == ledger.StateApplied
		})
		d := fastest()
		_ = run.cmd.Process.Signal(os.Interrupt)
		if out := run.wait(t, time.Minute); out.code == exitRevertIncomplete {
			t.Fatalf("revert incomplete:\n%s%s", out.stdout, out.stderr)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("run left %d entries", len(open))
		}
		return d
	}
	base := fastest()
	d1, d100 := under("1ms"), under("100ms")
	const delay = 99 * time.Millisecond // 100 ms against the 1 ms baseline
	added := d100 - d1
	// netem delays each packet the pod sends (the SYN-ACK and the response: two delays per
	// request on a new connection); the transparent proxy delays each request's round trip once.
	tol := time.Millisecond + 100*time.Millisecond*2/100
	ok := false
	for _, k := range []time.Duration{1, 2} {
		if added >= k*delay-tol && added <= k*delay+tol {
			ok = true
			t.Logf("measured: 100ms fault %s, 1ms fault %s, added %s for %d x %s (tolerance %s); no fault %s, so the relay itself costs %s",
				d100, d1, added.Round(10*time.Microsecond), k, delay, tol, base, (d1 - base - k*time.Millisecond).Round(10*time.Microsecond))
		}
	}
	if !ok {
		t.Errorf("added delay %s (100ms fault %s, 1ms fault %s, no fault %s) is not 1 or 2 x %s within %s", added, d100, d1, base, delay, tol)
	}
}
