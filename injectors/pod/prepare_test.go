package pod_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/pod"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

var cluster = &kube.Shared{
	Setup: func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, 2, "pn") },
}

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// setup gives a test an opted-in namespace, an agent namespace with an agent pod on node pn-0, and
// the injector environment a run would give (policy p).
func setup(t *testing.T, p runbooks.Policy) (*kubefix.Fixture, injectors.Env) {
	t.Helper()
	c := cluster.Get(t)
	f := kubefix.New(t, c.Client, "pn", kubefix.OptIn())
	ag := kubefix.New(t, c.Client, "agents", nil)
	ag.Pod("agent-pn-0", map[string]string{"app.kubernetes.io/name": runbooks.AgentNameLabel}, "pn-0")
	kc, err := kubeclient.FromConfig(c.Config, "faultline")
	if err != nil {
		t.Fatal(err)
	}
	env := injectors.Env{RunID: "test", Policy: p, Kube: kc, Environment: runbooks.Environment{
		Kubernetes: &runbooks.KubernetesEnvironment{ClusterID: "x", Agent: &runbooks.PodAgent{Namespace: ag.NS, TLS: runTLS(t)}}}}
	return f, env
}

// runTLS makes a CA and the run's client certificate.
func runTLS(t *testing.T) runbooks.AgentTLS {
	ca := pki.NewCA(t, "agents")
	run := ca.Client("run")
	return runbooks.AgentTLS{CAFile: ca.CertPEM, CertFile: run.Cert, KeyFile: run.Key}
}

func partition(t runbooks.PodNetworkTarget) runbooks.Fault {
	return runbooks.Fault{Name: "cut", PodPartition: &runbooks.PodPartition{PodNetworkTarget: t}}
}

func target(ns, selector string, peers *runbooks.PodPeers) runbooks.PodNetworkTarget {
	return runbooks.PodNetworkTarget{PodSelection: runbooks.PodSelection{
		PodTarget: runbooks.PodTarget{Namespaces: []string{ns}, LabelSelector: selector}, Mode: runbooks.ModeAll}, Peers: peers}
}

func injector(t testing.TB, kind string) injectors.Injector {
	t.Helper()
	for _, i := range pod.Injectors() {
		if i.Kind() == kind {
			return i
		}
	}
	t.Fatalf("no injector %s", kind)
	return nil
}

// refused asserts a refusal naming want: Prepare returned no action, so nothing can be applied.
func refused(t *testing.T, act injectors.Action, err error, rule, want string) {
	t.Helper()
	var r *policy.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("Prepare = %v, %v; want a refusal", act, err)
	}
	if act != nil {
		t.Errorf("a refused Prepare returned an action")
	}
	if (rule != "" && r.Rule != rule) || !strings.Contains(r.Msg, want) {
		t.Errorf("refusal = %q (rule %q), want rule %q and %q", r.Msg, r.Rule, rule, want)
	}
}

func TestPrepareRefusals(t *testing.T) {
	f, env := setup(t, runbooks.Policy{})
	ctx := f.Ctx(60 * time.Second)
	f.Pod("web-0", map[string]string{"app": "web"}, "pn-0")
	f.Pod("db-0", map[string]string{"app": "db"}, "pn-1")
	// A Service whose selector matches no pod: its EndpointSlice has no endpoint.
	_, err := f.CS.CoreV1().Services(f.NS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "empty"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nobody"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inj := injector(t, "pod-partition")

	t.Run("no pod matches", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=nothing", nil)), env)
		refused(t, act, err, "target", "no live pod matches")
	})
	t.Run("namespace denied", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target("kube-system", "", nil)), env)
		refused(t, act, err, "namespace deny-list", "kube-system")
	})
	t.Run("not opted in", func(t *testing.T) {
		g := kubefix.New(t, f.CS, "optout", nil)
		g.Pod("p", map[string]string{"app": "p"}, "pn-0")
		act, err := inj.Prepare(ctx, partition(target(g.NS, "", nil)), env)
		refused(t, act, err, "", "")
		if err == nil || !strings.Contains(err.Error(), "faultline.dev/chaos") {
			t.Errorf("refusal %v does not name the opt-in label", err)
		}
	})
	t.Run("blast radius", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "", nil)), withPolicy(env, runbooks.Policy{MaxPods: 1}))
		refused(t, act, err, "policy.maxPods", "")
	})
	t.Run("service without endpoints", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=web", &runbooks.PodPeers{Service: &runbooks.PodPeerService{Namespace: f.NS, Name: "empty"}})), env)
		refused(t, act, err, "peers.service", "has no ready endpoints")
	})
	t.Run("service missing", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=web", &runbooks.PodPeers{Service: &runbooks.PodPeerService{Namespace: f.NS, Name: "ghost"}})), env)
		refused(t, act, err, "peers.service", "does not exist")
	})
	t.Run("peer pods match nothing", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=web", &runbooks.PodPeers{Pods: &runbooks.PodPeerPods{Namespace: f.NS, LabelSelector: "app=nobody"}})), env)
		refused(t, act, err, "peers.pods", "no live pod")
	})
	t.Run("no agent on node", func(t *testing.T) {
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=db", nil)), env)
		refused(t, act, err, "agent", "no faultline agent on node pn-1")
	})
	t.Run("no agent configured", func(t *testing.T) {
		e := env
		e.Environment.Kubernetes = &runbooks.KubernetesEnvironment{ClusterID: "x"}
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=web", nil)), e)
		refused(t, act, err, "environment.kubernetes.agent", "TLS")
	})
	t.Run("unreadable TLS files", func(t *testing.T) {
		e := env
		a := *env.Environment.Kubernetes.Agent
		a.TLS.CertFile = "/nonexistent/run.pem"
		e.Environment.Kubernetes = &runbooks.KubernetesEnvironment{ClusterID: "x", Agent: &a}
		act, err := inj.Prepare(ctx, partition(target(f.NS, "app=web", nil)), e)
		refused(t, act, err, "environment.kubernetes.agent.tls", "/nonexistent/run.pem")
	})
}

func withPolicy(env injectors.Env, p runbooks.Policy) injectors.Env {
	env.Policy = p
	return env
}

// Prepare resolves the pods, their node's agent and the peers (pods and a Service's endpoints)
// into the targets and the ledger record, touching nothing.
func TestPrepareResolvesAgentsAndPeers(t *testing.T) {
	f, env := setup(t, runbooks.Policy{})
	ctx := f.Ctx(90 * time.Second)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3, Node: "pn-0"})
	f.Deployment(kubefix.Spec{Name: "db", Replicas: 2, Node: "pn-1"})
	_, err := f.CS.CoreV1().Services(f.NS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dbPods, err := f.LivePods(ctx, "app=db")
	if err != nil {
		t.Fatal(err)
	}
	agentPods, err := f.CS.CoreV1().Pods(env.Environment.Kubernetes.Agent.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil || len(agentPods.Items) != 1 || agentPods.Items[0].Status.PodIP == "" {
		t.Fatalf("agent pod: %v, %v", agentPods, err)
	}
	wantAgent := "https://" + agentPods.Items[0].Status.PodIP + ":7470"

	fault := runbooks.Fault{Name: "iso", PodShardIsolation: &runbooks.PodShardIsolation{Shard: "web",
		PodNetworkTarget: target(f.NS, "app=web", &runbooks.PodPeers{CIDRs: []string{"10.9.0.0/16"},
			Pods: &runbooks.PodPeerPods{Namespace: f.NS, LabelSelector: "app=db"}})}}
	var act injectors.Action
	// The db Service's endpoints appear once the EndpointSlice controller has seen the ready pods.
	kubefix.Poll(ctx, t, 200*time.Millisecond, "the db Service's endpoints", func(ctx context.Context) (string, bool, error) {
		f2 := fault
		iso := *fault.PodShardIsolation
		peers := *iso.Peers
		peers.Service = &runbooks.PodPeerService{Namespace: f.NS, Name: "db"}
		iso.Peers = &peers
		f2.PodShardIsolation = &iso
		a, err := injector(t, "pod-shard-isolation").Prepare(ctx, f2, env)
		var r *policy.RefusedError
		if errors.As(err, &r) && r.Rule == "peers.service" {
			return err.Error(), false, nil
		}
		act = a
		return "", err == nil, err
	})
	targets := act.Targets()
	if len(targets) != 4 { // 3 pods and the peers line
		t.Fatalf("targets = %q, want 3 pods and the peers", targets)
	}
	for _, tg := range targets[:3] {
		if !strings.Contains(tg, "on node pn-0 via agent "+wantAgent) {
			t.Errorf("target %q does not name node pn-0 and agent %s", tg, wantAgent)
		}
	}
	for _, p := range dbPods {
		if !strings.Contains(targets[3], p.Status.PodIP+"/32") {
			t.Errorf("peers %q lack db pod %s (%s)", targets[3], p.Name, p.Status.PodIP)
		}
	}
	if !strings.Contains(targets[3], "10.9.0.0/16") {
		t.Errorf("peers %q lack the CIDR", targets[3])
	}
	refs := act.(injectors.TargetLister).TargetRefs()
	if len(refs) != 3 || refs[0].Kind != "pod" || refs[0].Node != "pn-0" || refs[0].Workload == nil || refs[0].Workload.Name != "web" {
		t.Errorf("target refs = %+v", refs)
	}
	raw, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		TLS    runbooks.AgentTLS
		Peers  []string
		Faults []struct{ ID, Agent, Node string }
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Faults) != 3 || rec.TLS.CAFile == "" || len(rec.Peers) != 3 {
		t.Fatalf("record %s: want 3 faults, the TLS files and 3 peers (a CIDR, 2 db pods; the Service's are the same)", raw)
	}
	ids := map[string]bool{}
	for _, fr := range rec.Faults {
		if fr.Agent != wantAgent || fr.Node != "pn-0" || fr.ID == "" || ids[fr.ID] {
			t.Errorf("record fault %+v", fr)
		}
		ids[fr.ID] = true
	}
}

// A revert of a record whose agents are unreachable fails with the pod and node named, so the
// ledger keeps the entry for recover.
func TestRevertUnreachableAgentFails(t *testing.T) {
	rec := map[string]any{"kind": "pod-partition", "lease": "10s", "tls": runTLS(t),
		"faults": []map[string]any{{"id": "fl-1", "agent": "https://127.0.0.1:1", "node": "n1", "pod": map[string]string{"namespace": "a", "name": "b"}}}}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = injector(t, "pod-partition").Revert(ctx, raw, injectors.Env{})
	if err == nil || !strings.Contains(err.Error(), "pod a/b on node n1") {
		t.Fatalf("Revert = %v, want an error naming the pod and node", err)
	}
	if err := injector(t, "pod-partition").Revert(ctx, json.RawMessage(`{"kind":"pod-partition","faults":[]}`), injectors.Env{}); err != nil {
		t.Fatalf("Revert of an empty record = %v", err)
	}
}
