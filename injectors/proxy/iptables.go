//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"

	"github.com/faultline-dev/faultline/injectors/network"
)

// ChainPrefix starts the name of every iptables chain faultline creates: FAULTLINE-<id>.
const ChainPrefix = "FAULTLINE-"

// family is one iptables address family.
type family struct {
	name          string // "ipv4" / "ipv6"
	save, restore string // the commands
	loopback      string // the loopback prefix
}

func familyOf(v6 bool) family {
	if v6 {
		return family{name: "ipv6", save: "ip6tables-save", restore: "ip6tables-restore", loopback: "::1/128"}
	}
	return family{name: "ipv4", save: "iptables-save", restore: "iptables-restore", loopback: "127.0.0.0/8"}
}

func (f family) installed() bool {
	_, err1 := exec.LookPath(f.save)
	_, err2 := exec.LookPath(f.restore)
	return err1 == nil && err2 == nil
}

// redirectSpec is one transparent-proxy chain in the nat table of one family.
type redirectSpec struct {
	Chain   string
	Comment string // the owner label: first rule and hooks; how a sweeper knows whose chain it is
	Egress  bool   // hooked from OUTPUT: connections this namespace opens
	Ingress bool   // hooked from PREROUTING: connections coming into this namespace
	Peers   []netip.Prefix
	Ports   []portRange
	ToPort  uint16
	Mark    uint32
	Family  family
}

type portRange struct{ Lo, Hi uint16 }

func (p portRange) String() string {
	if p.Lo == p.Hi {
		return fmt.Sprint(p.Lo)
	}
	return fmt.Sprintf("%d:%d", p.Lo, p.Hi)
}

// rules returns the chain's rules and its hooks, as iptables-restore lines without the -A/-I.
//
// The REDIRECT rules match SYNs of NEW connections only:
//   - --syn: in a namespace where nothing used conntrack before, the nat table starts it, and the
//     next packet of a connection that was already open is picked up mid-stream as a "new"
//     connection; redirected, it would reach a listener that knows nothing of it and be reset.
//     Such connections get a null NAT binding for their lifetime instead; only connections opened
//     after Apply are delayed.
//   - --ctstate NEW: without a conntrack match in the namespace, a redirected connection was seen
//     to be reset now and then (a reply from the listener left un-NATed, as a packet conntrack
//     holds out of window does; nf_conntrack_tcp_be_liberal=1 also cured it). With the match it
//     was not seen again in thousands of round trips (TestLatencyTransparentSoak).
func (s redirectSpec) rules() (chain, hooks []string) {
	c := fmt.Sprintf("-m comment --comment %q", s.Comment)
	redirect := fmt.Sprintf("-j REDIRECT --to-ports %d", s.ToPort)
	chain = append(chain, c, fmt.Sprintf("-m mark --mark 0x%x -j RETURN", s.Mark))
	peers := s.Peers
	if len(peers) == 0 {
		peers = []netip.Prefix{{}} // any peer
	}
	ports := s.Ports
	if len(ports) == 0 {
		ports = []portRange{{}}
	}
	if s.Egress {
		if len(s.Peers) == 0 {
			// "Any peer" does not include this namespace's own loopback traffic.
			chain = append(chain, fmt.Sprintf("-d %s -j RETURN", s.Family.loopback))
		}
		for _, peer := range peers {
			for _, pr := range ports {
				r := "-p tcp"
				if peer.IsValid() {
					r += " -d " + peer.String()
				}
				r += " -m tcp --syn"
				if pr.Lo != 0 {
					r += " --dport " + pr.String()
				}
				r += " -m conntrack --ctstate NEW"
				chain = append(chain, r+" -m addrtype --src-type LOCAL "+redirect)
			}
		}
		hooks = append(hooks, "OUTPUT -p tcp "+c+" -j "+s.Chain)
	}
	if s.Ingress {
		for _, peer := range peers {
			for _, pr := range ports {
				r := "-p tcp"
				if peer.IsValid() {
					r += " -s " + peer.String()
				}
				r += " -m tcp --syn"
				if pr.Lo != 0 {
					r += " --dport " + pr.String()
				}
				r += " -m conntrack --ctstate NEW"
				chain = append(chain, r+" -m addrtype ! --src-type LOCAL --dst-type LOCAL "+redirect)
			}
		}
		hooks = append(hooks, "PREROUTING -p tcp "+c+" -j "+s.Chain)
	}
	return chain, hooks
}

// script is the iptables-restore input that creates the chain and hooks it in one transaction:
// either everything is in place or nothing is.
func (s redirectSpec) script() string {
	chain, hooks := s.rules()
	var b strings.Builder
	b.WriteString("*nat\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n", s.Chain)
	for _, r := range chain {
		fmt.Fprintf(&b, "-A %s %s\n", s.Chain, r)
	}
	// Inserted first in OUTPUT/PREROUTING: a DNAT earlier in the chain (kube-proxy's services)
	// would otherwise take the connection before faultline sees it. The proxy's own marked
	// connection then goes on to that DNAT.
	for _, h := range hooks {
		fmt.Fprintf(&b, "-I %s\n", h)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// describe renders the REDIRECT rules for a human, e.g.
// "nat OUTPUT -d 10.200.1.2/32 -p tcp --dport 8080 -j REDIRECT --to-ports 41234".
func (s redirectSpec) describe() []string {
	var out []string
	peers := s.Peers
	if len(peers) == 0 {
		peers = []netip.Prefix{{}}
	}
	ports := s.Ports
	if len(ports) == 0 {
		ports = []portRange{{}}
	}
	for _, hook := range []string{"OUTPUT", "PREROUTING"} {
		if (hook == "OUTPUT" && !s.Egress) || (hook == "PREROUTING" && !s.Ingress) {
			continue
		}
		for _, peer := range peers {
			for _, pr := range ports {
				r := "nat " + hook
				switch {
				case peer.IsValid() && hook == "OUTPUT":
					r += " -d " + peer.String()
				case peer.IsValid():
					r += " -s " + peer.String()
				case hook == "OUTPUT":
					r += " ! -d " + s.Family.loopback
				}
				r += " -p tcp"
				if pr.Lo != 0 {
					r += " --dport " + pr.String()
				}
				out = append(out, fmt.Sprintf("%s -j REDIRECT --to-ports %d (chain %s, %s; own connections excluded by mark 0x%x)", r, s.ToPort, s.Chain, s.Family.name, s.Mark))
			}
		}
	}
	return out
}

// install creates and hooks the chain inside ns.
func (s redirectSpec) install(ctx context.Context, ns network.Target) error {
	if _, err := runIn(ctx, ns, strings.NewReader(s.script()), s.Family.restore, "-w", "--noflush"); err != nil {
		return fmt.Errorf("install nat chain %s (%s): %w", s.Chain, s.Family.name, err)
	}
	return nil
}

// stopRedirect replaces chain's rules in ns by its label and a rule that matches conntrack state
// only (see drainRelayed): new connections are no longer redirected, and connection tracking stays
// on for the relayed ones until the chain is removed. Nothing is done when the chain is not there.
func stopRedirect(ctx context.Context, ns network.Target, f family, chain string) error {
	t, err := readNat(ctx, ns, f)
	if err != nil {
		return fmt.Errorf("stop redirecting in nat chain %s (%s): %w", chain, f.name, err)
	}
	rules := t.rules[chain]
	if !t.has(chain) || len(rules) == 0 {
		return nil
	}
	var b strings.Builder
	// The label stays first: it is how sweepers know whose chain this is.
	fmt.Fprintf(&b, "*nat\n-F %s\n%s\n", chain, rules[0])
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate NEW -m comment --comment %q -j RETURN\nCOMMIT\n", chain, "keeps connection tracking on while relayed connections drain")
	if _, err := runIn(ctx, ns, strings.NewReader(b.String()), f.restore, "-w", "--noflush"); err != nil {
		return fmt.Errorf("stop redirecting in nat chain %s (%s): %w", chain, f.name, err)
	}
	return nil
}

// natTable is a parsed `iptables-save -t nat`.
type natTable struct {
	chains []string            // user chains, in order
	rules  map[string][]string // chain → its rules, as "-A CHAIN ..." lines
}

func readNat(ctx context.Context, ns network.Target, f family) (*natTable, error) {
	out, err := runIn(ctx, ns, nil, f.save, "-t", "nat")
	if err != nil {
		return nil, err
	}
	return parseNat(out), nil
}

func parseNat(out []byte) *natTable {
	t := &natTable{rules: map[string][]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			t.chains = append(t.chains, name)
		case strings.HasPrefix(line, "-A "):
			name, _, _ := strings.Cut(line[3:], " ")
			t.rules[name] = append(t.rules[name], line)
		}
	}
	return t
}

func (t *natTable) has(chain string) bool {
	for _, c := range t.chains {
		if c == chain {
			return true
		}
	}
	return false
}

// removeScript unhooks, flushes and deletes chain in one transaction; "" when it does not exist.
func (t *natTable) removeScript(chain string) string {
	if !t.has(chain) {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range t.chains {
		for _, r := range t.rules[c] {
			if c != chain && (strings.HasSuffix(r, " -j "+chain) || strings.Contains(r, " -j "+chain+" ") || strings.Contains(r, " -g "+chain)) {
				// iptables-save prints rules in the canonical form -D matches.
				fmt.Fprintf(&b, "-D %s\n", r[len("-A "):])
			}
		}
	}
	fmt.Fprintf(&b, "-F %s\n-X %s\nCOMMIT\n", chain, chain)
	return b.String()
}

// removeChain unhooks, flushes and deletes chain in ns, if it is there. A concurrent removal (a
// sweeper in another process) is not an error.
func removeChain(ctx context.Context, ns network.Target, f family, chain string) (removed bool, err error) {
	for attempt := 0; ; attempt++ {
		t, err := readNat(ctx, ns, f)
		if err != nil {
			return false, fmt.Errorf("remove nat chain %s (%s): %w", chain, f.name, err)
		}
		script := t.removeScript(chain)
		if script == "" {
			return false, nil
		}
		_, err = runIn(ctx, ns, strings.NewReader(script), f.restore, "-w", "--noflush")
		if err == nil {
			return true, nil
		}
		if attempt == 2 {
			return false, fmt.Errorf("remove nat chain %s (%s): %w", chain, f.name, err)
		}
	}
}

var commentRE = regexp.MustCompile(`--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))`)

// commentOf returns the comment of a saved rule, unquoted.
func commentOf(rule string) string {
	m := commentRE.FindStringSubmatch(rule)
	if m == nil {
		return ""
	}
	if m[2] != "" {
		return m[2]
	}
	return strings.ReplaceAll(m[1], `\"`, `"`)
}

// sweepNs removes every latency chain in ns's nat tables whose run is not owned.
func sweepNs(ctx context.Context, ns network.Target, owned func(string) bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, v6 := range []bool{false, true} {
		f := familyOf(v6)
		if !f.installed() {
			continue
		}
		t, err := readNat(ctx, ns, f)
		if err != nil {
			if goneNow(ns) {
				return removed, nil // deleted during the sweep, and its chains with it
			}
			errs = append(errs, err)
			continue
		}
		for _, chain := range t.chains {
			if !strings.HasPrefix(chain, ChainPrefix) {
				continue
			}
			rules := t.rules[chain]
			if len(rules) == 0 {
				continue
			}
			l, ok := network.ParseOwnerLabel(commentOf(rules[0]))
			// A FAULTLINE chain of another kind is its injector's to sweep; one without a label is
			// nobody's faultline can judge; one whose owner process runs has a live listener.
			if !ok || l.Kind != "latency" || owned(l.Run) || ownerAlive(l.Owner) {
				continue
			}
			did, err := removeChain(ctx, ns, f, chain)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if did {
				removed = append(removed, fmt.Sprintf("nat chain %s (%s) of run %s in %s", chain, f.name, l.Run, ns))
			}
		}
	}
	return removed, errors.Join(errs...)
}

// runIn executes a command inside ns and returns its standard output; an error carries the
// command's standard error.
func runIn(ctx context.Context, ns network.Target, stdin io.Reader, name string, args ...string) ([]byte, error) {
	var out []byte
	err := ns.Do(func() error {
		cmd := exec.CommandContext(ctx, name, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(stderr.String()))
		}
		out = stdout.Bytes()
		return nil
	})
	return out, err
}

// goneNow reports whether the namespace ns was resolved to no longer exists (nor does any alias
// of it): an operation in it that failed may have failed for that reason, and then there is
// nothing left in it to undo.
func goneNow(ns network.Target) bool {
	_, gone, err := ns.Locate()
	return err == nil && gone
}

// The naming and labelling below match the network injectors' (injectors/network: ChainName,
// OwnerLabel), so that their sweeper and this one agree on whose chain is whose.

// chainName is the chain a latency fault owns (network.ChainName).
func chainName(runID, fault string) string { return network.ChainName(runID, fault) }

// ownerLabel is the comment of the chain's first rule (a rule without a target, which matches and
// does nothing) and of its hooks: `faultline run=<run> fault=<fault> kind=latency owner=<pid>.<start>`.
// Sweepers read the run and the owner back from it; a chain whose owner process still runs is
// never swept (its listener is alive, and it may belong to a run of another ledger).
func ownerLabel(runID, fault, owner string) string {
	return network.OwnerLabelFor(runID, fault, "latency", owner)
}

// selfOwner, ownerAlive and validRunID are the network injectors', so that both agree.
func selfOwner() string { return network.SelfOwner() }

func ownerAlive(owner string) bool { return network.OwnerAlive(owner) }

func validRunID(runID string) bool { return network.ValidRunID(runID) }
