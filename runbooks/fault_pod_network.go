package runbooks

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Pod network faults are applied inside the network namespace of each selected pod by the
// faultline agent on the pod's node (see docs/kubernetes.md); the run holds them on a lease.

// Lease bounds for pod network faults: the run renews every lease/3, and the agent reverts by
// itself once a lease passes unrenewed.
const (
	DefaultPodFaultLease = 10 * time.Second
	MinPodFaultLease     = 3 * time.Second
	MaxPodFaultLease     = 5 * time.Minute
)

// Agent defaults on Kubernetes.
const (
	DefaultAgentNamespace = "faultline"
	DefaultAgentPort      = 7470
	// AgentNameLabel is the label (app.kubernetes.io/name=faultline-agent) of the agent pods.
	AgentNameLabel = "faultline-agent"
)

// PodAgent says where the faultline agents run and how the run authenticates to them.
type PodAgent struct {
	Namespace string   `yaml:"namespace,omitempty" json:"namespace,omitempty" doc:"Namespace of the agent pods (label app.kubernetes.io/name=faultline-agent). Default faultline."`
	Port      int      `yaml:"port,omitempty" json:"port,omitempty" doc:"Port the agents serve their API on. Default 7470."`
	TLS       AgentTLS `yaml:"tls" json:"tls" doc:"Mutual TLS with the agents: the run presents certFile and checks the agent against caFile."`
}

// AgentTLS are the files of the run's client certificate and of the CA both sides trust.
type AgentTLS struct {
	CAFile   string `yaml:"caFile" json:"caFile" doc:"PEM file of the CA that signed the agents' certificates (and the run's)."`
	CertFile string `yaml:"certFile" json:"certFile" doc:"PEM file of the run's client certificate."`
	KeyFile  string `yaml:"keyFile" json:"keyFile" doc:"PEM file of the run's private key."`
}

// NamespaceOrDefault returns the agent namespace.
func (a *PodAgent) NamespaceOrDefault() string {
	if a == nil || a.Namespace == "" {
		return DefaultAgentNamespace
	}
	return a.Namespace
}

// PortOrDefault returns the agent port.
func (a *PodAgent) PortOrDefault() int {
	if a == nil || a.Port == 0 {
		return DefaultAgentPort
	}
	return a.Port
}

// PodSelection chooses the pods a pod network fault acts on, the way podKill chooses the pods it
// kills, and holds the fault on a lease.
type PodSelection struct {
	PodTarget `yaml:",inline" json:",inline"`
	Mode      string   `yaml:"mode,omitempty" json:"mode,omitempty" enum:"one,fixed,fixed-percent,random-max-percent,all" doc:"How many of the selected pods: one (default), fixed (value pods), fixed-percent (value % rounded up), random-max-percent (a random count between 1 and value %), all."`
	Value     float64  `yaml:"value,omitempty" json:"value,omitempty" doc:"The count for fixed, the percentage for fixed-percent and random-max-percent."`
	Lease     Duration `yaml:"lease,omitempty" json:"lease,omitempty" doc:"How long an agent keeps the fault without hearing from the run (default 10s, 3s to 5m). The run renews every lease/3; if it dies, the agents revert within the lease."`
}

// LeaseOrDefault returns the lease.
func (s *PodSelection) LeaseOrDefault() time.Duration {
	if s.Lease == 0 {
		return DefaultPodFaultLease
	}
	return s.Lease.D()
}

// PodPeers are the peers whose traffic with the selected pods the fault acts on. Pods and Service
// are resolved to pod IPs when the fault is applied; the result lists them.
type PodPeers struct {
	CIDRs   []string        `yaml:"cidrs,omitempty" json:"cidrs,omitempty" doc:"Peer addresses or CIDRs, e.g. 10.0.1.0/24."`
	Pods    *PodPeerPods    `yaml:"pods,omitempty" json:"pods,omitempty" doc:"Peer pods by label selector; their IPs are resolved at apply time."`
	Service *PodPeerService `yaml:"service,omitempty" json:"service,omitempty" doc:"A Service whose ready endpoints are the peers; a Service without ready endpoints is refused."`
}

// PodPeerPods selects peer pods.
type PodPeerPods struct {
	Namespace     string `yaml:"namespace" json:"namespace"`
	LabelSelector string `yaml:"labelSelector" json:"labelSelector" doc:"Label selector in kubectl syntax, e.g. 'app=orders,shard!=3'."`
}

// PodPeerService names a Service.
type PodPeerService struct {
	Namespace string `yaml:"namespace" json:"namespace"`
	Name      string `yaml:"name" json:"name"`
}

// PodNetworkTarget is a pod selection, the peers and which of their traffic is selected.
type PodNetworkTarget struct {
	PodSelection `yaml:",inline" json:",inline"`
	Peers        *PodPeers `yaml:"peers,omitempty" json:"peers,omitempty" doc:"Peers by CIDR, by pod selector or by Service. None means any peer."`
	Direction    string    `yaml:"direction,omitempty" json:"direction,omitempty" enum:"egress,ingress,both" doc:"Traffic leaving (egress), entering (ingress) or both (default)."`
	Protocol     string    `yaml:"protocol,omitempty" json:"protocol,omitempty" enum:"tcp,udp,icmp,all" doc:"Default all; ports need tcp or udp."`
	Ports        []string  `yaml:"ports,omitempty" json:"ports,omitempty" doc:"Peer ports for egress, local ports for ingress: 5432 or a range 8000-8100."`
}

// PodPartition drops the selected traffic inside each selected pod (a partition in the pod's
// network namespace).
type PodPartition struct {
	PodNetworkTarget `yaml:",inline" json:",inline"`
}

// PodLatency delays the selected traffic of each selected pod.
type PodLatency struct {
	PodNetworkTarget `yaml:",inline" json:",inline"`
	Delay            Duration `yaml:"delay" json:"delay" doc:"Delay added to the selected traffic, e.g. 50ms."`
	Jitter           Duration `yaml:"jitter,omitempty" json:"jitter,omitempty" doc:"Variation around delay (see latency). At most delay."`
	Distribution     string   `yaml:"distribution,omitempty" json:"distribution,omitempty" enum:"uniform,normal" doc:"uniform (default) or normal. Needs jitter."`
	Correlation      float64  `yaml:"correlation,omitempty" json:"correlation,omitempty" doc:"Percent (0-100), as netem's correlation. Needs jitter."`
	Mechanism        string   `yaml:"mechanism,omitempty" json:"mechanism,omitempty" enum:"auto,netem,proxy" doc:"auto (default): netem when the node's kernel has it, else the transparent proxy (TCP only)."`
}

// PodLoss drops a random share of the selected packets of each selected pod.
type PodLoss struct {
	PodNetworkTarget `yaml:",inline" json:",inline"`
	Probability      float64 `yaml:"probability" json:"probability" doc:"Share of packets dropped, more than 0 and at most 1."`
}

// PodBandwidth limits the rate of traffic leaving each selected pod's interface.
type PodBandwidth struct {
	PodSelection `yaml:",inline" json:",inline"`
	Interface    string   `yaml:"interface,omitempty" json:"interface,omitempty" doc:"Interface inside the pod, default eth0."`
	Rate         string   `yaml:"rate" json:"rate" doc:"Rate with a unit, e.g. 10mbit or 100kbps (see bandwidth)."`
	Burst        string   `yaml:"burst,omitempty" json:"burst,omitempty" doc:"Bucket size, e.g. 32kb."`
	Limit        string   `yaml:"limit,omitempty" json:"limit,omitempty" doc:"Bytes that may wait in the queue. Exclusive with latency."`
	Latency      Duration `yaml:"latency,omitempty" json:"latency,omitempty" doc:"Longest time a packet may wait in the queue (default 50ms). Exclusive with limit."`
}

// PodShardIsolation cuts the pods of one shard off from their peers (other shards' pods, a
// Service's endpoints), both ways.
type PodShardIsolation struct {
	Shard            string `yaml:"shard" json:"shard" doc:"Name of the shard, e.g. orders-3; shown in the report and in the rules."`
	PodNetworkTarget `yaml:",inline" json:",inline"`
}

func (*PodPartition) kubernetesFault()      {}
func (*PodLatency) kubernetesFault()        {}
func (*PodLoss) kubernetesFault()           {}
func (*PodBandwidth) kubernetesFault()      {}
func (*PodShardIsolation) kubernetesFault() {}

// podNetworkFault marks the kinds that need the agents (environment.kubernetes.agent).
type podNetworkFault interface{ podNetworkFault() }

func (*PodPartition) podNetworkFault()      {}
func (*PodLatency) podNetworkFault()        {}
func (*PodLoss) podNetworkFault()           {}
func (*PodBandwidth) podNetworkFault()      {}
func (*PodShardIsolation) podNetworkFault() {}

// usesPodAgents reports whether any fault goes through the agents.
func (r *Runbook) usesPodAgents() bool {
	for _, x := range r.Experiments {
		for i := range x.Faults {
			if _, ok := x.Faults[i].Spec().(podNetworkFault); ok {
				return true
			}
		}
	}
	return false
}

func (a *PodAgent) validate(v *Validator, path string) {
	if a.Namespace != "" {
		if errs := validation.IsDNS1123Label(a.Namespace); len(errs) > 0 {
			v.Errorf(path+".namespace", "%q is not a valid namespace name", a.Namespace)
		}
	}
	if a.Port < 0 || a.Port > 65535 {
		v.Errorf(path+".port", "must be a port (1-65535), got %d", a.Port)
	}
	a.TLS.validate(v, path+".tls")
}

func (t *AgentTLS) validate(v *Validator, path string) {
	for _, f := range []struct{ name, value string }{{"caFile", t.CAFile}, {"certFile", t.CertFile}, {"keyFile", t.KeyFile}} {
		if f.value == "" {
			v.Errorf(path+"."+f.name, "is required: the agents accept only clients with a certificate signed by their CA")
		}
	}
}

func (s *PodSelection) validate(v *Validator, path string) {
	s.PodTarget.validate(v, path)
	validatePodMode(v, path, s.Mode, s.Value)
	if s.Lease != 0 && (s.Lease.D() < MinPodFaultLease || s.Lease.D() > MaxPodFaultLease) {
		v.Errorf(path+".lease", "%s is out of range: %s to %s (the run renews every lease/3)", s.Lease, MinPodFaultLease, MaxPodFaultLease)
	}
}

func (t *PodNetworkTarget) validate(v *Validator, path string) {
	t.PodSelection.validate(v, path)
	(&NetworkTarget{Direction: t.Direction, Protocol: t.Protocol, Ports: t.Ports}).validate(v, path)
	p := t.Peers
	if p == nil {
		return
	}
	if len(p.CIDRs) == 0 && p.Pods == nil && p.Service == nil {
		v.Errorf(path+".peers", "set cidrs, pods or service (or leave peers out for any peer)")
	}
	for i, c := range p.CIDRs {
		if _, err := ParsePeer(c); err != nil {
			v.Errorf(fmt.Sprintf("%s.peers.cidrs[%d]", path, i), "%v", err)
		}
	}
	if q := p.Pods; q != nil {
		if errs := validation.IsDNS1123Label(q.Namespace); len(errs) > 0 {
			v.Errorf(path+".peers.pods.namespace", "%q is not a valid namespace name (required)", q.Namespace)
		}
		if q.LabelSelector == "" {
			v.Errorf(path+".peers.pods.labelSelector", "is required: faultline does not take every pod of a namespace as peers by accident")
		} else if _, err := labels.Parse(q.LabelSelector); err != nil {
			v.Errorf(path+".peers.pods.labelSelector", "%v", err)
		}
	}
	if s := p.Service; s != nil {
		if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
			v.Errorf(path+".peers.service.namespace", "%q is not a valid namespace name (required)", s.Namespace)
		}
		if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
			v.Errorf(path+".peers.service.name", "%q is not a valid Service name (required)", s.Name)
		}
	}
}

func (p *PodPartition) validate(v *Validator, path string) { p.PodNetworkTarget.validate(v, path) }

func (l *PodLatency) validate(v *Validator, path string) {
	l.PodNetworkTarget.validate(v, path)
	(&Latency{Delay: l.Delay, Jitter: l.Jitter, Distribution: l.Distribution, Correlation: l.Correlation,
		Mechanism: l.Mechanism, NetworkTarget: NetworkTarget{Protocol: l.Protocol}}).validateParams(v, path)
}

func (l *PodLoss) validate(v *Validator, path string) {
	l.PodNetworkTarget.validate(v, path)
	if !(l.Probability > 0 && l.Probability <= 1) {
		v.Errorf(path+".probability", "must be more than 0 and at most 1 (0.3 drops 30%% of packets), got %g", l.Probability)
	}
}

func (b *PodBandwidth) validate(v *Validator, path string) {
	b.PodSelection.validate(v, path)
	(&Bandwidth{Interface: b.InterfaceOrDefault(), Rate: b.Rate, Burst: b.Burst, Limit: b.Limit, Latency: b.Latency}).validate(v, path)
}

// InterfaceOrDefault returns the pod interface the rate is limited on.
func (b *PodBandwidth) InterfaceOrDefault() string {
	if b.Interface == "" {
		return "eth0"
	}
	return b.Interface
}

func (s *PodShardIsolation) validate(v *Validator, path string) {
	if !nameRE.MatchString(s.Shard) {
		v.Errorf(path+".shard", "is required: the shard's name (letters, digits, '.', '_' and '-'), e.g. orders-3")
	}
	s.PodNetworkTarget.validate(v, path)
	if s.Peers == nil {
		v.Errorf(path+".peers", "is required: the peers the shard is cut off from (cidrs, pods or service)")
	}
	if s.Direction != "" && s.Direction != "both" {
		v.Errorf(path+".direction", "a shard is isolated both ways; leave direction out (use podPartition for one direction), got %q", s.Direction)
	}
}

// validatePodAgents requires environment.kubernetes.agent when a fault goes through the agents.
func (r *Runbook) validatePodAgents(v *Validator) {
	k := r.Environment.Kubernetes
	if k != nil && k.Agent != nil {
		k.Agent.validate(v, "environment.kubernetes.agent")
	}
	if k != nil && k.Agent == nil && r.usesPodAgents() {
		v.Errorf("environment.kubernetes", "this runbook has pod network faults but no agent: set agent.tls (caFile, certFile, keyFile) so the run can talk to the faultline agents")
	}
}
