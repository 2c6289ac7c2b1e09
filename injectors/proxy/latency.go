//go:build linux

package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Mechanisms a latency fault is applied with.
const (
	MechanismNetem = "netem"
	MechanismProxy = "proxy"
)

// drainTimeout bounds how long a revert waits for relayed connections to reach a response
// boundary and close (Proxy.Drain); those still open then are closed as they are.
const drainTimeout = 2 * time.Second

// revertTimeout bounds one revert; it runs on a context detached from the run's, which may
// already be cancelled when faults are reverted.
const revertTimeout = 60 * time.Second

// LatencyInjector is the "latency" fault kind. It keeps the transparent proxies it started in
// this process, so that Revert (by ledger record) can close their listeners.
type LatencyInjector struct {
	mu       sync.Mutex
	live     map[string]*Proxy
	probed   bool
	netemOK  bool
	netemErr error
	// probe reports whether the kernel has netem; ProbeNetem unless a test says otherwise.
	probe func() (bool, error)
	// owner names the process in chain labels; selfOwner unless a test plays a dead process.
	owner func() string
	// DrainTimeout bounds the drain of a revert; drainTimeout when zero.
	DrainTimeout time.Duration
}

// NewLatencyInjector returns the latency injector.
func NewLatencyInjector() *LatencyInjector {
	return &LatencyInjector{live: map[string]*Proxy{}, probe: ProbeNetem, owner: selfOwner}
}

// Kind implements injectors.Injector.
func (*LatencyInjector) Kind() string { return "latency" }

// hasNetem probes once per injector.
func (inj *LatencyInjector) hasNetem() (bool, error) {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if !inj.probed {
		inj.netemOK, inj.netemErr = inj.probe()
		inj.probed = true
	}
	return inj.netemOK, inj.netemErr
}

// latencyRecordVersion is the format of the records this version writes. Records without a
// version are the first format, which named the namespace only by the runbook's name or path
// (in "ns"); they still revert, without the identity check.
const latencyRecordVersion = 2

// latencyRecord is the ledger record: everything another process needs to remove the fault.
type latencyRecord struct {
	Version int    `json:"version,omitempty"`
	ID      string `json:"id"`
	RunID   string `json:"runID,omitempty"`
	Fault   string `json:"fault,omitempty"`
	// Target is the namespace with its identity when the fault was prepared, so that a revert
	// after a crash reaches exactly that namespace (through an alias if the path it was named by
	// is gone) and never another one that now has the same path.
	Target network.Target `json:"target"`
	// NS is where first-format records named the namespace; decodeLatencyRecord turns it into
	// Target, and it is never written.
	NS        *legacyNS `json:"ns,omitempty"`
	Mechanism string    `json:"mechanism"`
	// Transparent proxy: the nat chain (in iptables and/or ip6tables) and the listener.
	Chain    string   `json:"chain,omitempty"`
	Families []string `json:"families,omitempty"`
	Port     uint16   `json:"port,omitempty"`
	PID      int      `json:"pid,omitempty"`
	// netem: the interfaces that got faultline's root qdisc.
	Interfaces []string `json:"interfaces,omitempty"`
}

// legacyNS is the namespace of a first-format record: a name in the ip-netns directory, a path,
// or neither for the namespace faultline ran in.
type legacyNS struct {
	Name string `json:"netns,omitempty"`
	Path string `json:"netnsPath,omitempty"`
}

// target is the namespace the first format's revert went to. Without a recorded identity it
// cannot tell a replaced namespace from the original: it trusts the path, as that version did.
func (n legacyNS) target() network.Target {
	switch {
	case n.Path != "":
		label := n.Name
		if label == "" {
			label = n.Path
		}
		return network.Target{Label: label, Path: n.Path}
	case n.Name != "":
		return network.Target{Label: n.Name, Path: filepath.Join(network.DefaultNetnsDir, n.Name)}
	}
	return network.Target{Label: "host"}
}

// decodeLatencyRecord reads a record of this or an earlier version.
func decodeLatencyRecord(raw json.RawMessage) (latencyRecord, error) {
	var rec latencyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, fmt.Errorf("decode latency record: %w", err)
	}
	switch {
	case rec.Version > latencyRecordVersion:
		return rec, fmt.Errorf("latency record %s has version %d, newer than this faultline reads (%d): revert it with the version that applied it", rec.ID, rec.Version, latencyRecordVersion)
	case rec.Version == 0:
		if rec.NS == nil {
			return rec, fmt.Errorf("latency record %s names no network namespace", rec.ID)
		}
		rec.Target, rec.NS = rec.NS.target(), nil
	}
	return rec, nil
}

type latencyAction struct {
	inj  *LatencyInjector
	spec runbooks.Latency
	log  *slog.Logger
	rec  latencyRecord
	// ns is where Apply works: rec.Target, located again at Apply.
	ns     network.Target
	peers  []netip.Prefix
	ports  []portRange
	egress bool
	ingres bool
	v4, v6 bool
	reason string // why this mechanism
	lines  []string
}

// Prepare implements injectors.Injector: it checks the namespace, the capability and the tools,
// and chooses netem or the transparent proxy. Nothing is changed.
func (inj *LatencyInjector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := f.Latency
	if spec == nil {
		return nil, fmt.Errorf("latency injector: fault %q is not a latency fault", f.Name)
	}
	a := &latencyAction{inj: inj, spec: *spec, log: logger(env)}
	for _, p := range spec.Peers {
		pr, err := runbooks.ParsePeer(p)
		if err != nil {
			return nil, fmt.Errorf("latency %s: %w", f.Name, err)
		}
		a.peers = append(a.peers, pr)
	}
	for _, p := range spec.Ports {
		lo, hi, err := runbooks.ParsePortRange(p)
		if err != nil {
			return nil, fmt.Errorf("latency %s: %w", f.Name, err)
		}
		a.ports = append(a.ports, portRange{lo, hi})
	}
	a.egress = spec.Direction == "" || spec.Direction == "both" || spec.Direction == "egress"
	a.ingres = spec.Direction == "" || spec.Direction == "both" || spec.Direction == "ingress"

	if err := network.RequireNetAdmin(); err != nil {
		return nil, err
	}
	tgt, err := network.ResolveTarget(spec.Netns, spec.NetnsPath)
	if err != nil {
		return nil, err
	}
	a.rec = latencyRecord{Version: latencyRecordVersion, RunID: env.RunID, Fault: f.Name, Target: tgt}
	a.ns = tgt
	if !validRunID(env.RunID) {
		return nil, policy.Refusef("runID", "run ID %q cannot label iptables rules (letters, digits and ._:@+=/- only, at most 128)", env.RunID)
	}
	if err := a.choose(); err != nil {
		return nil, err
	}
	a.rec.ID = chainName(env.RunID, f.Name)
	switch a.rec.Mechanism {
	case MechanismProxy:
		if err := a.prepareProxy(ctx); err != nil {
			return nil, err
		}
	case MechanismNetem:
		if err := a.prepareNetem(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// choose picks netem or the transparent proxy.
func (a *latencyAction) choose() error {
	s := a.spec
	normal := s.Distribution == "normal"
	switch s.Mechanism {
	case MechanismProxy:
		a.rec.Mechanism, a.reason = MechanismProxy, "mechanism: proxy"
	case MechanismNetem, "auto", "":
		ok, err := a.inj.hasNetem()
		switch {
		case err != nil && s.Mechanism == MechanismNetem:
			return fmt.Errorf("latency: detect netem: %w", err)
		case err != nil:
			a.rec.Mechanism, a.reason = MechanismProxy, fmt.Sprintf("netem could not be probed: %v", err)
		case s.Mechanism == MechanismNetem && !ok:
			return policy.Refusef("mechanism", "mechanism netem was asked for, but this %s (sch_netem): use mechanism auto or proxy", NetemMissing)
		case s.Mechanism == MechanismNetem && normal:
			return policy.Refusef("distribution", "netem is applied here without a distribution table, so it has only uniform jitter: use distribution uniform, or mechanism proxy for normal")
		case ok && !normal:
			a.rec.Mechanism, a.reason = MechanismNetem, "kernel has netem"
		case ok:
			a.rec.Mechanism, a.reason = MechanismProxy, "normal jitter is not available through netem here"
		default:
			a.rec.Mechanism, a.reason = MechanismProxy, NetemMissing
		}
	default:
		return fmt.Errorf("latency: unknown mechanism %q", s.Mechanism)
	}
	if a.rec.Mechanism == MechanismProxy && (s.Protocol == "udp" || s.Protocol == "icmp") {
		return policy.Refusef("mechanism", "protocol %s cannot be delayed: the transparent proxy handles TCP only (%s)", s.Protocol, a.reason)
	}
	return nil
}

func (a *latencyAction) prepareProxy(ctx context.Context) error {
	for _, p := range a.peers {
		if p.Addr().Is4() {
			a.v4 = true
		} else {
			a.v6 = true
		}
	}
	if len(a.peers) == 0 {
		a.v4 = true
		a.v6 = familyOf(true).installed()
	}
	for _, v6 := range []bool{false, true} {
		if (v6 && a.v6) || (!v6 && a.v4) {
			if f := familyOf(v6); !f.installed() {
				return policy.Refusef("tool "+f.restore, "the transparent proxy needs %s and %s on PATH (apt-get install iptables)", f.save, f.restore)
			}
		}
	}
	if a.egress {
		// Egress REDIRECT delivers to the namespace's loopback address.
		h, err := a.ns.Netlink()
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("loopback of %s: %w", a.ns, err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return policy.Refusef("target", "loopback is down in %s: the transparent proxy's egress REDIRECT delivers to 127.0.0.1", a.ns)
		}
	}
	if err := network.RefuseLeftovers(ctx, a.ns); err != nil {
		return err
	}
	a.rec.Chain = a.rec.ID
	for _, v6 := range []bool{false, true} {
		if (v6 && !a.v6) || (!v6 && !a.v4) {
			continue
		}
		t, err := readNat(ctx, a.ns, familyOf(v6))
		if err != nil {
			return err
		}
		if t.has(a.rec.Chain) {
			return policy.Refusef("target", "nat chain %s already exists in %s: run %s fault %s is already applied (or was not reverted; faultline recover removes it)", a.rec.Chain, a.ns, a.rec.RunID, a.rec.Fault)
		}
	}
	a.rec.Families = nil
	if a.v4 {
		a.rec.Families = append(a.rec.Families, "ipv4")
	}
	if a.v6 {
		a.rec.Families = append(a.rec.Families, "ipv6")
	}
	return nil
}

func (a *latencyAction) prepareNetem() error {
	h, err := a.ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := netemInterfaces(h, a.peers)
	if err != nil {
		return err
	}
	if len(links) == 0 {
		return policy.Refusef("target", "%s has no interface to put netem on", a.ns)
	}
	if err := checkNetemFree(h, links); err != nil {
		return policy.Refusef("target", "%s: %v", a.ns, err)
	}
	for _, l := range links {
		a.rec.Interfaces = append(a.rec.Interfaces, l.Attrs().Name)
	}
	return nil
}

func (a *latencyAction) delayText() string {
	dist := Uniform
	if a.spec.Distribution == "normal" {
		dist = Normal
	}
	return FormatDelay(a.spec.Delay.D(), a.spec.Jitter.D(), dist)
}

// Targets implements injectors.Action.
func (a *latencyAction) Targets() []string {
	proto := a.spec.Protocol
	if a.rec.Mechanism == MechanismProxy {
		proto = "tcp"
	} else if proto == "" {
		proto = "all"
	}
	sel := proto
	switch {
	case a.egress && a.ingres:
		sel += " egress and ingress"
	case a.egress:
		sel += " egress"
	default:
		sel += " ingress"
	}
	if len(a.peers) > 0 {
		ps := make([]string, len(a.peers))
		for i, p := range a.peers {
			ps[i] = p.String()
		}
		sel += " with peers " + strings.Join(ps, ", ")
	}
	if len(a.ports) > 0 {
		ps := make([]string, len(a.ports))
		for i, p := range a.ports {
			ps[i] = strings.ReplaceAll(p.String(), ":", "-")
		}
		sel += " on ports " + strings.Join(ps, ", ")
	}
	how := "transparent proxy"
	if a.rec.Mechanism == MechanismNetem {
		how = "netem on " + strings.Join(a.rec.Interfaces, ", ")
	}
	return []string{fmt.Sprintf("%s: %s +%s via %s (%s)", a.rec.Target, sel, a.delayText(), how, a.reason)}
}

// Record implements injectors.Action.
func (a *latencyAction) Record() (json.RawMessage, error) {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return nil, fmt.Errorf("encode latency record: %w", err)
	}
	return b, nil
}

var _ injectors.MechanismReporter = (*latencyAction)(nil)

// Mechanism reports how the fault is applied, as chosen at Prepare, in the runbook's words:
// "netem" or "proxy" (the transparent proxy).
func (a *latencyAction) Mechanism() string {
	if a.rec.Mechanism == MechanismNetem {
		return MechanismNetem
	}
	return MechanismProxy
}

// Apply implements injectors.Action. The namespace is located again first: between Prepare and
// Apply the path may have come to name another namespace (a /proc/PID/ns/net whose process
// exited, its PID reused), and the fault must land where it was prepared or nowhere.
func (a *latencyAction) Apply(ctx context.Context, rec injectors.Recorder) error {
	ns, gone, err := a.rec.Target.Locate()
	if err != nil {
		return fmt.Errorf("latency %s: %w", a.rec.Fault, err)
	}
	if gone {
		return fmt.Errorf("latency %s: %s is gone, or its path names another namespace now, since the fault was prepared: nothing applied", a.rec.Fault, a.rec.Target)
	}
	a.ns = ns
	if a.rec.Mechanism == MechanismNetem {
		return a.applyNetem(ctx, rec)
	}
	return a.applyProxy(ctx, rec)
}

func (a *latencyAction) applyProxy(ctx context.Context, rec injectors.Recorder) error {
	ns := a.ns
	ln, port, err := listenInNs(ctx, ns, a.v4, a.v6, a.ingres)
	if err != nil && a.v6 && len(a.peers) == 0 && errors.Is(err, syscall.EADDRNOTAVAIL) {
		// No IPv6 in the namespace: only IPv4 can be selected.
		a.v6 = false
		a.rec.Families = []string{"ipv4"}
		a.lines = append(a.lines, fmt.Sprintf("IPv6 is off in %s: only IPv4 connections are delayed", ns))
		ln, port, err = listenInNs(ctx, ns, a.v4, false, a.ingres)
	}
	if err != nil {
		return err
	}
	a.rec.Port, a.rec.PID = port, os.Getpid()
	b, err := a.Record()
	if err == nil {
		err = rec(ctx, b)
	}
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("record latency listener: %w", err)
	}
	dist := Uniform
	if a.spec.Distribution == "normal" {
		dist = Normal
	}
	p, err := Start(Config{
		Listener: ln,
		Dial:     transparentDial(ns, Mark),
		Logger:   a.log,
		Toxics: []Toxic{{
			Name: a.rec.Fault,
			// The intercepted connection's client side is this namespace for egress and the peer
			// for ingress: in both cases its upstream stream is the selected direction's data.
			Stream:  Upstream,
			Latency: &Latency{Delay: a.spec.Delay.D(), Jitter: a.spec.Jitter.D(), Distribution: dist, Correlation: a.spec.Correlation / 100},
		}},
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.inj.mu.Lock()
	a.inj.live[a.rec.ID] = p
	a.inj.mu.Unlock()

	head := fmt.Sprintf("latency %s via transparent proxy (%s): listener %s port %d (pid %d)", a.delayText(), a.reason, ns, port, a.rec.PID)
	a.lines = append([]string{head}, a.lines...)
	for _, v6 := range []bool{false, true} {
		if (v6 && !a.v6) || (!v6 && !a.v4) {
			continue
		}
		s := a.redirect(v6)
		if err := s.install(ctx, ns); err != nil {
			return err
		}
		a.lines = append(a.lines, s.describe()...)
	}
	return nil
}

func (a *latencyAction) redirect(v6 bool) redirectSpec {
	s := redirectSpec{
		Chain: a.rec.Chain, Comment: ownerLabel(a.rec.RunID, a.rec.Fault, a.inj.owner()),
		Egress: a.egress, Ingress: a.ingres, Ports: a.ports, ToPort: a.rec.Port, Mark: Mark, Family: familyOf(v6),
	}
	for _, p := range a.peers {
		if p.Addr().Is6() == v6 {
			s.Peers = append(s.Peers, p)
		}
	}
	return s
}

func (a *latencyAction) netemSpec() netemSpec {
	proto := a.spec.Protocol
	if proto == "all" {
		proto = ""
	}
	return netemSpec{
		Delay: a.spec.Delay.D(), Jitter: a.spec.Jitter.D(), Correlation: a.spec.Correlation,
		Egress: a.egress, Ingress: a.ingres, Peers: a.peers, Ports: a.ports, Protocol: proto,
	}
}

func (a *latencyAction) applyNetem(ctx context.Context, rec injectors.Recorder) error {
	h, err := a.ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := netemInterfaces(h, a.peers)
	if err != nil {
		return err
	}
	if err := checkNetemFree(h, links); err != nil {
		return policy.Refusef("target", "%s: %v", a.ns, err)
	}
	a.rec.Interfaces = nil
	for _, l := range links {
		a.rec.Interfaces = append(a.rec.Interfaces, l.Attrs().Name)
	}
	b, err := a.Record()
	if err == nil {
		err = rec(ctx, b)
	}
	if err != nil {
		return fmt.Errorf("record latency interfaces: %w", err)
	}
	s := a.netemSpec()
	if err := applyNetem(h, links, s); err != nil {
		return fmt.Errorf("latency in %s: %w", a.ns, err)
	}
	a.lines = []string{fmt.Sprintf("latency %s via netem (%s) in %s", a.delayText(), a.reason, a.ns)}
	for _, name := range a.rec.Interfaces {
		a.lines = append(a.lines, s.describe(name))
	}
	return nil
}

// Describe implements injectors.Describer: the mechanism and the rules or qdiscs in place.
func (a *latencyAction) Describe() []string { return append([]string(nil), a.lines...) }

// Revert implements injectors.Injector (RevertReport without its report).
func (inj *LatencyInjector) Revert(ctx context.Context, record json.RawMessage, env injectors.Env) error {
	_, err := inj.RevertReport(ctx, record, env)
	return err
}

var _ injectors.RevertReporter = (*LatencyInjector)(nil)

// RevertReport implements injectors.RevertReporter. The nat chain (or the root qdisc) is removed
// from the record alone. A transparent proxy this process runs is drained first (drainRelayed);
// the event says how many relayed connections that closed. A proxy of a crashed process died
// with it: nothing is left of it but the rules, which are removed here.
func (inj *LatencyInjector) RevertReport(ctx context.Context, record json.RawMessage, env injectors.Env) ([]injectors.Event, error) {
	rec, err := decodeLatencyRecord(record)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revertTimeout)
	defer cancel()
	inj.mu.Lock()
	p := inj.live[rec.ID]
	delete(inj.live, rec.ID)
	inj.mu.Unlock()
	var events []injectors.Event
	var errs []error
	ns, gone, err := rec.Target.Locate()
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("revert latency %s: %w", rec.ID, err))
	case gone:
		// Neither the path nor an alias names the recorded namespace any more: it is gone, and its
		// rules and qdiscs with it. Whatever the path names now is another namespace, not touched.
		logger(env).Info("latency revert: network namespace is gone, and the fault's rules with it", "netns", rec.Target.Label, "netnsID", rec.Target.ID, "id", rec.ID)
	case rec.Mechanism == MechanismNetem:
		if err := revertNetem(ns, rec); err != nil && !goneNow(ns) {
			errs = append(errs, err)
		}
	case rec.Chain != "":
		if p != nil {
			ev, err := inj.drainRelayed(ctx, ns, rec, p)
			events = append(events, ev)
			if err != nil {
				errs = append(errs, err)
			}
			p = nil
		}
		for _, v6 := range []bool{false, true} {
			f := familyOf(v6)
			if !f.installed() {
				if recordedFamily(rec, f.name) {
					errs = append(errs, fmt.Errorf("cannot remove nat chain %s (%s): %s is not installed", rec.Chain, f.name, f.restore))
				}
				continue
			}
			if _, err := removeChain(ctx, ns, f, rec.Chain); err != nil && !goneNow(ns) {
				errs = append(errs, err)
			}
		}
	}
	if p != nil {
		// The namespace is gone (and the relayed connections with it), or there was no chain.
		if _, err := p.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close latency proxy %s: %w", rec.ID, err))
		}
	}
	return events, errors.Join(errs...)
}

// drainRelayed stops redirecting new connections and drains the proxy's relayed ones, before the
// chain goes. The chain's REDIRECT rules are replaced by a rule that only matches conntrack state:
// where nothing else in the namespace uses connection tracking, removing the last rule that does
// turns it off, and a relayed connection's next packet then goes, untranslated, to the server,
// which never saw its 4-tuple (a reset), while the proxy's FIN reaches the client from the
// listener's address, which matches no socket there (a hang). Connections tracked from before
// the fault, or never redirected, go on as they were.
func (inj *LatencyInjector) drainRelayed(ctx context.Context, ns network.Target, rec latencyRecord, p *Proxy) (injectors.Event, error) {
	start := time.Now()
	var errs []error
	for _, v6 := range []bool{false, true} {
		if f := familyOf(v6); f.installed() && recordedFamily(rec, f.name) {
			if err := stopRedirect(ctx, ns, f, rec.Chain); err != nil {
				errs = append(errs, err)
			}
		}
	}
	bound := inj.DrainTimeout
	if bound <= 0 {
		bound = drainTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, bound)
	st, err := p.Drain(dctx)
	cancel()
	if err != nil {
		errs = append(errs, fmt.Errorf("close latency proxy %s: %w", rec.ID, err))
	}
	took := time.Since(start)
	ev := injectors.Event{Time: time.Now(), Message: fmt.Sprintf(
		"revert closed %d relayed connections of the transparent proxy (%d at a response boundary with FIN, %d forced at the %s drain bound) in %s",
		st.Closed, st.Closed-st.Forced, st.Forced, bound, took.Round(time.Millisecond))}
	return ev, errors.Join(errs...)
}

func revertNetem(ns network.Target, rec latencyRecord) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := removeNetem(h, rec.Interfaces); err != nil {
		return fmt.Errorf("remove netem in %s: %w", ns, err)
	}
	return nil
}

func recordedFamily(rec latencyRecord, name string) bool {
	for _, f := range rec.Families {
		if f == name {
			return true
		}
	}
	return false
}

// Sweep implements injectors.Sweeper: it removes latency nat chains (FAULTLINE-<id> labelled
// "faultline run=… kind=latency owner=…") of runs no ledger entry owns and whose owner process is
// gone, in the host's namespace and every named one. Chains without that label belong to other
// injectors and are left alone.
// netem qdiscs carry no run and are removed through the ledger only.
func (inj *LatencyInjector) Sweep(ctx context.Context, owned func(runID string) bool, _ injectors.Env) ([]string, error) {
	refs, err := network.Namespaces()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var removed []string
	for _, ns := range refs {
		r, err := sweepNs(ctx, ns, owned)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func logger(env injectors.Env) *slog.Logger {
	if env.Logger != nil {
		return env.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func shortID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
