// Package pod implements the pod network faults (podPartition, podLatency, podLoss, podBandwidth,
// podShardIsolation): the run selects pods as podKill does, resolves their peers to IPs, finds
// each pod's node and the faultline agent on it, and asks that agent to apply the network fault
// inside the pod's network namespace, on a lease the run renews for as long as it holds the fault.
package pod

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/agentlease"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Injectors returns the pod network injectors, one per kind.
func Injectors() []injectors.Injector {
	return []injectors.Injector{
		Injector{kind: "pod-partition"},
		Injector{kind: "pod-latency"},
		Injector{kind: "pod-loss"},
		Injector{kind: "pod-bandwidth"},
		Injector{kind: "pod-shard-isolation"},
	}
}

// Injector handles one pod network kind; the kinds differ only in the fault the agents apply.
type Injector struct{ kind string }

// Kind implements injectors.Injector.
func (i Injector) Kind() string { return i.kind }

// spec is what every pod network kind has: the selection, the peers and the fault for the agent.
type spec struct {
	sel   runbooks.PodSelection
	peers *runbooks.PodPeers
	// fault builds the network fault an agent applies, with the resolved peers.
	fault func(peers []string) runbooks.Fault
}

func specOf(f runbooks.Fault) (spec, error) {
	nt := func(t runbooks.PodNetworkTarget, peers []string) runbooks.NetworkTarget {
		return runbooks.NetworkTarget{Direction: t.Direction, Peers: peers, Protocol: t.Protocol, Ports: t.Ports}
	}
	name := f.Name
	switch s := f.Spec().(type) {
	case *runbooks.PodPartition:
		return spec{s.PodSelection, s.Peers, func(p []string) runbooks.Fault {
			return runbooks.Fault{Name: name, Partition: &runbooks.Partition{NetworkTarget: nt(s.PodNetworkTarget, p)}}
		}}, nil
	case *runbooks.PodLatency:
		return spec{s.PodSelection, s.Peers, func(p []string) runbooks.Fault {
			return runbooks.Fault{Name: name, Latency: &runbooks.Latency{NetworkTarget: nt(s.PodNetworkTarget, p),
				Delay: s.Delay, Jitter: s.Jitter, Distribution: s.Distribution, Correlation: s.Correlation, Mechanism: s.Mechanism}}
		}}, nil
	case *runbooks.PodLoss:
		return spec{s.PodSelection, s.Peers, func(p []string) runbooks.Fault {
			return runbooks.Fault{Name: name, Loss: &runbooks.Loss{NetworkTarget: nt(s.PodNetworkTarget, p), Probability: s.Probability}}
		}}, nil
	case *runbooks.PodBandwidth:
		return spec{s.PodSelection, nil, func([]string) runbooks.Fault {
			return runbooks.Fault{Name: name, Bandwidth: &runbooks.Bandwidth{Interface: s.InterfaceOrDefault(),
				Rate: s.Rate, Burst: s.Burst, Limit: s.Limit, Latency: s.Latency}}
		}}, nil
	case *runbooks.PodShardIsolation:
		return spec{s.PodSelection, s.Peers, func(p []string) runbooks.Fault {
			return runbooks.Fault{Name: name, ShardIsolation: &runbooks.ShardIsolation{Shard: s.Shard, NetworkTarget: nt(s.PodNetworkTarget, p)}}
		}}, nil
	}
	return spec{}, fmt.Errorf("fault %q is not a pod network fault (kind %q)", f.Name, f.Kind())
}

// Prepare implements injectors.Injector: it selects the pods, resolves the peers and the agents
// and loads the TLS files, touching nothing.
func (i Injector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	s, err := specOf(f)
	if err != nil {
		return nil, err
	}
	var agent *runbooks.PodAgent
	if k := env.Environment.Kubernetes; k != nil {
		agent = k.Agent
	}
	if agent == nil {
		return nil, policy.Refusef("environment.kubernetes.agent", "pod network faults need the agents' TLS files in environment.kubernetes.agent.tls")
	}
	a, err := prepare(ctx, i.kind, f.Name, s, *agent, env)
	if err != nil {
		return nil, err // not a typed nil: the engine tests the action against nil
	}
	return a, nil
}

// record is the ledger record: enough to revert every agent fault from another process.
type record struct {
	Kind  string            `json:"kind"`
	Lease string            `json:"lease"`
	TLS   runbooks.AgentTLS `json:"tls"`
	// AgentNamespace and AgentPort find a node's agent again when the recorded address is stale
	// (the agent pod was replaced).
	AgentNamespace string       `json:"agentNamespace"`
	AgentPort      int          `json:"agentPort"`
	Peers          []string     `json:"peers,omitempty"`
	Faults         []agentFault `json:"faults"`
}

// agentFault is one pod's fault on its node's agent.
type agentFault struct {
	ID    string          `json:"id"`
	Agent string          `json:"agent"` // https://ip:port
	Node  string          `json:"node"`
	Pod   agentapi.PodRef `json:"pod"`
}

// Revert implements injectors.Injector: it asks each agent to revert, from the record alone. A
// fault the agent no longer knows (reverted on lease expiry, its pod gone, never applied) is
// reverted.
func (i Injector) Revert(ctx context.Context, raw json.RawMessage, env injectors.Env) error {
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode %s record: %w", i.kind, err)
	}
	faults := make([]agentlease.Fault, len(rec.Faults))
	for k, af := range rec.Faults {
		faults[k] = af.leased()
	}
	// A replaced agent pod has a new IP: look for the node's agent again.
	return agentlease.RevertAll(ctx, rec.TLS, "environment.kubernetes.agent.tls", faults, func(ctx context.Context, f agentlease.Fault) (string, bool) {
		return agentOn(ctx, env, rec.AgentNamespace, rec.AgentPort, f.Subject.Node)
	})
}
