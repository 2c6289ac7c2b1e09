package pod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/agentlease"
	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

type action struct {
	kind, name string
	spec       spec
	env        injectors.Env
	cs         k8s.Interface
	hold       *agentlease.Holder
	pods       []kinj.SelectedPod
	random     string // how the pick of pods was random (injectors.RandomPicker)
	peers      []string
	rec        record
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
	lease := s.sel.LeaseOrDefault()
	a := &action{kind: kind, name: name, spec: s, env: env, cs: cs, pods: pods, random: random, peers: peers}
	a.rec = record{Kind: kind, Lease: lease.String(), TLS: agent.TLS, AgentNamespace: ns, AgentPort: port, Peers: peers}
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
	agents, err := agentlease.NewAgents(agent.TLS, "environment.kubernetes.agent.tls")
	if err != nil {
		return nil, err
	}
	a.hold = agentlease.NewHolder(agents, lease)
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
	req := agentapi.FaultRequest{RunID: a.env.RunID, Owner: agentlease.Owner(), Lease: runbooks.Duration(a.hold.Lease), Fault: a.spec.fault(a.peers)}
	return a.hold.Apply(ctx, a.leased(), req)
}

// leased returns the record's faults as the holder takes them.
func (a *action) leased() []agentlease.Fault {
	out := make([]agentlease.Fault, len(a.rec.Faults))
	for i, af := range a.rec.Faults {
		out[i] = af.leased()
	}
	return out
}

func (af agentFault) leased() agentlease.Fault {
	return agentlease.Fault{ID: af.ID, Agent: af.Agent,
		Where:   fmt.Sprintf("pod %s/%s on node %s", af.Pod.Namespace, af.Pod.Name, af.Node),
		Subject: injectors.Target{Kind: "pod", Namespace: af.Pod.Namespace, Name: af.Pod.Name, UID: af.Pod.UID, Node: af.Node},
		Target:  agentapi.Target{Pod: &af.Pod}}
}

// Describe lists what each agent put in place.
func (a *action) Describe() []string {
	var out []string
	if len(a.peers) > 0 {
		out = append(out, "peers resolved to "+strings.Join(a.peers, ", "))
	}
	return append(out, a.hold.Describe(a.leased())...)
}

// Sustain renews every held fault each lease/3 until the window ends. A fault the agent has
// already reverted (its pod went away; a lease ran out while the run could not reach the agent) is
// reported as an event and no longer renewed; a failing renewal is reported once, since the agent
// reverts by itself if the failures outlast the lease.
func (a *action) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	a.hold.Sustain(ctx, a.leased(), report)
	return nil
}
