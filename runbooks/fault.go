package runbooks

import (
	"fmt"
	"reflect"
)

// Fault is one fault of an experiment. Exactly one of the kind fields is set; the field's `kind`
// tag is the name the injector registry knows it by.
type Fault struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty" doc:"Optional; defaults to the kind and index."`
	// On sends the fault to the faultline agents of other hosts (runbooks/fault_remote.go).
	On []string `yaml:"on,omitempty" json:"on,omitempty" doc:"Apply this fault on these hosts, through their faultline agents (names from environment.agents.hosts), instead of on the host the run is on. Network faults (netns then names a namespace on that host) and process faults."`

	ProcessKill  *ProcessKill  `yaml:"processKill,omitempty" json:"processKill,omitempty" kind:"process-kill"`
	ProcessPause *ProcessPause `yaml:"processPause,omitempty" json:"processPause,omitempty" kind:"process-pause"`
	Latency      *Latency      `yaml:"latency,omitempty" json:"latency,omitempty" kind:"latency"`
	Proxy        *Proxy        `yaml:"proxy,omitempty" json:"proxy,omitempty" kind:"proxy"`
	ProxyToxics  *ProxyToxics  `yaml:"proxyToxics,omitempty" json:"proxyToxics,omitempty" kind:"proxy-toxics"`

	// Network faults made of iptables rules and qdiscs (injectors/network).
	Partition      *Partition      `yaml:"partition,omitempty" json:"partition,omitempty" kind:"partition"`
	Reject         *Reject         `yaml:"reject,omitempty" json:"reject,omitempty" kind:"reject"`
	Loss           *Loss           `yaml:"loss,omitempty" json:"loss,omitempty" kind:"loss"`
	ShardIsolation *ShardIsolation `yaml:"shardIsolation,omitempty" json:"shardIsolation,omitempty" kind:"shard-isolation"`
	Bandwidth      *Bandwidth      `yaml:"bandwidth,omitempty" json:"bandwidth,omitempty" kind:"bandwidth"`

	// Kubernetes faults (injectors/kubernetes); they need environment.kubernetes.
	PodKill     *PodKill     `yaml:"podKill,omitempty" json:"podKill,omitempty" kind:"pod-kill"`
	ShardOutage *ShardOutage `yaml:"shardOutage,omitempty" json:"shardOutage,omitempty" kind:"shard-outage"`

	// Pod network faults, applied inside pods by the faultline agent on each pod's node
	// (injectors/pod); they need environment.kubernetes.agent.
	PodPartition      *PodPartition      `yaml:"podPartition,omitempty" json:"podPartition,omitempty" kind:"pod-partition"`
	PodLatency        *PodLatency        `yaml:"podLatency,omitempty" json:"podLatency,omitempty" kind:"pod-latency"`
	PodLoss           *PodLoss           `yaml:"podLoss,omitempty" json:"podLoss,omitempty" kind:"pod-loss"`
	PodBandwidth      *PodBandwidth      `yaml:"podBandwidth,omitempty" json:"podBandwidth,omitempty" kind:"pod-bandwidth"`
	PodShardIsolation *PodShardIsolation `yaml:"podShardIsolation,omitempty" json:"podShardIsolation,omitempty" kind:"pod-shard-isolation"`

	// at is where the loader found the fault, for errors met after loading (a network namespace
	// that does not exist); not part of the runbook's content.
	at *Source
}

// Source is where something is in a runbook file.
type Source struct {
	File string
	Pos  Pos
	// Path is the field path, e.g. experiments[0].faults[1].
	Path string
}

func (s Source) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", s.File, s.Pos.Line, s.Pos.Column, s.Path)
}

// Source returns where the fault is in its runbook file; ok is false for a fault that was not
// loaded from one.
func (f *Fault) Source() (s Source, ok bool) {
	if f.at == nil {
		return Source{}, false
	}
	return *f.at, true
}

// Kind returns the registry name of the fault's kind, or "" when none is set.
func (f *Fault) Kind() string {
	m := setMembers(f, "kind")
	if len(m) == 0 {
		return ""
	}
	return m[0].tag
}

// Spec returns the kind-specific settings (e.g. *ProcessKill).
func (f *Fault) Spec() any {
	m := setMembers(f, "kind")
	if len(m) == 0 {
		return nil
	}
	return m[0].value
}

// FaultKinds lists every fault kind a runbook can name, with the YAML field that selects it.
func FaultKinds() (fields, kinds []string) {
	for _, m := range members(reflect.TypeOf(Fault{}), "kind") {
		fields = append(fields, m.field)
		kinds = append(kinds, m.tag)
	}
	return fields, kinds
}

// ProcessTarget selects local processes by pid file or exact executable name.
type ProcessTarget struct {
	PidFile string  `yaml:"pidFile,omitempty" json:"pidFile,omitempty" doc:"Path of a file holding one pid."`
	Exe     string  `yaml:"exe,omitempty" json:"exe,omitempty" doc:"Exact executable name (the base name of /proc/PID/exe, or the command name); every matching process is a candidate."`
	Count   int     `yaml:"count,omitempty" json:"count,omitempty" doc:"Affect this many of the candidates, chosen at random. Default: all of them."`
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty" doc:"Affect this percentage of the candidates (rounded up, at least one). Exclusive with count."`
}

// ProcessKill sends a signal (SIGKILL by default) to processes, once or repeatedly.
type ProcessKill struct {
	ProcessTarget `yaml:",inline" json:",inline"`
	Signal        string   `yaml:"signal,omitempty" json:"signal,omitempty" doc:"Signal name, e.g. SIGKILL (default), SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1."`
	Interval      Duration `yaml:"interval,omitempty" json:"interval,omitempty" doc:"Select and signal again every interval during the fault window, the way chaos monkey keeps killing. 0 means once."`
}

// ProcessPause stops processes with SIGSTOP for the fault window and resumes them with SIGCONT on revert.
type ProcessPause struct {
	ProcessTarget `yaml:",inline" json:",inline"`
}
