package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// snapshot is the network state a fault may change in a namespace: the filter and nat tables of
// both iptables families and the qdiscs, without the timestamps iptables-save prints and without
// packet counters (traffic during a test changes them, not faultline). The tables are named:
// iptables-nft lists a table that does not exist yet as empty when asked for it by name, so a
// table the fault's revert leaves behind empty does not count as a difference.
func snapshot(t testing.TB, ns *netns.NS) string {
	t.Helper()
	return snapshotWith(t, ns.Exec)
}

// snapshotWith is snapshot with exec running each command in the namespace.
func snapshotWith(t testing.TB, exec func(ctx context.Context, name string, args ...string) ([]byte, error)) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, cmd := range [][]string{
		{"iptables-save", "-t", "filter"}, {"iptables-save", "-t", "nat"},
		{"ip6tables-save", "-t", "filter"}, {"ip6tables-save", "-t", "nat"},
		{"tc", "qdisc", "show"},
	} {
		out, err := exec(ctx, cmd[0], cmd[1:]...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		fmt.Fprintf(&b, "## %s\n", strings.Join(cmd, " "))
		b.Write(out)
	}
	s := regexp.MustCompile(`(?m)^# (Generated|Completed) .*$`).ReplaceAllString(b.String(), "")
	return regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(s, "[]")
}

const networkRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-net}
environment: {name: test, type: local}
experiments:
  - name: cut
    duration: 60s
    faults:
      - name: partition
        partition: {netns: {{.NS}}, direction: egress, peers: ["{{.Peer}}"], protocol: tcp, ports: ["{{.Port}}"]}
      - name: slow
        bandwidth: {netns: {{.NS}}, interface: {{.Iface}}, rate: 10mbit, burst: 32kb, latency: 50ms}
`

// faultline is SIGKILLed while a partition and a bandwidth limit are applied in a namespace; the
// fault stays in force (nothing cleans up by magic), and `faultline recover` restores iptables and
// qdiscs to exactly what they were.
func TestNetworkFaultsSurviveSIGKILLAndRecoverRestoresExactly(t *testing.T) {
	netns.Require(t, "iptables", "iptables-save", "ip6tables-save", "tc")
	l := netns.NewPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A baseline rule, so that both families' filter tables exist before the fault does.
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if out, err := l.A.Exec(ctx, ipt, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"); err != nil {
			t.Fatalf("%s: %v\n%s", ipt, err, out)
		}
	}
	ln, err := l.B.ListenTCP(ctx, netip.AddrPortFrom(l.B4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	reachable := func() bool {
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer dcancel()
		c, err := l.A.Dial(dctx, "tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !reachable() {
		t.Fatal("B is not reachable from A before any fault")
	}
	before := snapshot(t, l.A)

	state := t.TempDir()
	rb := runbook(t, networkRunbook, map[string]string{"NS": l.A.Name, "Peer": l.B4.String(), "Port": fmt.Sprint(port), "Iface": l.AIf})
	run := startFaultline(t, nil, state, "run", rb)
	run.waitFor(t, 20*time.Second, "both faults applied and ledgered", func() bool {
		open := openEntries(t, state)
		return len(open) == 2 && open[0].State == ledger.StateApplied && open[1].State == ledger.StateApplied
	})
	if err := run.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-run.done

	during := snapshot(t, l.A)
	if during == before || !strings.Contains(during, "FAULTLINE-") || !strings.Contains(during, "tbf") {
		t.Fatalf("after SIGKILL the faults should still be in force; state:\n%s", during)
	}
	if reachable() {
		t.Fatal("the partition did not hold after faultline died")
	}
	out := faultline(t, state, "recover")
	if out.code != 0 {
		t.Fatalf("recover exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	if after := snapshot(t, l.A); after != before {
		t.Fatalf("recover did not restore the namespace exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !reachable() {
		t.Fatal("B is still unreachable after recover")
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries open after recover", n)
	}
}

const latencyRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-latency}
environment: {name: test, type: local}
experiments:
  - name: slow
    duration: 60s
    faults:
      - name: delay
        latency: {netns: {{.NS}}, direction: egress, peers: ["{{.Peer}}"], protocol: tcp, ports: ["{{.Port}}"], delay: {{.Delay}}, mechanism: proxy}
`

// echoServer answers every connection with what it reads, until the test ends.
func echoServer(t testing.TB, ln net.Listener) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// echoRoundTrips opens a new TCP connection from ns to addr and times n 64-byte request/response
// round trips on it. It returns the median, or the error of the first thing that failed.
func echoRoundTrips(ctx context.Context, ns *netns.NS, addr string, n int) (time.Duration, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := ns.Dial(dctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(time.Duration(n) * 5 * time.Second))
	msg, buf := make([]byte, 64), make([]byte, 64)
	ds := make([]time.Duration, 0, n)
	for i := range n {
		msg[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, fmt.Errorf("round trip %d: %w", i, err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// faultline is SIGKILLed while a latency fault is applied through the transparent proxy (nat
// REDIRECT to a listener in the faultline process). The rules outlive the process, but the
// listener does not: until recover, new connections the fault selects are refused (the REDIRECT
// sends their SYN to a port nothing listens on, and the namespace answers with a RST), and
// connections that were open through the proxy are cut. `faultline recover` removes the chain
// from the ledger record alone and the namespace is exactly as before: connections go through,
// undelayed.
func TestLatencyProxySurvivesSIGKILLAndRecoverRestoresExactly(t *testing.T) {
	netns.Require(t, "iptables", "iptables-save", "iptables-restore", "ip6tables-save", "tc")
	l := netns.NewPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Rules of the namespace's own in both tables and families, which must come through intact.
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, rule := range [][]string{
			{"-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"},
			{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "RETURN"},
		} {
			if out, err := l.A.Exec(ctx, ipt, rule...); err != nil {
				t.Fatalf("%s %v: %v\n%s", ipt, rule, err, out)
			}
		}
	}
	ln, err := l.B.ListenTCP(ctx, netip.AddrPortFrom(l.B4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, ln)
	server := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	baseline, err := echoRoundTrips(ctx, l.A, server, 10)
	if err != nil {
		t.Fatalf("B is not reachable from A before any fault: %v", err)
	}
	before := snapshot(t, l.A)

	const delay = 200 * time.Millisecond
	state := t.TempDir()
	rb := runbook(t, latencyRunbook, map[string]string{"NS": l.A.Name, "Peer": l.B4.String(), "Port": fmt.Sprint(port), "Delay": delay.String()})
	run := startFaultline(t, nil, state, "run", rb)
	var entry *ledger.Entry
	run.waitFor(t, 20*time.Second, "the latency fault applied and ledgered", func() bool {
		open := openEntries(t, state)
		if len(open) == 1 && open[0].State == ledger.StateApplied {
			entry = open[0]
			return true
		}
		return false
	})
	if entry.Kind != "latency" {
		t.Fatalf("ledger entry of kind %q, want latency", entry.Kind)
	}
	var rec struct {
		Target struct {
			ID string `json:"netnsID"`
		} `json:"target"`
		Mechanism string `json:"mechanism"`
	}
	if err := json.Unmarshal(entry.Record, &rec); err != nil || rec.Target.ID == "" || rec.Mechanism != "proxy" {
		t.Fatalf("ledger record %s: want the transparent proxy and the namespace's identity (%v)", entry.Record, err)
	}
	chain := network.ChainName(entry.RunID, "delay")
	// Applied in the ledger means the chain is hooked and the listener accepts: a new connection
	// is delayed now.
	during, err := echoRoundTrips(ctx, l.A, server, 10)
	if err != nil {
		t.Fatalf("round trips through the fault: %v\nfaultline stderr:\n%s", err, run.stderrText())
	}
	added := during - baseline
	t.Logf("median round trip %s without the fault, %s with %s latency (added %s)", baseline, during, delay, added)
	if added < delay-5*time.Millisecond || added > delay+100*time.Millisecond {
		t.Fatalf("the fault added %s to the median round trip, want about %s", added, delay)
	}
	// A connection open through the proxy when faultline dies.
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	held, err := l.A.Dial(dctx, "tcp", server)
	dcancel()
	if err != nil {
		t.Fatal(err)
	}

	if err := run.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-run.done

	crashed := snapshot(t, l.A)
	if !strings.Contains(crashed, ":"+chain+" ") || !strings.Contains(crashed, "-j "+chain) || !strings.Contains(crashed, "REDIRECT --to-ports") {
		t.Fatalf("after SIGKILL the REDIRECT chain %s should still be in place; state:\n%s", chain, crashed)
	}
	_ = held.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = held.Write(make([]byte, 64))
	if err == nil {
		_, err = io.ReadFull(held, make([]byte, 64))
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection open through the proxy when it was killed: %v, want it closed", err)
	}
	t.Logf("a connection open through the proxy when it was killed: %v", err)
	_, err = echoRoundTrips(ctx, l.A, server, 1)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a new connection after SIGKILL: %v, want connection refused (the REDIRECT leads to the dead listener's port)", err)
	}
	t.Logf("a new connection after SIGKILL: %v", err)

	out := faultline(t, state, "recover")
	// Reverted from the ledger record; the sweep for leftovers, which would also remove a chain
	// whose owner died, must have found nothing of it (its lines name the chain).
	if out.code != 0 || !strings.Contains(out.stdout, "reverted "+entry.ID+" (latency") || strings.Contains(out.stdout, chain) {
		t.Fatalf("recover exit %d, want 0 and the ledger entry reverted (not the chain swept)\n%s%s", out.code, out.stdout, out.stderr)
	}
	if after := snapshot(t, l.A); after != before {
		t.Fatalf("recover did not restore the namespace exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries open after recover", n)
	}
	recovered, err := echoRoundTrips(ctx, l.A, server, 10)
	if err != nil {
		t.Fatalf("a new connection after recover: %v", err)
	}
	if recovered > delay/4 {
		t.Fatalf("median round trip after recover %s (%s before the fault): still delayed", recovered, baseline)
	}
}

// Refusals touch nothing. A runbook whose second fault is refused (its namespace does not exist)
// applies neither: every fault is prepared before any is applied, so the first one, valid on its
// own, must not be in place either. Without CAP_NET_ADMIN every fault is refused. Each case exits
// 4 naming the reason, leaves no ledger entry open, and leaves the namespace's rules and qdiscs
// as they were.
func TestNetworkRefusals(t *testing.T) {
	netns.Require(t, "iptables", "iptables-save", "ip6tables-save", "tc")
	l := netns.New(t)
	before := snapshot(t, l)
	const missing = "fl-test-does-not-exist"
	faults := map[string]string{
		"partition": `partition: {netns: %s, peers: ["10.200.254.2"]}`,
		"latency":   `latency: {netns: %s, direction: egress, peers: ["10.200.254.2"], protocol: tcp, ports: ["80"], delay: 100ms, mechanism: proxy}`,
	}
	const head = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-net}
environment: {name: test, type: local}
experiments:
  - name: cut
    duration: 5s
    faults:
`
	untouched := func(t *testing.T, state string) {
		t.Helper()
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("a refused run left %d ledger entries open: %+v", len(open), open[0])
		}
		if now := snapshot(t, l); now != before {
			t.Fatalf("a refused run changed the namespace.\nbefore:\n%s\nafter:\n%s", before, now)
		}
	}
	for _, kind := range []string{"partition", "latency"} {
		valid := "      - name: valid\n        " + fmt.Sprintf(faults[kind], l.Name) + "\n"
		t.Run(kind+"/missing namespace", func(t *testing.T) {
			state := t.TempDir()
			// The first fault alone passes every check (a dry run prepares it and touches nothing).
			if out := faultline(t, state, "run", "--dry-run", runbook(t, head+valid, nil)); out.code != 0 {
				t.Fatalf("dry run of the valid fault alone: exit %d\n%s%s", out.code, out.stdout, out.stderr)
			}
			rb := runbook(t, head+valid+"      - name: missing\n        "+fmt.Sprintf(faults[kind], missing)+"\n", nil)
			// validate cannot know; the dry run and the run point at the fault's line (11, column 9
			// of "- name: missing") and say which namespaces there are.
			where := fmt.Sprintf("%s:11:9: experiments[0].faults[1] (%s): ", rb, kind)
			listed := regexp.MustCompile(`network namespace "` + missing + `" does not exist \(.*; ip netns list shows: (.*)\)`)
			for _, args := range [][]string{{"run", "--dry-run", rb}, {"run", rb}} {
				out := faultline(t, state, args...)
				text := out.stdout + out.stderr
				m := listed.FindStringSubmatch(text)
				if out.code != 4 || !strings.Contains(text, where) || m == nil {
					t.Fatalf("%v with a missing namespace: exit %d, want 4 with %q and the namespaces listed\n%s", args, out.code, where, text)
				}
				// Namespaces other tests create come and go; the list is cut after ten.
				if !strings.Contains(m[1], l.Name) && !strings.Contains(m[1], " more") {
					t.Fatalf("the list %q names neither %s nor how many more there are", m[1], l.Name)
				}
			}
			untouched(t, state)
		})
		t.Run(kind+"/without CAP_NET_ADMIN", func(t *testing.T) {
			setpriv, err := exec.LookPath("setpriv")
			if err != nil {
				// scripts/testenv installs util-linux, so CI must not skip this.
				if os.Getenv("CI") == "true" {
					t.Fatal("setpriv (util-linux) not installed: cannot drop CAP_NET_ADMIN; run scripts/testenv")
				}
				t.Skip("setpriv (util-linux) not installed: cannot drop CAP_NET_ADMIN")
			}
			state := t.TempDir()
			rb := runbook(t, head+valid, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--", binPath, "--state-dir", state, "run", rb)
			b, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 4 || !strings.Contains(string(b), "CAP_NET_ADMIN") {
				t.Fatalf("without CAP_NET_ADMIN: exit %d (err %v), want 4 naming the capability\n%s", code, err, b)
			}
			untouched(t, state)
		})
	}
}

const networkResultRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-net-result}
environment: {name: test, type: local}
experiments:
  - name: all-kinds
    duration: 1s
    faults:
      - name: partition
        partition: {netns: {{.NS}}, direction: egress, peers: ["{{.Peer}}"], protocol: tcp, ports: ["9"]}
      - name: slow
        bandwidth: {netns: {{.NS}}, interface: {{.Iface}}, rate: 10mbit}
      - name: delay
        latency: {netns: {{.NS}}, direction: egress, peers: ["{{.Peer}}"], protocol: tcp, delay: 20ms, mechanism: proxy}
`

// The result document says, per fault, what was put in place in words a human reads (the rules,
// the qdisc, the mechanism) and when that fault was removed; afterwards the namespace is as before.
func TestNetworkResultRecordsAppliedRulesAndRevertTimes(t *testing.T) {
	netns.Require(t, "iptables", "iptables-save", "ip6tables-save", "tc")
	l := netns.NewPair(t)
	before := snapshot(t, l.A)
	rb := runbook(t, networkResultRunbook, map[string]string{"NS": l.A.Name, "Peer": l.B4.String(), "Iface": l.AIf})
	out := faultline(t, t.TempDir(), "run", "-o", "json", rb)
	if out.code != 0 {
		t.Fatalf("run exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	res := out.result(t)
	faults := res.Experiments[0].Faults
	if len(faults) != 3 {
		t.Fatalf("%d faults in the result", len(faults))
	}
	want := map[string]struct{ applied, mechanism string }{
		"partition": {"-j DROP", ""},
		"slow":      {"tbf", ""},
		"delay":     {"REDIRECT --to-ports", "proxy"},
	}
	for _, f := range faults {
		w := want[f.Name]
		applied := strings.Join(f.Applied, "\n")
		if !strings.Contains(applied, w.applied) {
			t.Errorf("%s: applied lines lack %q:\n%s", f.Name, w.applied, applied)
		}
		if f.Mechanism != w.mechanism {
			t.Errorf("%s: mechanism %q, want %q", f.Name, f.Mechanism, w.mechanism)
		}
		if f.AppliedAt == nil || f.RevertedAt == nil || f.RevertedAt.Before(*f.AppliedAt) {
			t.Errorf("%s: applied %v, reverted %v", f.Name, f.AppliedAt, f.RevertedAt)
		}
	}
	if after := snapshot(t, l.A); after != before {
		t.Fatalf("namespace after the run differs from before:\n--- before\n%s--- after\n%s", before, after)
	}
}
