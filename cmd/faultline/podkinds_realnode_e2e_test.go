package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// podNetState is what a pod network fault may change inside a pod's network namespace, as
// snapshot reads it for a test's own namespace: the filter and nat tables of both iptables
// families and the qdiscs, without timestamps and packet counters.
func podNetState(t testing.TB, netnsPath string) string {
	t.Helper()
	return snapshotWith(t, func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return realnode.InNetNS(ctx, netnsPath, name, args...)
	})
}

// visible fails the test unless the fault shows in the namespace's state as want: the snapshot
// that must match after the revert does see the fault.
func visible(t testing.TB, before, during, want string) {
	t.Helper()
	if during == before || !strings.Contains(during, want) {
		t.Errorf("the applied fault does not show in the pod's rules and qdiscs (want %q):\n%s", want, during)
	}
}

// kernelCan skips the test, with the kernel's own error, unless cmd succeeds in a throwaway
// network namespace: the agent would refuse the fault on such a node for the same reason.
func kernelCan(t testing.TB, what string, cmd ...string) {
	t.Helper()
	netns.Require(t, cmd[0])
	ns := netns.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := ns.Exec(ctx, cmd[0], cmd[1:]...); err != nil {
		t.Skipf("this kernel cannot %s: %v", what, err)
	}
}

// podOf returns the one pod of the fixture's namespace matching selector and its sandbox.
func (p *podNet) podOf(t testing.TB, selector string) (corev1.Pod, realnode.Sandbox) {
	t.Helper()
	l, err := p.c.Client.CoreV1().Pods(p.f.NS).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("pods %s: %d, %v (want exactly one)", selector, len(l.Items), err)
	}
	sb, err := p.n.Sandbox(t.Context(), p.f.NS, l.Items[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Items[0], sb
}

// reaches says whether an HTTP request from netns ("" for the host) to ip gets an answer within 1 s.
func (p *podNet) reaches(t testing.TB, netns, ip string) bool {
	t.Helper()
	_, err := p.n.Probe(t.Context(), netns, "http://"+net.JoinHostPort(ip, strconv.Itoa(realnode.HTTPDPort))+"/", time.Second)
	return err == nil
}

// connects is how many of n TCP connects from netns to the httpd of ip are established within
// 600 ms each: less than the kernel's first SYN retransmission (1 s), so a connect succeeds only
// if its first SYN and SYN-ACK both pass.
func (p *podNet) connects(t testing.TB, netns, ip string, n int) int {
	t.Helper()
	ok, err := p.n.Connects(t.Context(), netns, net.JoinHostPort(ip, strconv.Itoa(realnode.HTTPDPort)), n, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// holdFault starts a run of faults for 10 minutes and returns once its one ledger entry is applied.
func (p *podNet) holdFault(t *testing.T, faults string) (*started, string) {
	t.Helper()
	state := t.TempDir()
	run := startFaultline(t, nil, state, "run", "--kubeconfig", p.c.Kubeconfig, p.runbook(t, "10m", faults))
	run.waitFor(t, 60*time.Second, "the fault to be applied", func() bool {
		open := openEntries(t, state)
		return len(open) == 1 && open[0].State == ledger.StateApplied
	})
	return run, state
}

// release halts a run with SIGINT: exit 2 (halted), every fault reverted, nothing left open.
func release(t *testing.T, run *started, state string) {
	t.Helper()
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	if out := run.wait(t, 2*time.Minute); out.code != exitHalted {
		t.Fatalf("run halted by SIGINT: exit %d, want %d\n%s%s", out.code, exitHalted, out.stdout, out.stderr)
	}
	if open := openEntries(t, state); len(open) != 0 {
		t.Fatalf("run left %d entries open", len(open))
	}
}

// fetchRate downloads n bytes from the httpd at ip (from the host) and returns the rate in bytes
// per second.
func fetchRate(t testing.TB, ip string, n int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://%s/bytes?n=%d", net.JoinHostPort(ip, strconv.Itoa(realnode.HTTPDPort)), n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("bulk transfer from %s: %v", ip, err)
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	took := time.Since(began)
	if err != nil || resp.StatusCode != http.StatusOK || got != int64(n) {
		t.Fatalf("bulk transfer from %s: %s, %d of %d bytes, %v", ip, resp.Status, got, n, err)
	}
	return float64(n) / took.Seconds()
}

// addShards adds two shards of httpd pods (orders-a, orders-b, label shard=a or b) and a db
// Service with one httpd pod behind it, the peers of the shards, and waits for the Service's
// endpoint to be ready.
func (p *podNet) addShards(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	img, err := p.n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, shard := range map[string]string{"orders-a": "a", "orders-b": "b", "db": ""} {
		d := p.n.HTTPDDeployment(p.f.NS, name, 1, img)
		if shard != "" {
			d.Spec.Template.Labels = map[string]string{"app": name, "shard": shard}
		}
		if _, err := p.c.Client.AppsV1().Deployments(p.f.NS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: p.f.NS}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "db"},
		Ports:    []corev1.ServicePort{{Port: realnode.HTTPDPort, TargetPort: intstr.FromInt32(realnode.HTTPDPort)}},
	}}
	if _, err := p.c.Client.CoreV1().Services(p.f.NS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, sel := range []string{"app=orders-a", "app=orders-b", "app=db"} {
		if _, err := p.n.WaitPodsReady(wctx, p.f.NS, sel, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Minute, "the db Service's endpoint to be ready", func() bool {
		l, err := p.c.Client.DiscoveryV1().EndpointSlices(p.f.NS).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=db"})
		if err != nil {
			return false
		}
		for _, sl := range l.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready && len(ep.Addresses) > 0 {
					return true
				}
			}
		}
		return false
	})
}

// One real node, one agent: podLoss, podBandwidth and podShardIsolation, each through `faultline
// run`, act on real traffic between real pods while applied, and their revert leaves the pod's
// iptables rules and qdiscs as they were; a bandwidth limit whose run was SIGKILLed is removed by
// the agent when its lease runs out.
func TestPodLossBandwidthShardIsolationRealNode(t *testing.T) {
	p := startPodNet(t)
	p.startAgent(t)
	p.addShards(t)
	web, webSB := p.podOf(t, "app=web")
	webIP := web.Status.PodIP
	if !p.reaches(t, p.client, webIP) {
		t.Fatal("client cannot reach web before any fault")
	}
	lossFault := func(prob string) string {
		return fmt.Sprintf(`[{podLoss: {namespaces: [%s], labelSelector: app=web, lease: 5s, probability: %s, peers: {pods: {namespace: %s, labelSelector: app=client}}}}]`, p.f.NS, prob, p.f.NS)
	}

	t.Run("loss 100%", func(t *testing.T) {
		kernelCan(t, "drop packets at random (iptables statistic)", "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP")
		before := podNetState(t, webSB.NetNS)
		run, state := p.holdFault(t, lossFault("1.0"))
		visible(t, before, podNetState(t, webSB.NetNS), "--mode random --probability 1")
		if p.reaches(t, p.client, webIP) {
			t.Error("a request from the client pod reached web through 100% loss")
		}
		if got := p.connects(t, p.client, webIP, 20); got != 0 {
			t.Errorf("%d of 20 connects from the client pod established through 100%% loss", got)
		}
		// The host (the kubelet's probes) is no peer: its traffic passes.
		if !p.reaches(t, "", webIP) {
			t.Error("the host, not a peer, cannot reach web during the loss")
		}
		release(t, run, state)
		if !p.reaches(t, p.client, webIP) {
			t.Error("the client cannot reach web after the revert")
		}
		if after := podNetState(t, webSB.NetNS); after != before {
			t.Errorf("web's rules and qdiscs differ after the revert:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	// A connect succeeds only if its SYN (in) and SYN-ACK (out) both pass: (1-0.5)^2 = 25% with
	// loss both ways. 200 connects: 50 expected, standard deviation 6; the bounds are 5 of them away.
	t.Run("loss 50% statistical", func(t *testing.T) {
		kernelCan(t, "drop packets at random (iptables statistic)", "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP")
		const n = 200
		base := p.connects(t, p.client, webIP, n)
		if base < n*95/100 {
			t.Fatalf("only %d of %d connects established without a fault: the machine is too slow for this check", base, n)
		}
		run, state := p.holdFault(t, lossFault("0.5"))
		got := p.connects(t, p.client, webIP, n)
		t.Logf("measured: %d of %d connects established through 50%% loss both ways (expected 25%%; %d without the fault)", got, n, base)
		if got < 20 || got > 90 {
			t.Errorf("%d of %d connects established through 50%% loss both ways, want 20 to 90 (25%% expected)", got, n)
		}
		release(t, run, state)
		if after := p.connects(t, p.client, webIP, n); after < n*95/100 {
			t.Errorf("%d of %d connects established after the revert", after, n)
		}
	})

	t.Run("bandwidth 1mbit", func(t *testing.T) {
		kernelCan(t, "limit a rate (tbf qdisc)", "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32kb", "latency", "50ms")
		const rate = 1e6 / 8 // bytes per second
		before := podNetState(t, webSB.NetNS)
		base := fetchRate(t, webIP, 4<<20)
		run, state := p.holdFault(t, fmt.Sprintf(`[{podBandwidth: {namespaces: [%s], labelSelector: app=web, lease: 5s, rate: 1mbit}}]`, p.f.NS))
		visible(t, before, podNetState(t, webSB.NetNS), "qdisc tbf fa17: dev eth0 root")
		during := fetchRate(t, webIP, 256<<10)
		release(t, run, state)
		after := fetchRate(t, webIP, 4<<20)
		t.Logf("measured: egress of the web pod %.0f kB/s limited to 1mbit (%.0f kB/s); %.1f MB/s before, %.1f MB/s after the revert",
			during/1e3, rate/1e3, base/1e6, after/1e6)
		if during > 2*rate || during < rate/5 {
			t.Errorf("limited rate %.0f B/s, want within 1/5 to 2 x %.0f B/s", during, rate)
		}
		if base < 20*rate || after < 20*rate {
			t.Errorf("unlimited rate %.0f B/s before, %.0f B/s after: want more than 20 x the limit", base, after)
		}
		if got := podNetState(t, webSB.NetNS); got != before {
			t.Errorf("web's rules and qdiscs differ after the revert:\nbefore:\n%s\nafter:\n%s", before, got)
		}
	})

	// The tbf is a qdisc, not iptables rules: the agent's own revert on lease expiry restores it too.
	t.Run("bandwidth, run SIGKILLed: the agent removes the tbf", func(t *testing.T) {
		kernelCan(t, "limit a rate (tbf qdisc)", "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32kb", "latency", "50ms")
		before := podNetState(t, webSB.NetNS)
		run, state := p.holdFault(t, fmt.Sprintf(`[{podBandwidth: {namespaces: [%s], labelSelector: app=web, lease: 3s, rate: 1mbit}}]`, p.f.NS))
		visible(t, before, podNetState(t, webSB.NetNS), "qdisc tbf fa17: dev eth0 root")
		_ = run.cmd.Process.Kill()
		<-run.done
		waitFor(t, 30*time.Second, "the agent to restore web's qdiscs on lease expiry", func() bool {
			return podNetState(t, webSB.NetNS) == before
		})
		if r := fetchRate(t, webIP, 4<<20); r < 20*1e6/8 {
			t.Errorf("%.0f B/s out of web after the agent's revert, want more than 20 x 1mbit", r)
		}
		if out := faultline(t, state, "recover", "--kubeconfig", p.c.Kubeconfig); out.code != 0 {
			t.Fatalf("recover after the agent's revert: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("recover left %d entries", len(open))
		}
	})

	a, aSB := p.podOf(t, "app=orders-a")
	b, bSB := p.podOf(t, "app=orders-b")
	db, dbSB := p.podOf(t, "app=db")
	for peers, spec := range map[string]string{
		"service": fmt.Sprintf(`{service: {namespace: %s, name: db}}`, p.f.NS),
		"pods":    fmt.Sprintf(`{pods: {namespace: %s, labelSelector: app=db}}`, p.f.NS),
	} {
		t.Run("shard isolation, peers by "+peers, func(t *testing.T) {
			paths := map[string]bool{
				"orders-a -> db": p.reaches(t, aSB.NetNS, db.Status.PodIP), "db -> orders-a": p.reaches(t, dbSB.NetNS, a.Status.PodIP),
				"orders-b -> db": p.reaches(t, bSB.NetNS, db.Status.PodIP), "db -> orders-b": p.reaches(t, dbSB.NetNS, b.Status.PodIP),
				"client -> orders-a": p.reaches(t, p.client, a.Status.PodIP),
			}
			for path, ok := range paths {
				if !ok {
					t.Fatalf("%s fails before the fault", path)
				}
			}
			before := podNetState(t, aSB.NetNS)
			run, state := p.holdFault(t, fmt.Sprintf(`[{podShardIsolation: {shard: orders-a, namespaces: [%s], labelSelector: shard=a, lease: 5s, peers: %s}}]`, p.f.NS, spec))
			visible(t, before, podNetState(t, aSB.NetNS), "-s "+db.Status.PodIP+"/32")
			during := map[string]bool{
				"orders-a -> db": p.reaches(t, aSB.NetNS, db.Status.PodIP), "db -> orders-a": p.reaches(t, dbSB.NetNS, a.Status.PodIP),
				"orders-b -> db": p.reaches(t, bSB.NetNS, db.Status.PodIP), "db -> orders-b": p.reaches(t, dbSB.NetNS, b.Status.PodIP),
				"client -> orders-a": p.reaches(t, p.client, a.Status.PodIP),
			}
			for path, ok := range during {
				// The shard is cut off from its peers both ways; the other shard and non-peers are not.
				if want := !strings.Contains(path, "orders-a") || strings.HasPrefix(path, "client"); ok != want {
					t.Errorf("during the isolation of shard a: %s reachable = %v, want %v", path, ok, want)
				}
			}
			release(t, run, state)
			for _, path := range [][2]string{{aSB.NetNS, db.Status.PodIP}, {dbSB.NetNS, a.Status.PodIP}} {
				if !p.reaches(t, path[0], path[1]) {
					t.Errorf("shard a and db still cut off after the revert (%s to %s)", path[0], path[1])
				}
			}
			if after := podNetState(t, aSB.NetNS); after != before {
				t.Errorf("orders-a's rules and qdiscs differ after the revert:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
