package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/safety"
)

// snapshot is the network state a fault may change in a namespace: both iptables families and
// the qdiscs, with the timestamps iptables-save prints removed.
func snapshot(t testing.TB, ns *netns.NS) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"tc", "qdisc", "show"}} {
		out, err := ns.Exec(ctx, cmd[0], cmd[1:]...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		b.Write(out)
	}
	return regexp.MustCompile(`(?m)^# (Generated|Completed) .*$`).ReplaceAllString(b.String(), "")
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
	waitFor(t, 20*time.Second, "both faults applied and ledgered", func() bool {
		open := openEntries(t, state)
		return len(open) == 2 && open[0].State == safety.StateApplied && open[1].State == safety.StateApplied
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

// A namespace that does not exist, or a process without CAP_NET_ADMIN: exit 4, nothing applied.
func TestNetworkRefusals(t *testing.T) {
	netns.Require(t, "iptables")
	state := t.TempDir()
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-net}
environment: {name: test, type: local}
experiments:
  - name: cut
    duration: 5s
    faults:
      - partition: {netns: {{.NS}}, peers: ["10.200.254.2"]}
`, map[string]string{"NS": "fl-test-does-not-exist"})
	out := faultline(t, state, "run", rb)
	if out.code != 4 || !strings.Contains(out.stdout+out.stderr, "fl-test-does-not-exist") {
		t.Fatalf("missing namespace: exit %d, want 4 naming the namespace\n%s%s", out.code, out.stdout, out.stderr)
	}

	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed: cannot drop CAP_NET_ADMIN for the second case")
	}
	l := netns.New(t)
	rb = runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-net}
environment: {name: test, type: local}
experiments:
  - name: cut
    duration: 5s
    faults:
      - partition: {netns: {{.NS}}, peers: ["10.200.254.2"]}
`, map[string]string{"NS": l.Name})
	cmd := exec.Command(setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--", binPath, "--state-dir", state, "run", rb)
	b, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 4 || !strings.Contains(string(b), "CAP_NET_ADMIN") {
		t.Fatalf("without CAP_NET_ADMIN: exit %d (err %v), want 4 naming the capability\n%s", code, err, b)
	}
}
