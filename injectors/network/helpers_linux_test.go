package network_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/vishvananda/netlink"
)

// require skips (or fails under CI=true) unless the iptables tools and root are available.
func require(t testing.TB) {
	t.Helper()
	netns.Require(t, "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore")
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newEnv gives each test its own run ID, so chains never collide between tests.
func newEnv(t testing.TB) injectors.Env {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return injectors.Env{RunID: "test-" + hex.EncodeToString(b[:])}
}

func injectorFor(t testing.TB, kind string, opts ...network.Option) injectors.Injector {
	t.Helper()
	for _, inj := range network.Injectors(opts...) {
		if inj.Kind() == kind {
			return inj
		}
	}
	t.Fatalf("no injector for kind %q", kind)
	return nil
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// snapshot is iptables-save and ip6tables-save of a namespace, without the timestamped comment
// lines and packet counters, i.e. the rules as they are.
func snapshot(t testing.TB, ns *netns.NS) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Exec(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "## %s\n", cmd)
		for _, line := range strings.Split(string(out), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			b.WriteString(counters.ReplaceAllString(line, "[]") + "\n")
		}
	}
	return b.String()
}

// baseline gives a namespace some rules of its own in both families, as a real host has, so that
// "identical afterwards" also means "their rules untouched".
func baseline(t testing.TB, ns *netns.NS) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, args := range [][]string{
			{"-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"},
			{"-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "ACCEPT"},
			{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "RETURN"},
		} {
			if _, err := ns.Exec(ctx, cmd, args...); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// chains lists the FAULTLINE chains of one family's filter and nat tables in a namespace.
func chains(ctx context.Context, ns *netns.NS, cmd string) ([]string, error) {
	var out []string
	for _, table := range []string{"filter", "nat"} {
		save, err := ns.Exec(ctx, cmd, "-t", table)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(save), "\n") {
			if strings.HasPrefix(line, ":FAULTLINE-") {
				name, _, _ := strings.Cut(line[1:], " ")
				out = append(out, table+"/"+name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// chainActive reports whether a fault's chain exists in every family listed.
func chainActive(ns *netns.NS, runID, fault string, cmds ...string) func(context.Context) (bool, error) {
	want := "filter/" + network.ChainName(runID, fault)
	return func(ctx context.Context) (bool, error) {
		n := 0
		for _, cmd := range cmds {
			cs, err := chains(ctx, ns, cmd)
			if err != nil {
				return false, err
			}
			for _, c := range cs {
				if c == want {
					n++
				}
			}
		}
		if n != 0 && n != len(cmds) {
			return false, fmt.Errorf("chain %s exists in %d of %v", want, n, cmds)
		}
		return n == len(cmds), nil
	}
}

// applied prepares and applies a fault, reverting it at cleanup; it returns the action and the
// record as the ledger would hold it.
func applied(t testing.TB, inj injectors.Injector, f runbooks.Fault, env injectors.Env) (injectors.Action, json.RawMessage) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	act, err := inj.Prepare(ctx, f, env)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	latest := rec
	recorder := func(_ context.Context, r json.RawMessage) error {
		latest = append(json.RawMessage(nil), r...)
		return nil
	}
	t.Cleanup(func() {
		if err := inj.Revert(context.Background(), latest, env); err != nil {
			t.Errorf("cleanup revert: %v", err)
		}
	})
	if err := act.Apply(ctx, recorder); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return act, latest
}

// qdiscs describes every qdisc of a link, as `tc qdisc show dev X` would, without counters.
func qdiscs(t testing.TB, h *netlink.Handle, ifname string) []string {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := h.QdiscList(link)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range qs {
		q.Attrs().Statistics = nil
		q.Attrs().Refcnt = 0
		b, err := json.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s parent %s %s", q.Type(), netlink.HandleStr(q.Attrs().Handle), netlink.HandleStr(q.Attrs().Parent), b))
	}
	sort.Strings(out)
	return out
}

func addrPort(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }
