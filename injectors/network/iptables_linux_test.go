package network_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

func TestConformance(t *testing.T) {
	require(t)
	t.Parallel()
	l := netns.NewPair(t)
	both := []string{"iptables-save", "ip6tables-save"}
	cases := []struct {
		name  string
		kind  string
		fault runbooks.Fault
		fams  []string
	}{
		{"partition by name, any peer", network.KindPartition, runbooks.Fault{Name: "p", Partition: &runbooks.Partition{
			NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name}}}, both},
		{"partition by path, v6 peer", network.KindPartition, runbooks.Fault{Name: "p6", Partition: &runbooks.Partition{
			NetworkTarget: runbooks.NetworkTarget{NetnsPath: l.A.Path, Peers: []string{l.B6.String()}, Direction: "egress"}}}, []string{"ip6tables-save"}},
		{"reject", network.KindReject, runbooks.Fault{Name: "r", Reject: &runbooks.Reject{
			NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name, Peers: []string{l.B4.String(), l.B6.String()}}}}, both},
		{"loss", network.KindLoss, runbooks.Fault{Name: "l", Loss: &runbooks.Loss{Probability: 0.25,
			NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name, Peers: []string{"10.200.0.0/16"}, Protocol: "udp", Ports: []string{"53", "8000-8100"}}}}, []string{"iptables-save"}},
		{"shard isolation", network.KindShardIsolation, runbooks.Fault{Name: "s", ShardIsolation: &runbooks.ShardIsolation{Shard: "orders-3",
			NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name, Peers: []string{l.B4.String(), "fd00:200::/32"}, Protocol: "tcp", Ports: []string{"5432"}}}}, both},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			injectortest.Run(t, injectorFor(t, c.kind), injectortest.Case{
				Fault: c.fault, Env: env, Revertible: true,
				Active: chainActive(l.A, env.RunID, c.fault.Name, c.fams...),
			})
		})
	}
}

func TestPartitionMakesTCPConnectTimeOut(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	ln, err := l.B.ListenTCP(ctx, addrPort(l.B4, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(ln)
	mustConnect(t, l.A, ln.Addr().String())

	act, _ := applied(t, injectorFor(t, network.KindPartition), runbooks.Fault{Name: "cut", Partition: &runbooks.Partition{
		NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name, Peers: []string{l.B4.String()}}}}, newEnv(t))
	start := time.Now()
	err = dial(l.A, ln.Addr().String(), time.Second)
	if !isTimeout(err) {
		t.Fatalf("connect across a partition: got %v after %v, want a timeout", err, time.Since(start).Round(time.Millisecond))
	}
	// Both ways: B cannot reach a listener in A either.
	lnA, err := l.A.ListenTCP(ctx, addrPort(l.A4, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(lnA)
	if err := dial(l.B, lnA.Addr().String(), time.Second); !isTimeout(err) {
		t.Fatalf("connect into a partitioned namespace: got %v, want a timeout", err)
	}
	desc := strings.Join(act.(injectors.Describer).Describe(), "\n")
	if !strings.Contains(desc, "-d "+l.B4.String()+"/32 -j DROP") || !strings.Contains(desc, "-s "+l.B4.String()+"/32 -j DROP") {
		t.Fatalf("Describe does not show the DROP rules:\n%s", desc)
	}
	t.Logf("connect timed out after %v; rules:\n%s", time.Since(start).Round(time.Millisecond), desc)
}

func TestPartitionIPv6(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	ln6, err := l.B.ListenTCP(ctx, addrPort(l.B6, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(ln6)
	ln4, err := l.B.ListenTCP(ctx, addrPort(l.B4, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(ln4)
	mustConnect(t, l.A, ln6.Addr().String())

	env := newEnv(t)
	f := runbooks.Fault{Name: "v6", Partition: &runbooks.Partition{
		NetworkTarget: runbooks.NetworkTarget{Netns: l.A.Name, Peers: []string{"fd00:200::/32"}}}}
	inj := injectorFor(t, network.KindPartition)
	_, rec := applied(t, inj, f, env)
	if err := dial(l.A, ln6.Addr().String(), time.Second); !isTimeout(err) {
		t.Fatalf("IPv6 connect across a partition: got %v, want a timeout", err)
	}
	mustConnect(t, l.A, ln4.Addr().String()) // the IPv4 path is untouched
	v4, err := chains(ctx, l.A, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	if len(v4) != 0 {
		t.Fatalf("an IPv6-only fault created IPv4 chains %v", v4)
	}
	if err := inj.Revert(ctx, rec, env); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, l.A, ln6.Addr().String())
}

func TestRejectRefusesAtOnce(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	for _, c := range []struct {
		name string
		in   *netns.NS // namespace the fault is applied in
		dir  string
		peer string
		with string
	}{
		{"egress at the client, tcp-reset", l.A, "egress", l.B4.String(), ""},
		{"ingress at the server, tcp-reset", l.B, "ingress", l.A4.String(), "tcp-reset"},
		{"egress at the client, icmp-port-unreachable", l.A, "egress", l.B4.String(), "icmp-port-unreachable"},
		{"ingress at the server over IPv6", l.B, "ingress", l.A6.String(), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := l.B4
			if strings.Contains(c.peer, ":") {
				dst = l.B6
			}
			ln, err := l.B.ListenTCP(ctx, addrPort(dst, 0))
			if err != nil {
				t.Fatal(err)
			}
			go acceptAndClose(ln)
			env := newEnv(t)
			inj := injectorFor(t, network.KindReject)
			f := runbooks.Fault{Name: "refuse", Reject: &runbooks.Reject{With: c.with,
				NetworkTarget: runbooks.NetworkTarget{Netns: c.in.Name, Direction: c.dir, Peers: []string{c.peer}}}}
			_, rec := applied(t, inj, f, env)
			start := time.Now()
			err = dial(l.A, ln.Addr().String(), 5*time.Second)
			took := time.Since(start)
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) {
				t.Fatalf("connect: got %v after %v, want connection refused", err, took)
			}
			if took > 200*time.Millisecond {
				t.Fatalf("refused only after %v, want milliseconds", took)
			}
			t.Logf("refused in %v: %v", took.Round(time.Microsecond), err)
			if err := inj.Revert(ctx, rec, env); err != nil {
				t.Fatal(err)
			}
			mustConnect(t, l.A, ln.Addr().String())
		})
	}
}

func TestShardIsolationCutsBothWays(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	lnB, err := l.B.ListenTCP(ctx, addrPort(l.B6, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(lnB)
	lnA, err := l.A.ListenTCP(ctx, addrPort(l.A4, 0))
	if err != nil {
		t.Fatal(err)
	}
	go acceptAndClose(lnA)
	act, _ := applied(t, injectorFor(t, network.KindShardIsolation), runbooks.Fault{Name: "shard", ShardIsolation: &runbooks.ShardIsolation{
		Shard: "orders-3", NetworkTarget: runbooks.NetworkTarget{Netns: l.B.Name, Peers: []string{l.A4.String(), l.A6.String()}}}}, newEnv(t))
	if err := dial(l.A, lnB.Addr().String(), time.Second); !isTimeout(err) {
		t.Fatalf("into the shard over IPv6: got %v, want a timeout", err)
	}
	if err := dial(l.B, lnA.Addr().String(), time.Second); !isTimeout(err) {
		t.Fatalf("out of the shard over IPv4: got %v, want a timeout", err)
	}
	if ts := act.Targets(); len(ts) != 2 || !strings.Contains(ts[0], "orders-3") {
		t.Fatalf("targets should name the shard in both families: %q", ts)
	}
}

// TestPartialApplyRevertsToIdentical makes one family's transaction fail for real (iptables
// refuses port 70000) after the other family was applied, then reverts from the record alone.
func TestPartialApplyRevertsToIdentical(t *testing.T) {
	require(t)
	t.Parallel()
	for _, broken := range []string{"ipv6", "ipv4"} {
		t.Run("broken "+broken, func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			ns := netns.New(t)
			baseline(t, ns)
			before := snapshot(t, ns)
			env := newEnv(t)
			inj := injectorFor(t, network.KindPartition)
			act, err := inj.Prepare(ctx, runbooks.Fault{Name: "half", Partition: &runbooks.Partition{
				NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name}}}, env)
			if err != nil {
				t.Fatal(err)
			}
			network.BreakFamily(act, broken)
			rec, err := act.Record()
			if err != nil {
				t.Fatal(err)
			}
			err = act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "70000") {
				t.Fatalf("Apply with a broken %s rule: got %v, want iptables refusing port 70000", broken, err)
			}
			v4, err := chains(ctx, ns, "iptables-save")
			if err != nil {
				t.Fatal(err)
			}
			if wantV4 := broken == "ipv6"; (len(v4) == 1) != wantV4 {
				t.Fatalf("after the failed apply, IPv4 chains %v; want the IPv4 part applied = %v", v4, wantV4)
			}
			if err := inj.Revert(ctx, rec, env); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, ns); after != before {
				t.Fatalf("rules after revert differ from before:\n--- before\n%s--- after\n%s", before, after)
			}
		})
	}
}

// TestRevertFinishesWhatIsLeft removes part of an applied fault behind faultline's back (a hook
// and the IPv6 chain), then reverts: the atomic revert fails and the piecewise one finishes.
func TestRevertFinishesWhatIsLeft(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	ns := netns.New(t)
	baseline(t, ns)
	before := snapshot(t, ns)
	env := newEnv(t)
	inj := injectorFor(t, network.KindLoss)
	_, rec := applied(t, inj, runbooks.Fault{Name: "lossy", Loss: &runbooks.Loss{Probability: 0.5,
		NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name}}}, env)
	chain := network.ChainName(env.RunID, "lossy")
	out, err := ns.Exec(ctx, "iptables", "-S", "OUTPUT")
	if err != nil {
		t.Fatal(err)
	}
	var hook string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, "-j "+chain) {
			hook = line
		}
	}
	if hook == "" {
		t.Fatalf("no hook to %s in OUTPUT:\n%s", chain, out)
	}
	script := "*filter\n-D" + strings.TrimPrefix(hook, "-A") + "\nCOMMIT\n"
	if _, err := ns.Exec(ctx, "sh", "-c", "printf '%s' \"$0\" | iptables-restore --noflush", script); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(ctx, "sh", "-c", "ip6tables -D INPUT 1 && ip6tables -D OUTPUT 1 && ip6tables -F "+chain+" && ip6tables -X "+chain); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := inj.Revert(ctx, rec, env); err != nil {
			t.Fatalf("revert %d: %v", i+1, err)
		}
		if after := snapshot(t, ns); after != before {
			t.Fatalf("rules after revert %d differ from before:\n--- before\n%s--- after\n%s", i+1, before, after)
		}
	}
}

func TestSweepRemovesOrphansOnly(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	ns := netns.New(t)
	baseline(t, ns)
	before := snapshot(t, ns)
	// The sweep visits only this test's namespace: a directory holding a link to it.
	dir := t.TempDir()
	if err := os.Symlink(ns.Path, filepath.Join(dir, ns.Name)); err != nil {
		t.Fatal(err)
	}
	opts := []network.Option{network.NetnsDir(dir), network.SweepHostNamespace(false)}
	inj := injectorFor(t, network.KindPartition, opts...)

	ownedEnv, orphanEnv, elsewhereEnv := newEnv(t), newEnv(t), newEnv(t)
	fault := func(name string) runbooks.Fault {
		return runbooks.Fault{Name: name, Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name}}}
	}
	_, ownedRec := applied(t, inj, fault("kept"), ownedEnv)
	// A live run under another ledger (another --state-dir): not ours, but its process runs.
	_, elsewhereRec := applied(t, inj, fault("elsewhere"), elsewhereEnv)
	// The orphans: applied by a process that then died before its ledger entry was written (a
	// real crash: the helper process exits without reverting). It leaves a filter chain in both
	// families, a nat chain as the transparent proxy makes them, and a FAULTLINE chain without a
	// label, which is not faultline's to judge.
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperCrashedRun$", "-test.count=1")
	helper.Env = append(os.Environ(), "FAULTLINE_HELPER_NETNS="+ns.Name, "FAULTLINE_HELPER_NETNSDIR="+dir, "FAULTLINE_HELPER_RUNID="+orphanEnv.RunID)
	if out, err := helper.CombinedOutput(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}

	owned := func(runID string) bool { return runID == ownedEnv.RunID }
	removed, err := inj.(injectors.Sweeper).Sweep(ctx, owned, injectors.Env{RunID: "recover"})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Fatalf("Sweep removed %d chains, want 3 (orphan in filter v4 and v6, nat v4):\n%s", len(removed), strings.Join(removed, "\n"))
	}
	keptChain := network.ChainName(ownedEnv.RunID, "kept")
	elsewhereChain := network.ChainName(elsewhereEnv.RunID, "elsewhere")
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		cs, err := chains(ctx, ns, cmd)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"filter/" + keptChain, "filter/" + elsewhereChain}
		slices.Sort(want)
		if cmd == "iptables-save" {
			want = append(want, "filter/FAULTLINE-UNLABELED")
			slices.Sort(want)
		}
		if !slices.Equal(cs, want) {
			t.Fatalf("%s after sweep: chains %v, want %v", cmd, cs, want)
		}
	}
	// A second sweep finds nothing; reverting the owned fault and dropping the unlabeled chain
	// leaves the namespace as it was.
	if again, err := inj.(injectors.Sweeper).Sweep(ctx, owned, injectors.Env{}); err != nil || len(again) != 0 {
		t.Fatalf("second sweep: %v, %v", again, err)
	}
	if err := inj.Revert(ctx, ownedRec, ownedEnv); err != nil {
		t.Fatal(err)
	}
	if err := inj.Revert(ctx, elsewhereRec, elsewhereEnv); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(ctx, "sh", "-c", "iptables -F FAULTLINE-UNLABELED && iptables -X FAULTLINE-UNLABELED"); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("rules differ from before:\n--- before\n%s--- after\n%s", before, after)
	}
}

// TestHelperCrashedRun is not a test: TestSweepRemovesOrphansOnly runs it in a child process that
// applies faults and exits without reverting them, which is what a crashed run leaves behind.
func TestHelperCrashedRun(t *testing.T) {
	nsName, dir, runID := os.Getenv("FAULTLINE_HELPER_NETNS"), os.Getenv("FAULTLINE_HELPER_NETNSDIR"), os.Getenv("FAULTLINE_HELPER_RUNID")
	if nsName == "" {
		t.Skip("helper process for TestSweepRemovesOrphansOnly")
	}
	ctx := ctxFor(t, 30*time.Second)
	inj := injectorFor(t, network.KindPartition, network.NetnsDir(dir), network.SweepHostNamespace(false))
	env := injectors.Env{RunID: runID}
	act, err := inj.Prepare(ctx, runbooks.Fault{Name: "left-behind", Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: nsName}}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err != nil {
		t.Fatal(err)
	}
	natChain := network.ChainName(runID, "proxy")
	script := strings.Join([]string{"*nat", ":" + natChain + " - [0:0]",
		`-A ` + natChain + ` -m comment --comment "` + network.OwnerLabel(runID, "proxy", "proxy") + `"`,
		"-A " + natChain + " -p tcp -d 10.200.0.9 --dport 80 -j REDIRECT --to-ports 15001",
		"-I OUTPUT 1 -j " + natChain, "COMMIT",
		"*filter", ":FAULTLINE-UNLABELED - [0:0]", "-A FAULTLINE-UNLABELED -j RETURN", "COMMIT", ""}, "\n")
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsName, "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore: %v\n%s", err, out)
	}
}

func TestMissingNamespaceIsRefused(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 30*time.Second)
	for kind, f := range map[string]runbooks.Fault{
		network.KindPartition: {Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: netns.Prefix + "does-not-exist"}}},
		network.KindLoss:      {Loss: &runbooks.Loss{Probability: 0.1, NetworkTarget: runbooks.NetworkTarget{NetnsPath: "/proc/999999999/ns/net"}}},
		network.KindBandwidth: {Bandwidth: &runbooks.Bandwidth{Netns: netns.Prefix + "does-not-exist", Interface: "eth0", Rate: "1mbit"}},
	} {
		_, err := injectorFor(t, kind).Prepare(ctx, f, newEnv(t))
		var refused *policy.RefusedError
		if !errors.As(err, &refused) || refused.Rule != "netns" {
			t.Fatalf("%s in a missing namespace: got %v, want a RefusedError by netns", kind, err)
		}
		t.Logf("%s: %v", kind, err)
	}
	// A path that exists but is no namespace is refused too.
	_, err := injectorFor(t, network.KindReject).Prepare(ctx, runbooks.Fault{Reject: &runbooks.Reject{
		NetworkTarget: runbooks.NetworkTarget{NetnsPath: "/etc/hostname"}}}, newEnv(t))
	var refused *policy.RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("a regular file as namespace: got %v, want a RefusedError", err)
	}
}

// TestRefusedWithoutNetAdmin runs itself again with CAP_NET_ADMIN dropped from every capability
// set (setpriv), where Prepare must refuse and name the capability.
func TestRefusedWithoutNetAdmin(t *testing.T) {
	if os.Getenv("FAULTLINE_TEST_NO_NET_ADMIN") == "1" {
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(status), "CapEff:") {
			t.Fatal("no CapEff in /proc/self/status")
		}
		_, err = injectorFor(t, network.KindPartition).Prepare(context.Background(), runbooks.Fault{
			Partition: &runbooks.Partition{}}, newEnv(t))
		var refused *policy.RefusedError
		if !errors.As(err, &refused) || !strings.Contains(refused.Rule, "CAP_NET_ADMIN") {
			t.Fatalf("without CAP_NET_ADMIN: got %v, want a RefusedError naming CAP_NET_ADMIN", err)
		}
		t.Logf("refused: %v", err)
		return
	}
	require(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		// scripts/testenv installs util-linux, so CI must not skip this.
		if os.Getenv("CI") == "true" {
			t.Fatal("setpriv (util-linux) is needed to drop CAP_NET_ADMIN: run scripts/testenv")
		}
		t.Skip("setpriv (util-linux) is needed to drop CAP_NET_ADMIN")
	}
	ctx := ctxFor(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, setpriv, "--inh-caps=-net_admin", "--ambient-caps=-net_admin", "--bounding-set=-net_admin", "--",
		os.Args[0], "-test.run=^TestRefusedWithoutNetAdmin$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FAULTLINE_TEST_NO_NET_ADMIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child without CAP_NET_ADMIN: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	if !strings.Contains(string(out), "CAP_NET_ADMIN") || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child did not check the refusal:\n%s", out)
	}
}

func TestDescribeMatchesTheKernel(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 30*time.Second)
	ns := netns.New(t)
	env := newEnv(t)
	act, _ := applied(t, injectorFor(t, network.KindPartition), runbooks.Fault{Name: "d", Partition: &runbooks.Partition{
		NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name, Peers: []string{"10.200.0.0/16", "192.0.2.7"}, Direction: "egress"}}}, env)
	chain := network.ChainName(env.RunID, "d")
	out, err := ns.Exec(ctx, "iptables", "-S", chain)
	if err != nil {
		t.Fatal(err)
	}
	var described []string
	for _, line := range act.(injectors.Describer).Describe() {
		if _, rule, ok := strings.Cut(line, "iptables "); ok && strings.HasPrefix(rule, "-A "+chain) {
			described = append(described, rule)
		}
	}
	var kernel []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "-A ") {
			kernel = append(kernel, line)
		}
	}
	if !slices.Equal(described, kernel) {
		t.Fatalf("Describe:\n%s\niptables -S:\n%s", strings.Join(described, "\n"), strings.Join(kernel, "\n"))
	}
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// dial connects from inside a namespace with a deadline and closes the connection at once.
func dial(ns *netns.NS, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func mustConnect(t testing.TB, ns *netns.NS, addr string) {
	t.Helper()
	if err := dial(ns, addr, 5*time.Second); err != nil {
		t.Fatalf("connect %s from %s: %v", addr, ns.Name, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// TestRevertByProcessPathAfterTheProcessExits targets a namespace by /proc/PID/ns/net, lets that
// process exit while the namespace lives on (its ip-netns bind mount holds it, as a pause
// container would), and reverts: the record's alias still leads to the namespace.
func TestRevertByProcessPathAfterTheProcessExits(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	ns := netns.New(t)
	baseline(t, ns)
	before := snapshot(t, ns)
	var proc *exec.Cmd
	if err := ns.Do(func() error {
		proc = exec.CommandContext(ctx, "sleep", "60")
		return proc.Start() // forked from a thread inside ns, so the process lives there
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	env := newEnv(t)
	inj := injectorFor(t, network.KindPartition)
	path := "/proc/" + strconv.Itoa(proc.Process.Pid) + "/ns/net"
	act, rec := applied(t, inj, runbooks.Fault{Name: "by-pid", Partition: &runbooks.Partition{
		NetworkTarget: runbooks.NetworkTarget{NetnsPath: path, Peers: []string{"10.200.0.0/16"}}}}, env)
	if !strings.Contains(strings.Join(act.Targets(), "\n"), path) {
		t.Fatalf("targets %q do not name %s", act.Targets(), path)
	}
	if active, err := chainActive(ns, env.RunID, "by-pid", "iptables-save")(ctx); err != nil || !active {
		t.Fatalf("fault not applied in the process's namespace: %v %v", active, err)
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after the process exited: %v", path, err)
	}
	if err := inj.Revert(ctx, rec, env); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("rules after revert differ from before:\n--- before\n%s--- after\n%s", before, after)
	}
}

// TestSameChainIsNeverTakenOver: a fault whose chain already exists is refused at Prepare, and an
// Apply racing another for the same chain fails without touching it.
func TestSameChainIsNeverTakenOver(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 30*time.Second)
	ns := netns.New(t)
	env := newEnv(t)
	inj := injectorFor(t, network.KindPartition)
	f := runbooks.Fault{Name: "twice", Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name, Peers: []string{"10.200.0.0/16"}}}}
	second, err := inj.Prepare(ctx, f, env)
	if err != nil {
		t.Fatal(err)
	}
	applied(t, inj, f, env)
	during := snapshot(t, ns)
	_, err = inj.Prepare(ctx, f, env)
	var refused *policy.RefusedError
	if !errors.As(err, &refused) || refused.Rule != "chain" {
		t.Fatalf("Prepare of an applied fault: got %v, want a refusal", err)
	}
	if err := second.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Apply: got %v, want chain already exists", err)
	}
	if now := snapshot(t, ns); now != during {
		t.Fatalf("a failed second Apply changed the rules:\n--- before\n%s--- after\n%s", during, now)
	}
}
