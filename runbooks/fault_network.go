package runbooks

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NetworkTarget says where a network fault is applied and which traffic it selects.
type NetworkTarget struct {
	Netns     string   `yaml:"netns,omitempty" json:"netns,omitempty" doc:"Named network namespace (as ip netns names it). Empty with no netnsPath means the host's namespace."`
	NetnsPath string   `yaml:"netnsPath,omitempty" json:"netnsPath,omitempty" doc:"Path of a network namespace, e.g. /proc/PID/ns/net or /var/run/netns/NAME (a pod's namespace, given by the agent)."`
	Direction string   `yaml:"direction,omitempty" json:"direction,omitempty" enum:"egress,ingress,both" doc:"Traffic leaving (egress), entering (ingress) or both (default)."`
	Peers     []string `yaml:"peers,omitempty" json:"peers,omitempty" doc:"Peer addresses or CIDRs (IPv4 or IPv6). Empty means any peer."`
	Protocol  string   `yaml:"protocol,omitempty" json:"protocol,omitempty" enum:"tcp,udp,icmp,all" doc:"Default all; ports need tcp or udp."`
	Ports     []string `yaml:"ports,omitempty" json:"ports,omitempty" doc:"Peer ports for egress, local ports for ingress: 5432 or a range 8000-8100."`
}

func (t *NetworkTarget) validate(v *Validator, path string) {
	if t.Netns != "" && t.NetnsPath != "" {
		v.Errorf(path+".netnsPath", "netns and netnsPath are exclusive: choose one")
	}
	if t.Netns != "" && strings.ContainsAny(t.Netns, "/ ") {
		v.Errorf(path+".netns", "%q is not a namespace name (use netnsPath for a path)", t.Netns)
	}
	if t.NetnsPath != "" && !strings.HasPrefix(t.NetnsPath, "/") {
		v.Errorf(path+".netnsPath", "%q must be an absolute path", t.NetnsPath)
	}
	switch t.Direction {
	case "", "egress", "ingress", "both":
	default:
		v.Errorf(path+".direction", "must be egress, ingress or both, got %q", t.Direction)
	}
	for i, p := range t.Peers {
		if _, err := ParsePeer(p); err != nil {
			v.Errorf(fmt.Sprintf("%s.peers[%d]", path, i), "%v", err)
		}
	}
	switch t.Protocol {
	case "", "all", "tcp", "udp", "icmp":
	default:
		v.Errorf(path+".protocol", "must be tcp, udp, icmp or all, got %q", t.Protocol)
	}
	if len(t.Ports) > 0 && t.Protocol != "tcp" && t.Protocol != "udp" {
		v.Errorf(path+".ports", "ports need protocol tcp or udp")
	}
	for i, p := range t.Ports {
		if _, _, err := ParsePortRange(p); err != nil {
			v.Errorf(fmt.Sprintf("%s.ports[%d]", path, i), "%v", err)
		}
	}
}

// ParsePeer reads an address or CIDR into a prefix (an address is a /32 or /128).
func ParsePeer(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR, e.g. 10.0.0.0/24 or fd00::/64", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid IP address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePortRange reads "5432" or "8000-8100".
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q is not a port (1-65535) or a range like 8000-8100", s)
	}
	return uint16(x), uint16(y), nil
}
