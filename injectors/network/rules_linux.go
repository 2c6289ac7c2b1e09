package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/faultline-dev/faultline/internal/procfs"
	"github.com/faultline-dev/faultline/runbooks"
)

// family is an address family with its own iptables binaries.
type family string

const (
	ipv4 family = "ipv4"
	ipv6 family = "ipv6"
)

func (f family) iptables() string {
	if f == ipv6 {
		return "ip6tables"
	}
	return "iptables"
}

func (f family) restore() string { return f.iptables() + "-restore" }
func (f family) save() string    { return f.iptables() + "-save" }

func (f family) proto() iptables.Protocol {
	if f == ipv6 {
		return iptables.ProtocolIPv6
	}
	return iptables.ProtocolIPv4
}

const (
	chainPrefix = "FAULTLINE-"
	filterTable = "filter"
	labelPrefix = "faultline "
)

// ChainName is the iptables chain a fault owns: FAULTLINE- and 16 hex digits of a hash of the run
// ID and the fault's name (26 characters, within iptables' limit of 28).
func ChainName(runID, fault string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + fault))
	return chainPrefix + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

// OwnerLabel is the comment of the first rule of every FAULTLINE-* chain (a rule with no target,
// which matches and does nothing): `faultline run=<runID> fault=<fault> kind=<kind> owner=<pid>.<start>`.
// Sweep reads the run ID and the owner back from it. The owner is the process that builds the
// label (the one that applies the fault), identified by pid and start time: a chain whose owner
// still runs belongs to a live run — possibly one with another ledger (another --state-dir, a
// test) — and is never swept. Characters outside [A-Za-z0-9._:@+=/-] in fault and kind are
// replaced by '_'; the run ID must not contain any (see ValidRunID).
func OwnerLabel(runID, fault, kind string) string {
	return OwnerLabelFor(runID, fault, kind, SelfOwner())
}

// OwnerLabelFor is OwnerLabel with the owner given (as SelfOwner formats it); the transparent
// proxy records its listener's process this way.
func OwnerLabelFor(runID, fault, kind, owner string) string {
	return fmt.Sprintf("%srun=%s fault=%s kind=%s owner=%s", labelPrefix, runID, labelSafe(fault), labelSafe(kind), owner)
}

// SelfOwner is "<pid>.<start time in clock ticks>" of this process.
func SelfOwner() string {
	pid := os.Getpid()
	start, err := procfs.StartTime(pid)
	if err != nil {
		return strconv.Itoa(pid)
	}
	return fmt.Sprintf("%d.%d", pid, start)
}

// OwnerAlive reports whether the process an owner= value names is still running (same pid, same
// start time). An unparsable or missing owner counts as gone.
func OwnerAlive(owner string) bool {
	p, st, ok := strings.Cut(owner, ".")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	start, err := procfs.StartTime(pid)
	return err == nil && strconv.FormatUint(start, 10) == st
}

var runIDRE = regexp.MustCompile(`^[A-Za-z0-9._:@+=/-]{1,128}$`)

// ValidRunID reports whether a run ID can be written into an iptables comment and read back.
func ValidRunID(runID string) bool { return runIDRE.MatchString(runID) }

func labelSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@+=/-", c) >= 0) {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Label is what an owner label says (see OwnerLabel).
type Label struct {
	Run, Fault, Kind, Owner string
}

// ParseOwnerLabel reads a comment written by OwnerLabel; ok is false for any other comment.
func ParseOwnerLabel(comment string) (l Label, ok bool) {
	rest, ok := strings.CutPrefix(comment, labelPrefix)
	if !ok {
		return Label{}, false
	}
	for _, kv := range strings.Fields(rest) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "run":
			l.Run = v
		case "fault":
			l.Fault = v
		case "kind":
			l.Kind = v
		case "owner":
			l.Owner = v
		}
	}
	return l, l.Run != ""
}

// hook is a rule in a built-in chain that jumps to the fault's chain.
type hook struct {
	Chain string   `json:"chain"`
	Rule  []string `json:"rule"`
}

// familyPlan is what one fault puts into one address family.
type familyPlan struct {
	Family family     `json:"family"`
	Hooks  []hook     `json:"hooks"`
	Rules  [][]string `json:"-"` // the chain's rules after the label; not needed to revert
}

// verdict is what a matched packet gets: an optional extra match, the target, and for rules
// that only make sense for one protocol (tcp-reset), the protocol to restrict an any-protocol
// match to.
type verdict struct {
	onlyProto string
	match     []string
	target    []string
}

// plan builds the rules of a rule-based fault for each family it touches.
func plan(kind, runID, fault string, spec any) ([]familyPlan, string, error) {
	nt, ok := networkTargetOf(spec)
	if !ok {
		return nil, "", fmt.Errorf("internal: %T is not an iptables fault spec", spec)
	}
	chain := ChainName(runID, fault)
	label := OwnerLabel(runID, fault, kind)

	peers := map[family][]netip.Prefix{}
	for _, p := range nt.Peers {
		pfx, err := runbooks.ParsePeer(p)
		if err != nil {
			return nil, "", err
		}
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		f := ipv4
		if pfx.Addr().Is6() {
			f = ipv6
		}
		peers[f] = append(peers[f], pfx)
	}
	portMatches, err := portMatches(nt.Ports)
	if err != nil {
		return nil, "", err
	}
	proto := nt.Protocol
	if proto == "all" {
		proto = ""
	}
	var dirs []string
	switch nt.Direction {
	case "", "both":
		dirs = []string{"ingress", "egress"}
	case "ingress", "egress":
		dirs = []string{nt.Direction}
	default:
		return nil, "", fmt.Errorf("direction %q is not ingress, egress or both", nt.Direction)
	}

	var out []familyPlan
	for _, fam := range []family{ipv4, ipv6} {
		famPeers := peers[fam]
		if len(nt.Peers) > 0 && len(famPeers) == 0 {
			continue // peers given, none of this family: leave the family alone
		}
		if len(famPeers) == 0 {
			famPeers = []netip.Prefix{{}} // any peer
		}
		verdicts, err := verdicts(fam, proto, spec)
		if err != nil {
			return nil, "", err
		}
		fp := familyPlan{Family: fam}
		if fam == ipv6 && (proto == "" || proto == "icmp") {
			// Neighbour discovery is IPv6's ARP, which iptables never sees for IPv4: let it
			// through, or a reject degrades into a timeout and loss into unreachable neighbours.
			for _, typ := range []string{"neighbour-solicitation", "neighbour-advertisement"} {
				fp.Rules = append(fp.Rules, []string{"-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", typ, "-j", "RETURN"})
			}
		}
		for _, dir := range dirs {
			builtin, iface, addrFlag := "INPUT", "-i", "-s"
			if dir == "egress" {
				builtin, iface, addrFlag = "OUTPUT", "-o", "-d"
			}
			h := hook{Chain: builtin}
			if len(nt.Peers) == 0 {
				h.Rule = append(h.Rule, "!", iface, "lo")
			}
			h.Rule = append(h.Rule, "-m", "comment", "--comment", label, "-j", chain)
			fp.Hooks = append(fp.Hooks, h)
			for _, peer := range famPeers {
				for _, v := range verdicts {
					p := proto
					if p == "" {
						p = v.onlyProto
					}
					for _, pm := range portMatches {
						var r []string
						if peer.IsValid() {
							r = append(r, addrFlag, peer.String())
						}
						if p != "" {
							r = append(r, "-p", protoName(fam, p))
						}
						r = append(r, pm...)
						r = append(r, v.match...)
						r = append(r, "-j")
						r = append(r, v.target...)
						fp.Rules = append(fp.Rules, r)
					}
				}
			}
		}
		out = append(out, fp)
	}
	return out, chain, nil
}

func verdicts(fam family, proto string, spec any) ([]verdict, error) {
	drop := []verdict{{target: []string{"DROP"}}}
	switch s := spec.(type) {
	case *runbooks.Partition, *runbooks.ShardIsolation:
		return drop, nil
	case *runbooks.Loss:
		if !(s.Probability > 0 && s.Probability <= 1) {
			return nil, fmt.Errorf("loss probability %g is not in (0, 1]", s.Probability)
		}
		p := strconv.FormatFloat(s.Probability, 'f', -1, 64)
		return []verdict{{match: []string{"-m", "statistic", "--mode", "random", "--probability", p}, target: []string{"DROP"}}}, nil
	case *runbooks.Reject:
		unreachable := []string{"REJECT", "--reject-with", "icmp-port-unreachable"}
		if fam == ipv6 {
			unreachable = []string{"REJECT", "--reject-with", "icmp6-port-unreachable"}
		}
		reset := []string{"REJECT", "--reject-with", "tcp-reset"}
		switch {
		case s.With == "icmp-port-unreachable":
			return []verdict{{target: unreachable}}, nil
		case s.With != "" && s.With != "tcp-reset":
			return nil, fmt.Errorf("reject with %q is not tcp-reset or icmp-port-unreachable", s.With)
		case proto == "tcp":
			return []verdict{{target: reset}}, nil
		case proto == "":
			// TCP gets a reset, everything else an ICMP port unreachable.
			return []verdict{{onlyProto: "tcp", target: reset}, {target: unreachable}}, nil
		case s.With == "tcp-reset":
			return nil, fmt.Errorf("reject with tcp-reset needs protocol tcp, not %s", proto)
		default:
			return []verdict{{target: unreachable}}, nil
		}
	}
	return nil, fmt.Errorf("internal: no verdict for %T", spec)
}

func protoName(fam family, proto string) string {
	if proto == "icmp" && fam == ipv6 {
		return "ipv6-icmp"
	}
	return proto
}

// portMatches turns port specs into --dport matches: one port or range as is, more as multiport
// matches of at most 15 ports each (a range counts as two). No ports gives one empty match.
func portMatches(ports []string) ([][]string, error) {
	if len(ports) == 0 {
		return [][]string{nil}, nil
	}
	specs := make([]string, len(ports))
	for i, p := range ports {
		lo, hi, err := runbooks.ParsePortRange(p)
		if err != nil {
			return nil, err
		}
		specs[i] = strconv.Itoa(int(lo))
		if hi != lo {
			specs[i] += ":" + strconv.Itoa(int(hi))
		}
	}
	if len(specs) == 1 {
		return [][]string{{"--dport", specs[0]}}, nil
	}
	var out [][]string
	var cur []string
	slots := 0
	flush := func() {
		if len(cur) > 0 {
			out = append(out, []string{"-m", "multiport", "--dports", strings.Join(cur, ",")})
			cur, slots = nil, 0
		}
	}
	for _, s := range specs {
		n := 1
		if strings.Contains(s, ":") {
			n = 2
		}
		if slots+n > 15 {
			flush()
		}
		cur = append(cur, s)
		slots += n
	}
	flush()
	return out, nil
}

// quote writes an argument the way iptables-save does, so iptables-restore reads it back.
func quote(arg string) string {
	if arg != "" && !strings.ContainsAny(arg, " \t\"'\\") {
		return arg
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(arg) + `"`
}

func ruleLine(op, chain string, args []string) string {
	var b strings.Builder
	b.WriteString(op)
	b.WriteByte(' ')
	b.WriteString(chain)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(quote(a))
	}
	return b.String()
}

// splitRule splits an iptables-save rule line into arguments, honouring double quotes.
func splitRule(line string) []string {
	var out []string
	var cur strings.Builder
	inQuote, escaped, started := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && inQuote:
			escaped = true
		case r == '"':
			inQuote = !inQuote
			started = true
		case (r == ' ' || r == '\t') && !inQuote:
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}
