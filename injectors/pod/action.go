package pod

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

type action struct {
	kind, name string
	spec       spec
	env        injectors.Env
	cs         k8s.Interface
	agents     *agents
	lease      time.Duration
	pods       []kinj.SelectedPod
	random     string // how the pick of pods was random (injectors.RandomPicker)
	peers      []string
	rec        record

	mu      sync.Mutex
	held    map[string]agentapi.Fault // by fault id, as the agents last answered
	gone    map[string]bool           // reverted by the agent during the window
	failing map[string]bool           // renewals failing, reported once per streak
}

func prepare(ctx context.Context, kind, name string, s spec, agent runbooks.PodAgent, env injectors.Env) (*action, error) {
	cs, err := kinj.Clientset(env)
	if err != nil {
		return nil, err
	}
	pods, random, err := kinj.SelectPods(ctx, env, s.sel.PodTarget, s.sel.Mode, s.sel.Value)
	if err != nil {
		return nil, err
	}
	peers, err := resolvePeers(ctx, cs, s.peers)
	if err != nil {
		return nil, err
	}
	ns, port := agent.NamespaceOrDefault(), agent.PortOrDefault()
	byNode, err := agentsByNode(ctx, cs, ns, port)
	if err != nil {
		return nil, err
	}
	a := &action{kind: kind, name: name, spec: s, env: env, cs: cs,
		lease: s.sel.LeaseOrDefault(), pods: pods, random: random, peers: peers,
		held: map[string]agentapi.Fault{}, gone: map[string]bool{}, failing: map[string]bool{}}
	a.rec = record{Kind: kind, Lease: a.lease.String(), TLS: agent.TLS, AgentNamespace: ns, AgentPort: port, Peers: peers}
	for _, p := range pods {
		if p.Node == "" {
			return nil, policy.Refusef("target", "pod %s/%s is not scheduled on a node yet: there is no network namespace to fault", p.Namespace, p.Name)
		}
		addr, ok := byNode[p.Node]
		if !ok {
			return nil, policy.Refusef("agent", "no faultline agent on node %s (for pod %s/%s): no running pod labelled %s in namespace %s", p.Node, p.Namespace, p.Name, agentLabel, ns)
		}
		a.rec.Faults = append(a.rec.Faults, agentFault{ID: faultID(env.RunID, name, p.UID), Agent: addr, Node: p.Node,
			Pod: agentapi.PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID}})
	}
	if a.agents, err = newAgents(agent.TLS); err != nil {
		return nil, err
	}
	return a, nil
}

// faultID names one pod's fault on its agent: stable for a run, a fault and a pod, so that an
// apply that is retried is the same fault to the agent.
func faultID(runID, fault, uid string) string {
	h := sha256.Sum256([]byte(runID + "\x00" + fault + "\x00" + uid))
	return "fl-" + hex.EncodeToString(h[:10])
}

func (a *action) Targets() []string {
	out := make([]string, len(a.pods))
	for i, p := range a.pods {
		out[i] = fmt.Sprintf("%s via agent %s", p, a.rec.Faults[i].Agent)
	}
	if len(a.peers) > 0 {
		out = append(out, "peers "+strings.Join(a.peers, ", "))
	}
	return out
}

// TargetRefs implements injectors.TargetLister.
func (a *action) TargetRefs() []injectors.Target {
	out := make([]injectors.Target, len(a.pods))
	for i, p := range a.pods {
		out[i] = p.Target()
	}
	return out
}

func (a *action) Record() (json.RawMessage, error) { return json.Marshal(a.rec) }

// RandomPick implements injectors.RandomPicker.
func (a *action) RandomPick() string { return a.random }

func owner() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("faultline run on %s (pid %d)", h, os.Getpid())
}

// Apply resolves the peers again (a Service's endpoints may have changed since Prepare), records
// them, then asks every agent to apply its pod's fault. A failure leaves the record listing every
// fault, so the engine's revert asks each agent (a fault never applied is a 404: reverted).
func (a *action) Apply(ctx context.Context, rec injectors.Recorder) error {
	peers, err := resolvePeers(ctx, a.cs, a.spec.peers)
	if err != nil {
		return err
	}
	if strings.Join(peers, ",") != strings.Join(a.peers, ",") {
		a.peers, a.rec.Peers = peers, peers
		b, err := a.Record()
		if err != nil {
			return fmt.Errorf("encode %s record: %w", a.kind, err)
		}
		if err := rec(ctx, b); err != nil {
			return err
		}
	}
	fault := a.spec.fault(a.peers)
	errs := make([]error, len(a.rec.Faults))
	who := owner()
	forEach(len(a.rec.Faults), func(k int) {
		af := a.rec.Faults[k]
		req := agentapi.FaultRequest{ID: af.ID, RunID: a.env.RunID, Owner: who, Lease: runbooks.Duration(a.lease),
			Target: agentapi.Target{Pod: &af.Pod}, Fault: fault}
		f, err := a.agents.get(af.Agent).Apply(ctx, req)
		if err != nil {
			errs[k] = fmt.Errorf("pod %s/%s on node %s: %w", af.Pod.Namespace, af.Pod.Name, af.Node, err)
			return
		}
		a.mu.Lock()
		a.held[af.ID] = f
		a.mu.Unlock()
	})
	return errors.Join(errs...)
}

// Describe lists what each agent put in place.
func (a *action) Describe() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	if len(a.peers) > 0 {
		out = append(out, "peers resolved to "+strings.Join(a.peers, ", "))
	}
	for _, af := range a.rec.Faults {
		f := a.held[af.ID]
		line := fmt.Sprintf("pod %s/%s on node %s: fault %s held by agent %s on a %s lease", af.Pod.Namespace, af.Pod.Name, af.Node, af.ID, af.Agent, a.lease)
		if f.Netns.ID != "" {
			line += fmt.Sprintf(" (netns %s)", f.Netns.ID)
		}
		out = append(out, line)
		for _, d := range f.Describe {
			out = append(out, "  "+d)
		}
	}
	return out
}

// Sustain renews every held fault each lease/3 until the window ends. A fault the agent has
// already reverted (its pod went away; a lease ran out while the run could not reach the agent) is
// reported as an event and no longer renewed; a failing renewal is reported once, since the agent
// reverts by itself if the failures outlast the lease.
func (a *action) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	t := time.NewTicker(a.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		forEach(len(a.rec.Faults), func(k int) { a.renew(ctx, a.rec.Faults[k], report) })
	}
}

func (a *action) renew(ctx context.Context, af agentFault, report func(injectors.Event)) {
	a.mu.Lock()
	gone := a.gone[af.ID]
	a.mu.Unlock()
	if gone {
		return
	}
	f, err := a.agents.get(af.Agent).Renew(ctx, af.ID, a.lease)
	if ctx.Err() != nil {
		return
	}
	subject := injectors.Target{Kind: "pod", Namespace: af.Pod.Namespace, Name: af.Pod.Name, UID: af.Pod.UID, Node: af.Node}
	who := fmt.Sprintf("pod %s/%s on node %s", af.Pod.Namespace, af.Pod.Name, af.Node)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case errors.Is(err, agentapi.ErrGone), errors.Is(err, agentapi.ErrNotFound):
		reason := f.RevertReason
		if reason == "" {
			reason = "unknown to the agent"
		}
		a.gone[af.ID] = true
		a.held[af.ID] = f
		report(injectors.Event{Time: time.Now(), Message: fmt.Sprintf("the agent reverted the fault on %s before the window ended: %s", who, reason),
			Targets: []string{who}, Subjects: []injectors.Target{subject}})
	case err != nil:
		if !a.failing[af.ID] {
			a.failing[af.ID] = true
			report(injectors.Event{Time: time.Now(), Message: fmt.Sprintf("lease renewal for %s failed (the agent reverts the fault if no renewal reaches it within %s): %v", who, a.lease, err),
				Targets: []string{who}, Subjects: []injectors.Target{subject}})
		}
	default:
		if a.failing[af.ID] {
			a.failing[af.ID] = false
			report(injectors.Event{Time: time.Now(), Message: "lease renewal for " + who + " succeeds again", Targets: []string{who}, Subjects: []injectors.Target{subject}})
		}
		a.held[af.ID] = f
	}
}

// revertOne asks one agent to revert; when its recorded address does not answer, it looks for the
// node's agent again (a replaced agent pod has a new IP).
func revertOne(ctx context.Context, agents *agents, rec record, af agentFault, env injectors.Env) error {
	_, err := agents.get(af.Agent).Revert(ctx, af.ID)
	var apiErr *agentapi.APIError
	if err != nil && !errors.As(err, &apiErr) && ctx.Err() == nil {
		if addr, ok := agentOn(ctx, env, rec.AgentNamespace, rec.AgentPort, af.Node); ok && addr != af.Agent {
			_, err = agents.get(addr).Revert(ctx, af.ID)
		}
	}
	if err == nil || errors.Is(err, agentapi.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("revert fault %s on pod %s/%s (node %s): %w", af.ID, af.Pod.Namespace, af.Pod.Name, af.Node, err)
}

// agents keeps one client per agent address.
type agents struct {
	tls *tls.Config
	mu  sync.Mutex
	by  map[string]*agentapi.Client
}

func newAgents(t runbooks.AgentTLS) (*agents, error) {
	conf, err := agentapi.ClientTLS(t.CAFile, t.CertFile, t.KeyFile)
	if err != nil {
		return nil, policy.Refusef("environment.kubernetes.agent.tls", "%v", err)
	}
	return &agents{tls: conf, by: map[string]*agentapi.Client{}}, nil
}

func (g *agents) get(addr string) *agentapi.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.by[addr]
	if !ok {
		c = agentapi.NewClient(addr, g.tls)
		g.by[addr] = c
	}
	return c
}

func (g *agents) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.by {
		c.CloseIdleConnections()
	}
}

// concurrency bounds the agent requests in flight.
const concurrency = 16

func forEach(n int, fn func(k int)) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for k := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(k)
		}()
	}
	wg.Wait()
}
