package runbooks

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultHostFaultLease is the lease of a fault sent to a host's agent when environment.agents
// names none: long enough to ride out a few lost renewals, short enough that a fault outlives a
// dead run by seconds.
const DefaultHostFaultLease = 15 * time.Second

// RemoteKinds are the fault kinds a host's agent applies (faults with on:).
var RemoteKinds = []string{"partition", "reject", "loss", "shard-isolation", "bandwidth", "latency", "process-kill", "process-pause"}

// HostAgents are the faultline agents (`faultline agent --host-only`) of plain Linux hosts.
type HostAgents struct {
	TLS   AgentTLS    `yaml:"tls" json:"tls" doc:"Mutual TLS with the agents: the run presents certFile and checks each agent against caFile."`
	Lease Duration    `yaml:"lease,omitempty" json:"lease,omitempty" doc:"How long an agent keeps a fault without hearing from the run (default 15s, 3s to 5m). The run renews every lease/3; if it dies, the agents revert within the lease."`
	Hosts []AgentHost `yaml:"hosts" json:"hosts" doc:"The hosts, by the names faults use in on:."`
}

// AgentHost is one host and the address of its agent.
type AgentHost struct {
	Name    string `yaml:"name" json:"name" doc:"The name faults use in on:, e.g. db-1. Checked against environment.hosts when that is set."`
	Address string `yaml:"address" json:"address" doc:"host:port of the host's agent, e.g. 10.0.3.17:7470; the port defaults to 7470."`
}

// LeaseOrDefault returns the lease.
func (a *HostAgents) LeaseOrDefault() time.Duration {
	if a == nil || a.Lease == 0 {
		return DefaultHostFaultLease
	}
	return a.Lease.D()
}

// Host returns the host named name.
func (a *HostAgents) Host(name string) (AgentHost, bool) {
	if a == nil {
		return AgentHost{}, false
	}
	for _, h := range a.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return AgentHost{}, false
}

// URL is the agent's base URL.
func (h AgentHost) URL() string {
	host, port, err := net.SplitHostPort(h.Address)
	if err != nil {
		host, port = strings.Trim(h.Address, "[]"), strconv.Itoa(DefaultAgentPort)
	}
	return "https://" + net.JoinHostPort(host, port)
}

func (a *HostAgents) validate(v *Validator, path string) {
	a.TLS.validate(v, path+".tls")
	if a.Lease != 0 && (a.Lease.D() < MinPodFaultLease || a.Lease.D() > MaxPodFaultLease) {
		v.Errorf(path+".lease", "must be between %s and %s, got %s", MinPodFaultLease, MaxPodFaultLease, a.Lease.D())
	}
	if len(a.Hosts) == 0 {
		v.Errorf(path+".hosts", "name at least one host: {name: db-1, address: 10.0.3.17:7470}")
	}
	seen := map[string]bool{}
	for i, h := range a.Hosts {
		p := fmt.Sprintf("%s.hosts[%d]", path, i)
		switch {
		case !nameRE.MatchString(h.Name):
			v.Errorf(p+".name", "is required: letters, digits, '.', '_' and '-', e.g. db-1")
		case seen[h.Name]:
			v.Errorf(p+".name", "duplicate host name %q", h.Name)
		}
		seen[h.Name] = true
		if err := checkAgentAddress(h.Address); err != nil {
			v.Errorf(p+".address", "%v", err)
		}
	}
}

func checkAgentAddress(addr string) error {
	if addr == "" {
		return fmt.Errorf("is required: host:port of the host's agent, e.g. 10.0.3.17:7470")
	}
	if strings.Contains(addr, "://") || strings.ContainsAny(addr, "/ ") {
		return fmt.Errorf("%q must be host or host:port, without a scheme or path (the agents speak HTTPS)", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.Trim(addr, "[]"), "7470"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	return nil
}

// validateRemote checks the faults sent to hosts' agents against environment.agents.
func (r *Runbook) validateRemote(v *Validator) {
	agents := r.Environment.Agents
	if agents != nil {
		agents.validate(v, "environment.agents")
	}
	for i := range r.Experiments {
		for j := range r.Experiments[i].Faults {
			f := &r.Experiments[i].Faults[j]
			if len(f.On) > 0 {
				f.validateOn(v, fmt.Sprintf("experiments[%d].faults[%d]", i, j), agents)
			}
		}
	}
}

func (f *Fault) validateOn(v *Validator, path string, agents *HostAgents) {
	kind := f.Kind()
	if kind != "" && !slices.Contains(RemoteKinds, kind) {
		v.Errorf(path+".on", "a %s fault cannot be sent to an agent; on: takes network faults (partition, reject, loss, shardIsolation, bandwidth, latency) and process faults (processKill, processPause)", kind)
		return
	}
	if agents == nil {
		v.Errorf(path+".on", "names hosts, but the environment has no agents: add environment.agents with tls and hosts [{name, address}]")
		return
	}
	seen := map[string]bool{}
	for k, name := range f.On {
		if _, ok := agents.Host(name); !ok {
			var names []string
			for _, h := range agents.Hosts {
				if h.Name != "" && !slices.Contains(names, h.Name) {
					names = append(names, h.Name)
				}
			}
			v.Errorf(fmt.Sprintf("%s.on[%d]", path, k), "host %q is not in environment.agents.hosts (%s)", name, strings.Join(names, ", "))
		}
		if seen[name] {
			v.Errorf(fmt.Sprintf("%s.on[%d]", path, k), "host %q is named twice", name)
		}
		seen[name] = true
	}
	if _, nsPath := f.Netns(); nsPath != "" {
		v.Errorf(path+".on", "netnsPath is a path on this host; on another host's agent name the namespace with netns")
	}
}

// Netns returns the network namespace a network fault names (by name or by path); both are
// empty for the host's namespace and for faults that are not network faults.
func (f *Fault) Netns() (name, path string) {
	if t := f.networkTarget(); t != nil {
		return t.Netns, t.NetnsPath
	}
	if f.Bandwidth != nil {
		return f.Bandwidth.Netns, f.Bandwidth.NetnsPath
	}
	return "", ""
}

// SetNetns points a network fault at a namespace, by name or by path ("" and "" is the host's).
func (f *Fault) SetNetns(name, path string) {
	if t := f.networkTarget(); t != nil {
		t.Netns, t.NetnsPath = name, path
	}
	if f.Bandwidth != nil {
		f.Bandwidth.Netns, f.Bandwidth.NetnsPath = name, path
	}
}

func (f *Fault) networkTarget() *NetworkTarget {
	switch {
	case f.Partition != nil:
		return &f.Partition.NetworkTarget
	case f.Reject != nil:
		return &f.Reject.NetworkTarget
	case f.Loss != nil:
		return &f.Loss.NetworkTarget
	case f.ShardIsolation != nil:
		return &f.ShardIsolation.NetworkTarget
	case f.Latency != nil:
		return &f.Latency.NetworkTarget
	}
	return nil
}

// RemoteHosts returns the names of every host a runbook's faults are sent to, in order.
func (r *Runbook) RemoteHosts() []string {
	var out []string
	for _, x := range r.Experiments {
		for _, f := range x.Faults {
			for _, h := range f.On {
				if !slices.Contains(out, h) {
					out = append(out, h)
				}
			}
		}
	}
	return out
}

// HasLocalFaults reports whether any fault acts from this host (every fault without on:).
func (r *Runbook) HasLocalFaults() bool {
	for _, x := range r.Experiments {
		for _, f := range x.Faults {
			if len(f.On) == 0 {
				return true
			}
		}
	}
	return false
}
