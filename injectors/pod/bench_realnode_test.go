package pod_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
	"github.com/faultline-dev/faultline/runbooks"
)

const benchPods = 20

// BenchmarkPartition20Pods applies and reverts a partition on the 20 pods of one real node through
// the agent (the run side: 20 requests to the node's agent, which resolves each pod's namespace
// through CRI and applies there), against the same rules applied directly by injectors/network in
// the same 20 pod namespaces, in the same run.
func BenchmarkPartition20Pods(b *testing.B) {
	ctx := b.Context()
	c := kube.Start(b, kube.WithRealNode())
	n := realnode.Start(ctx, b, c)
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		b.Fatal(err)
	}
	f := kubefix.New(b, c.Client, "bench", kubefix.OptIn())
	ag := kubefix.New(b, c.Client, "agents", nil)
	if _, err := c.Client.AppsV1().Deployments(f.NS).Create(ctx, n.HTTPDDeployment(f.NS, "web", benchPods, img), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	pods, err := n.WaitPodsReady(wctx, f.NS, "app=web", benchPods)
	if err != nil {
		b.Fatal(err)
	}

	// The agent, in this process, on the node's address; a hostNetwork pod tells the run it is there.
	ca := pki.NewCA(b, "agents")
	srv, run := ca.Server("agent", []string{agentapi.ServerName}), ca.Client("run")
	cri := &podnetns.CRI{Endpoints: []string{n.CRISocket}}
	defer cri.Close()
	a, err := agent.New(ctx, agent.Config{NodeName: n.Name, StateDir: b.TempDir(), Pods: &podnetns.Resolver{CRI: cri}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	stls, err := agentapi.ServerTLS(ca.CertPEM, srv.Cert, srv.Key)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: a.Handler(agent.HandlerOptions{RequireCert: true}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(tls.NewListener(ln, stls)) }()
	defer hs.Close()
	grace := int64(0)
	if _, err := c.Client.CoreV1().Pods(ag.NS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Labels: map[string]string{"app.kubernetes.io/name": runbooks.AgentNameLabel}},
		Spec: corev1.PodSpec{NodeName: n.Name, HostNetwork: true, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "agent", Image: realnode.PauseImage, ImagePullPolicy: corev1.PullNever}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := n.WaitPodsReady(wctx, ag.NS, "app.kubernetes.io/name="+runbooks.AgentNameLabel, 1); err != nil {
		b.Fatal(err)
	}
	kc, err := kubeclient.FromConfig(c.Config, "faultline")
	if err != nil {
		b.Fatal(err)
	}
	env := injectors.Env{RunID: "bench", Kube: kc, Environment: runbooks.Environment{Kubernetes: &runbooks.KubernetesEnvironment{
		ClusterID: "x", Agent: &runbooks.PodAgent{Namespace: ag.NS, Port: ln.Addr().(*net.TCPAddr).Port,
			TLS: runbooks.AgentTLS{CAFile: ca.CertPEM, CertFile: run.Cert, KeyFile: run.Key}}}}}
	peers := []string{"10.99.0.0/16"}
	noRec := func(context.Context, json.RawMessage) error { return nil }

	var cpu cpuClock
	round := 0 // the framework calls a sub-benchmark more than once: ids must not repeat
	b.Run("agent", func(b *testing.B) {
		fault := partition(runbooks.PodNetworkTarget{PodSelection: runbooks.PodSelection{
			PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "app=web"}, Mode: runbooks.ModeAll},
			Peers: &runbooks.PodPeers{CIDRs: peers}})
		inj := injector(b, "pod-partition")
		cpu.start(b)
		// Each round is a new run to the agent (fault ids are per run), prepared off the clock.
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			e := env
			round++
			e.RunID = fmt.Sprintf("bench-%d", round)
			act, err := inj.Prepare(ctx, fault, e)
			if err != nil {
				b.Fatal(err)
			}
			if len(act.(injectors.TargetLister).TargetRefs()) != benchPods {
				b.Fatalf("targets %v", act.Targets())
			}
			raw, err := act.Record()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := act.Apply(ctx, noRec); err != nil {
				b.Fatal(err)
			}
			if err := inj.Revert(ctx, raw, e); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/benchPods, "µs/pod")
		cpu.report(b)
	})

	b.Run("direct", func(b *testing.B) {
		var inj injectors.Injector
		for _, i := range network.Injectors() {
			if i.Kind() == "partition" {
				inj = i
			}
		}
		type prepared struct {
			act injectors.Action
			raw json.RawMessage
		}
		var acts []prepared
		for _, p := range pods {
			sb, err := n.Sandbox(ctx, f.NS, p.Name)
			if err != nil {
				b.Fatal(err)
			}
			act, err := inj.Prepare(ctx, runbooks.Fault{Name: "cut", Partition: &runbooks.Partition{
				NetworkTarget: runbooks.NetworkTarget{NetnsPath: sb.NetNS, Peers: peers}}}, injectors.Env{RunID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			raw, err := act.Record()
			if err != nil {
				b.Fatal(err)
			}
			acts = append(acts, prepared{act, raw})
		}
		cpu.start(b)
		for b.Loop() {
			for _, p := range acts {
				if err := p.act.Apply(ctx, noRec); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range acts {
				if err := inj.Revert(ctx, p.raw, injectors.Env{RunID: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/benchPods, "µs/pod")
		cpu.report(b)
	})

	// direct with each pod's Prepare on the clock too: the checks an agent must run per request
	// (the namespace's iptables tools, its chains, no leftovers of a dead run) before it applies.
	b.Run("direct-prepare", func(b *testing.B) {
		var inj injectors.Injector
		for _, i := range network.Injectors() {
			if i.Kind() == "partition" {
				inj = i
			}
		}
		var paths []string
		for _, p := range pods {
			sb, err := n.Sandbox(ctx, f.NS, p.Name)
			if err != nil {
				b.Fatal(err)
			}
			paths = append(paths, sb.NetNS)
		}
		raws := make([]json.RawMessage, len(paths))
		cpu.start(b)
		for b.Loop() {
			for k, path := range paths {
				act, err := inj.Prepare(ctx, runbooks.Fault{Name: "cut", Partition: &runbooks.Partition{
					NetworkTarget: runbooks.NetworkTarget{NetnsPath: path, Peers: peers}}}, injectors.Env{RunID: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if raws[k], err = act.Record(); err != nil {
					b.Fatal(err)
				}
				if err := act.Apply(ctx, noRec); err != nil {
					b.Fatal(err)
				}
			}
			for _, raw := range raws {
				if err := inj.Revert(ctx, raw, injectors.Env{RunID: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/benchPods, "µs/pod")
		cpu.report(b)
	})
}

// cpuClock is the CPU time of this process (the agent, the run side, the direct path) and of the
// iptables tools it ran, over a sub-benchmark: a figure the other loads of a shared machine move
// less than wall time. The runtime's own CPU (containerd answering CRI) is not in it.
type cpuClock struct{ t0 time.Duration }

func cpuNow(b *testing.B) time.Duration {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		b.Fatal(err)
	}
	d := time.Duration(0)
	for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		d += time.Duration(tv.Nano())
	}
	return d
}

func (c *cpuClock) start(b *testing.B) { c.t0 = cpuNow(b) }

func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64((cpuNow(b)-c.t0).Microseconds())/float64(b.N)/benchPods, "cpu-µs/pod")
}
