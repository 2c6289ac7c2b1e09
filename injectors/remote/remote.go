// Package remote sends network and process faults to the faultline agents of plain Linux hosts
// (a fault with on: in a runbook), for golden copies built of VMs rather than pods. Each host's
// agent applies the fault there, writes it to its own ledger first, and holds it on a lease the
// run renews: if the run dies, the agents revert by themselves.
package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/agentlease"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Injector handles every fault with on:, whatever its kind; the agents apply the kind.
type Injector struct{}

// Kind implements injectors.Injector.
func (Injector) Kind() string { return injectors.AgentKind }

// record is the ledger record: enough to revert every host's fault from another process.
type record struct {
	// Kind is the fault's own kind (partition, process-pause, ...).
	Kind   string            `json:"kind"`
	Lease  string            `json:"lease"`
	TLS    runbooks.AgentTLS `json:"tls"`
	Faults []hostFault       `json:"faults"`
}

// hostFault is the fault on one host's agent.
type hostFault struct {
	ID    string `json:"id"`
	Host  string `json:"host"`
	Agent string `json:"agent"` // https://host:port
	Netns string `json:"netns,omitempty"`
}

func (hf hostFault) leased() agentlease.Fault {
	t := agentapi.Target{Host: hf.Netns == "", Netns: hf.Netns}
	where := "host " + hf.Host
	if hf.Netns != "" {
		where += " netns " + hf.Netns
	}
	return agentlease.Fault{ID: hf.ID, Agent: hf.Agent, Where: where, Target: t,
		Subject: injectors.Target{Kind: "host", Name: hf.Host}}
}

// faultID names one host's fault on its agent: stable for a run, a fault and a host, so that an
// apply that is retried is the same fault to the agent.
func faultID(runID, fault, host string) string {
	h := sha256.Sum256([]byte(runID + "\x00" + fault + "\x00" + host))
	return "fl-" + hex.EncodeToString(h[:10])
}

// Prepare implements injectors.Injector: it resolves the hosts and loads the TLS files, touching
// nothing. What the agents will select (which processes) only they can tell.
func (Injector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	kind := f.Kind()
	if !slices.Contains(runbooks.RemoteKinds, kind) {
		return nil, policy.Refusef("on", "a %s fault cannot be sent to an agent", kind)
	}
	hosts := env.Environment.Agents
	if hosts == nil {
		return nil, policy.Refusef("environment.agents", "fault %q names hosts in on:, but the environment has no agents", f.Name)
	}
	netns, path := f.Netns()
	if path != "" {
		return nil, policy.Refusef("on", "netnsPath is a path on this host; name the namespace with netns")
	}
	a := &action{kind: kind, env: env, rec: record{Kind: kind, Lease: hosts.LeaseOrDefault().String(), TLS: hosts.TLS}}
	for _, name := range f.On {
		h, ok := hosts.Host(name)
		if !ok {
			return nil, policy.Refusef("on", "host %q is not in environment.agents.hosts", name)
		}
		a.rec.Faults = append(a.rec.Faults, hostFault{ID: faultID(env.RunID, f.Name, name), Host: name, Agent: h.URL(), Netns: netns})
	}
	// A copy to send: the fault's specs are pointers shared with the loaded runbook, which a
	// daemon runs again on its schedule.
	send, err := clone(f)
	if err != nil {
		return nil, err
	}
	send.On = nil
	send.SetNetns("", "")
	if k := send.ProcessKill; k != nil {
		// The run keeps the rounds: the agent kills once per request.
		kill := *k
		a.interval, kill.Interval = k.Interval.D(), 0
		send.ProcessKill = &kill
	}
	a.send = send
	agents, err := agentlease.NewAgents(hosts.TLS, "environment.agents.tls")
	if err != nil {
		return nil, err
	}
	a.hold = agentlease.NewHolder(agents, hosts.LeaseOrDefault())
	if err := a.plan(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// clone deep-copies a fault through its JSON form, the form the agents receive.
func clone(f runbooks.Fault) (runbooks.Fault, error) {
	var c runbooks.Fault
	b, err := json.Marshal(f)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return c, fmt.Errorf("copy fault %q: %w", f.Name, err)
	}
	return c, nil
}

// planTimeout bounds the question to each agent in Prepare.
const planTimeout = 15 * time.Second

// plan asks every host's agent what it would do, so that a namespace, a process or an agent
// missing on any host refuses the fault before any host is touched, and a dry run lists what the
// agents would select.
func (a *action) plan(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, planTimeout)
	defer cancel()
	a.planned = make([][]string, len(a.rec.Faults))
	errs := make([]error, len(a.rec.Faults))
	agentlease.ForEach(len(a.rec.Faults), func(k int) {
		hf := a.rec.Faults[k]
		req := a.request()
		req.ID, req.Target = hf.ID, hf.leased().Target
		f, err := a.hold.Agents.Get(hf.Agent).Plan(ctx, req)
		var apiErr *agentapi.APIError
		switch {
		case errors.As(err, &apiErr):
			errs[k] = policy.Refusef("agent", "host %s (%s) answers %d: %s (rule %s)", hf.Host, hf.Agent, apiErr.Status, apiErr.Msg, apiErr.Rule)
		case err != nil:
			errs[k] = fmt.Errorf("host %s: agent %s: %w", hf.Host, hf.Agent, err)
		default:
			a.planned[k] = f.Describe
		}
	})
	return errors.Join(errs...)
}

// Revert implements injectors.Injector: it asks each host's agent to revert, from the record
// alone. A fault the agent no longer knows (reverted on lease expiry, never applied) is reverted.
func (Injector) Revert(ctx context.Context, raw json.RawMessage, _ injectors.Env) error {
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode agent record: %w", err)
	}
	faults := make([]agentlease.Fault, len(rec.Faults))
	for k, hf := range rec.Faults {
		faults[k] = hf.leased()
	}
	return agentlease.RevertAll(ctx, rec.TLS, "environment.agents.tls", faults, nil)
}
