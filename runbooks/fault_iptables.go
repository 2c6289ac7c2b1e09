package runbooks

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Partition drops the selected traffic (iptables DROP): peers see their packets vanish and their
// connections time out.
type Partition struct {
	NetworkTarget `yaml:",inline" json:",inline"`
}

// Reject refuses the selected traffic at once (iptables REJECT): TCP connections are reset, other
// packets answered with ICMP port unreachable.
type Reject struct {
	NetworkTarget `yaml:",inline" json:",inline"`
	With          string `yaml:"with,omitempty" json:"with,omitempty" enum:"tcp-reset,icmp-port-unreachable" doc:"How to refuse: tcp-reset (default for TCP; other protocols then get icmp-port-unreachable) or icmp-port-unreachable for everything."`
}

// Loss drops a random share of the selected packets (iptables -m statistic --mode random).
type Loss struct {
	NetworkTarget `yaml:",inline" json:",inline"`
	Probability   float64 `yaml:"probability" json:"probability" doc:"Share of packets dropped, more than 0 and at most 1 (0.3 drops 30%). With direction both, each direction loses this share."`
}

// ShardIsolation cuts one named shard off from the listed peers, both ways: the shard's namespace
// drops everything to and from them. It is a partition with a name the report and the rules carry.
type ShardIsolation struct {
	Shard         string `yaml:"shard" json:"shard" doc:"Name of the shard being isolated, e.g. orders-3; shown in the report and in the iptables rules."`
	NetworkTarget `yaml:",inline" json:",inline"`
}

// Bandwidth limits the rate of traffic leaving an interface with a token bucket (tbf qdisc). The
// interface's original root qdisc is put back exactly on revert.
type Bandwidth struct {
	Netns     string   `yaml:"netns,omitempty" json:"netns,omitempty" doc:"Named network namespace (as ip netns names it). Empty with no netnsPath means the host's namespace."`
	NetnsPath string   `yaml:"netnsPath,omitempty" json:"netnsPath,omitempty" doc:"Path of a network namespace, e.g. /proc/PID/ns/net."`
	Interface string   `yaml:"interface" json:"interface" doc:"Interface whose outgoing traffic is limited, e.g. eth0."`
	Rate      string   `yaml:"rate" json:"rate" doc:"Rate with a unit, as tc writes it: 500kbit, 10mbit, 1gbit (bits per second) or 100kbps, 5mbps (bytes per second)."`
	Burst     string   `yaml:"burst,omitempty" json:"burst,omitempty" doc:"Bucket size, e.g. 32kb or 1mb. Default: 10 ms worth of rate, at least 3200 bytes."`
	Limit     string   `yaml:"limit,omitempty" json:"limit,omitempty" doc:"Bytes that may wait in the queue, e.g. 64kb. Exclusive with latency."`
	Latency   Duration `yaml:"latency,omitempty" json:"latency,omitempty" doc:"Longest time a packet may wait in the queue (default 50ms). Exclusive with limit."`
}

func (p *Partition) validate(v *Validator, path string) {
	p.NetworkTarget.validate(v, path)
}

func (r *Reject) validate(v *Validator, path string) {
	r.NetworkTarget.validate(v, path)
	switch r.With {
	case "", "icmp-port-unreachable":
	case "tcp-reset":
		if r.Protocol == "udp" || r.Protocol == "icmp" {
			v.Errorf(path+".with", "tcp-reset only refuses TCP, but protocol is %s: use icmp-port-unreachable", r.Protocol)
		}
	default:
		v.Errorf(path+".with", "must be tcp-reset or icmp-port-unreachable, got %q", r.With)
	}
}

func (l *Loss) validate(v *Validator, path string) {
	l.NetworkTarget.validate(v, path)
	if !(l.Probability > 0 && l.Probability <= 1) {
		v.Errorf(path+".probability", "must be more than 0 and at most 1 (0.3 drops 30%% of packets), got %g", l.Probability)
	}
}

func (s *ShardIsolation) validate(v *Validator, path string) {
	if !nameRE.MatchString(s.Shard) {
		v.Errorf(path+".shard", "is required: the shard's name (letters, digits, '.', '_' and '-'), e.g. orders-3")
	}
	s.NetworkTarget.validate(v, path)
	if len(s.Peers) == 0 {
		v.Errorf(path+".peers", "list the addresses or CIDRs the shard is cut off from, e.g. [10.0.1.0/24]")
	}
	if s.Direction != "" && s.Direction != "both" {
		v.Errorf(path+".direction", "a shard is isolated both ways; leave direction out (use partition for one direction), got %q", s.Direction)
	}
}

func (b *Bandwidth) validate(v *Validator, path string) {
	(&NetworkTarget{Netns: b.Netns, NetnsPath: b.NetnsPath}).validate(v, path)
	switch {
	case b.Interface == "":
		v.Errorf(path+".interface", "is required: the interface whose outgoing traffic is limited, e.g. eth0")
	case len(b.Interface) > 15 || strings.ContainsAny(b.Interface, "/ \t\n:") || b.Interface == "." || b.Interface == "..":
		v.Errorf(path+".interface", "%q is not an interface name (at most 15 characters, no '/', ':' or spaces)", b.Interface)
	}
	if b.Rate == "" {
		v.Errorf(path+".rate", "is required, e.g. 10mbit")
	} else if _, err := ParseRate(b.Rate); err != nil {
		v.Errorf(path+".rate", "%v", err)
	}
	if b.Burst != "" {
		if _, err := ParseSize(b.Burst); err != nil {
			v.Errorf(path+".burst", "%v", err)
		}
	}
	if b.Limit != "" {
		if _, err := ParseSize(b.Limit); err != nil {
			v.Errorf(path+".limit", "%v", err)
		}
		if b.Latency != 0 {
			v.Errorf(path+".latency", "limit and latency are exclusive: choose one")
		}
	}
}

// rateUnits are tc's rate units, in bits per second per unit.
var rateUnits = []struct {
	suffix string
	bits   float64
}{
	{"tibit", 1 << 40}, {"gibit", 1 << 30}, {"mibit", 1 << 20}, {"kibit", 1 << 10},
	{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
	{"tibps", 8 << 40}, {"gibps", 8 << 30}, {"mibps", 8 << 20}, {"kibps", 8 << 10},
	{"tbps", 8e12}, {"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
}

// ParseRate reads a tc-style rate ("10mbit", "500kbit", "1gbit", "100kbps") into bits per second.
// A unit is required: a bare number means bytes to tc and bits to most people.
func ParseRate(s string) (bitsPerSecond uint64, err error) {
	bad := fmt.Errorf("%q is not a rate: use a number and a unit, e.g. 500kbit, 10mbit, 1gbit (bits/s) or 100kbps (bytes/s)", s)
	ls := strings.ToLower(strings.TrimSpace(s))
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(ls, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return 0, bad
		}
		bits := f * u.bits
		if bits < 8 || bits > 1e15 {
			return 0, fmt.Errorf("%q is out of range (8bit to 1000tbit)", s)
		}
		return uint64(math.Round(bits)), nil
	}
	return 0, bad
}

// sizeUnits are tc's size units, in bytes per unit.
var sizeUnits = []struct {
	suffix string
	bytes  float64
}{
	{"kbit", 1024.0 / 8}, {"mbit", 1024.0 * 1024 / 8}, {"gbit", 1024.0 * 1024 * 1024 / 8},
	{"kb", 1024}, {"mb", 1 << 20}, {"gb", 1 << 30},
	{"k", 1024}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

// ParseSize reads a tc-style size ("1500", "32kb", "1mb"; k, m and g are powers of 1024) into bytes.
func ParseSize(s string) (bytes uint32, err error) {
	bad := fmt.Errorf("%q is not a size: use bytes or a unit, e.g. 1500, 32kb, 1mb", s)
	ls := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(ls, u.suffix); ok {
			ls, mult = num, u.bytes
			break
		}
	}
	f, err := strconv.ParseFloat(ls, 64)
	if err != nil || !(f > 0) {
		return 0, bad
	}
	b := math.Round(f * mult)
	if b < 1 || b > math.MaxUint32 {
		return 0, fmt.Errorf("%q is out of range (1 byte to 4gb)", s)
	}
	return uint32(b), nil
}
