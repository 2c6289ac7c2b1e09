//go:build linux

package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// hostNet is a "golden copy host" made of a network namespace of its own running `faultline
// agent --host-only`, linked to a second namespace where the run executes and a TCP server
// listens; the host reaches that server, and the partition under test cuts it off.
type hostNet struct {
	host, peer *netns.NS
	link       *netns.Link
	agentAddr  string
	server     string // host:port in peer
	tls        [3]string
	agentTLS   [3]string
	agentState string
	victim     string // command name of a process the host's agent may pause
	victimPID  int
}

func startHostNet(t *testing.T) *hostNet {
	t.Helper()
	netns.Require(t, "iptables", "iptables-save")
	h := &hostNet{host: netns.New(t), peer: netns.New(t), agentState: t.TempDir()}
	h.link = netns.Connect(t, h.host, h.peer)
	ln, err := h.peer.ListenTCP(t.Context(), net.JoinHostPort(h.link.B4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	h.server = ln.Addr().String()
	ca := pki.NewCA(t, "agents")
	run, srv := ca.Client("run"), ca.Server("agent", []string{agentapi.ServerName})
	h.tls, h.agentTLS = [3]string{ca.CertPEM, run.Cert, run.Key}, [3]string{ca.CertPEM, srv.Cert, srv.Key}
	h.agentAddr = net.JoinHostPort(h.link.A4.String(), "7470")
	v := local.StartVictims(t, 1)[0]
	h.victimPID, h.victim = v.PID(), v.Exe
	return h
}

func (h *hostNet) startAgent(t *testing.T) *started {
	t.Helper()
	a := startFaultlineIn(t, h.host.Name, nil, h.agentState, "agent", "--host-only", "--node-name", "golden-db-1", "--state-dir", h.agentState,
		"--listen", h.agentAddr, "--metrics-listen", "",
		"--tls-ca", h.agentTLS[0], "--tls-cert", h.agentTLS[1], "--tls-key", h.agentTLS[2])
	a.waitFor(t, 30*time.Second, "the agent to listen", func() bool { return strings.Contains(a.stdout.String(), "listening on") })
	return a
}

// reachable says whether the host connects to the server within 500 ms.
func (h *hostNet) reachable(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	c, err := h.host.Dial(ctx, "tcp", h.server)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func (h *hostNet) paused(*testing.T) bool { return local.State(h.victimPID) == "T" }

func (h *hostNet) runbook(t *testing.T, duration, lease, faults string) string {
	t.Helper()
	return runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-host-agent}
environment:
  name: golden
  type: golden-copy
  hosts: [golden-*]
  agents:
    tls: {caFile: "{{index .TLS 0}}", certFile: "{{index .TLS 1}}", keyFile: "{{index .TLS 2}}"}
    lease: {{.Lease}}
    hosts:
      - {name: golden-db-1, address: "{{.Addr}}"}
experiments:
  - name: chaos
    duration: {{.Duration}}
    faults: {{.Faults}}
`, struct {
		TLS                           [3]string
		Addr, Duration, Lease, Faults string
	}{h.tls, h.agentAddr, duration, lease, faults})
}

// both is a partition of the host from the server's port and a pause of the victim, on the host.
func (h *hostNet) both() string {
	_, port, _ := net.SplitHostPort(h.server)
	return `[{name: cut, on: [golden-db-1], partition: {direction: egress, protocol: tcp, ports: ["` + port + `"], peers: ["` + h.link.B4.String() + `"]}},
             {name: freeze, on: [golden-db-1], processPause: {exe: ` + h.victim + `}}]`
}

// A runbook names a plain host's agent as the target of a network fault and a process fault:
// the dry run lists what the agent would touch, the run applies both there and reverts them, the
// host's rules are as before; a run SIGKILLed mid-window is reverted by the agent within lease +
// 1 s with no recover; bad input is refused with nothing applied.
func TestHostAgentFaults(t *testing.T) {
	h := startHostNet(t)
	outer := t
	h.startAgent(outer)
	if !h.reachable(t) || h.paused(t) {
		t.Fatal("the host cannot reach the server, or the victim is stopped, before any fault")
	}
	// A rule of the host's own, which every revert must leave alone.
	if _, err := h.host.Exec(t.Context(), "iptables", "-w", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	rules := func() string { return snapshot(t, h.host) }
	before := rules()

	t.Run("dry run lists what the agent would touch", func(t *testing.T) {
		out := faultlineIn(t, h.peer.Name, t.TempDir(), "run", "--dry-run", h.runbook(t, "5s", "3s", h.both()))
		if out.code != 0 {
			t.Fatalf("dry run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		want := "pid " + strconv.Itoa(h.victimPID)
		if !strings.Contains(out.stdout, want) || !strings.Contains(out.stdout, "host golden-db-1 via agent") {
			t.Fatalf("dry run does not name %q on host golden-db-1:\n%s", want, out.stdout)
		}
		if h.paused(t) || !h.reachable(t) {
			t.Fatal("the dry run touched the host")
		}
	})

	t.Run("apply and revert", func(t *testing.T) {
		state := t.TempDir()
		run := startFaultlineIn(t, h.peer.Name, nil, state, "run", "--output", "json", h.runbook(t, "4s", "3s", h.both()))
		run.waitFor(t, time.Minute, "both faults on the host", func() bool {
			open := openEntries(t, state)
			return len(open) == 2 && open[0].State == ledger.StateApplied && open[1].State == ledger.StateApplied && h.paused(t) && !h.reachable(t)
		})
		out := run.wait(t, 2*time.Minute)
		if out.code != 0 {
			t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if h.paused(t) || !h.reachable(t) {
			t.Fatal("a fault outlived the run")
		}
		if after := rules(); after != before {
			t.Errorf("the host's rules differ after the run:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		r := out.result(t)
		faults := r.Experiments[0].Faults
		if len(faults) != 2 || faults[0].Kind != "partition" || faults[1].Kind != "process-pause" {
			t.Fatalf("faults in the result: %+v", faults)
		}
		if !strings.Contains(strings.Join(faults[1].Targets, "\n"), "pid "+strconv.Itoa(h.victimPID)) {
			t.Errorf("the pause's targets do not name the victim: %v", faults[1].Targets)
		}
		if !strings.Contains(strings.Join(faults[0].Applied, "\n"), "held by agent") {
			t.Errorf("the partition's applied lines do not say which agent holds it: %v", faults[0].Applied)
		}
	})

	t.Run("run SIGKILLed: the agent reverts within lease + 1s", func(t *testing.T) {
		state := t.TempDir()
		run := startFaultlineIn(t, h.peer.Name, nil, state, "run", h.runbook(t, "10m", "3s", h.both()))
		run.waitFor(t, time.Minute, "both faults on the host", func() bool { return h.paused(t) && !h.reachable(t) })
		_ = run.cmd.Process.Kill()
		<-run.done
		killed := time.Now()
		waitFor(t, 30*time.Second, "the agent to revert both", func() bool { return !h.paused(t) && h.reachable(t) })
		took := time.Since(killed)
		t.Logf("measured: both faults gone %s after the run was SIGKILLed (lease 3s)", took.Round(time.Millisecond))
		if took > 4*time.Second+500*time.Millisecond { // lease + 1 s, and the probes' own 500 ms
			t.Errorf("reverted %s after the kill, want within lease + 1s", took)
		}
		if out := faultlineIn(t, h.peer.Name, state, "recover"); out.code != 0 {
			t.Fatalf("recover after the agent's revert: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		if open := openEntries(t, state); len(open) != 0 {
			t.Fatalf("recover left %d entries", len(open))
		}
	})

	t.Run("agents lists what the host's agent held and why it reverted", func(t *testing.T) {
		rb := h.runbook(t, "5s", "3s", h.both())
		out := faultlineIn(t, h.peer.Name, t.TempDir(), "agents", rb)
		if out.code != 0 {
			t.Fatalf("agents: exit %d\n%s%s", out.code, out.stdout, out.stderr)
		}
		t.Logf("faultline agents:\n%s", out.stdout)
		for _, want := range []string{"host golden-db-1 (https://" + h.agentAddr + "): 0 held", "reverted (requested)", "reverted (lease expired)", "process-pause", "partition"} {
			if !strings.Contains(out.stdout, want) {
				t.Errorf("agents output lacks %q:\n%s", want, out.stdout)
			}
		}
		// An address where no agent listens (the run's own namespace, port 1): exit 5, the host named.
		gone := *h
		gone.agentAddr = net.JoinHostPort(h.link.B4.String(), "1")
		if out := faultlineIn(t, h.peer.Name, t.TempDir(), "agents", gone.runbook(t, "5s", "3s", h.both())); out.code != 5 || !strings.Contains(out.stdout, "golden-db-1") || !strings.Contains(out.stdout, "unreachable") {
			t.Fatalf("agents with the agent unreachable: exit %d, want 5 naming the host\n%s%s", out.code, out.stdout, out.stderr)
		}
	})

	t.Run("bad input is refused, nothing applied", func(t *testing.T) {
		for name, faults := range map[string]string{
			"a namespace missing on the host": `[{on: [golden-db-1], partition: {netns: fl-no-such-ns}}]`,
			"no such process on the host":     `[{on: [golden-db-1], processPause: {exe: no-such-proc}}, {on: [golden-db-1], partition: {}}]`,
		} {
			t.Run(name, func(t *testing.T) {
				state := t.TempDir()
				out := faultlineIn(t, h.peer.Name, state, "run", h.runbook(t, "5s", "3s", faults))
				if out.code != 4 || !strings.Contains(out.stdout+out.stderr, "host golden-db-1") {
					t.Fatalf("exit %d, want 4 naming the host\n%s%s", out.code, out.stdout, out.stderr)
				}
				if open := openEntries(t, state); len(open) != 0 {
					t.Fatalf("%d ledger entries after a refusal", len(open))
				}
				if !h.reachable(t) {
					t.Fatal("the host was cut off by a refused run")
				}
			})
		}
		for name, tc := range map[string]struct{ faults, want string }{
			"a host not in environment.agents": {`[{on: [nope], partition: {}}]`, `host "nope" is not in environment.agents.hosts`},
			"a kind the agents do not apply":   {`[{on: [golden-db-1], podKill: {namespaces: [x]}}]`, "cannot be sent to an agent"},
		} {
			t.Run(name, func(t *testing.T) {
				out := faultlineIn(t, h.peer.Name, t.TempDir(), "run", h.runbook(t, "5s", "3s", tc.faults))
				if out.code == 0 || !strings.Contains(out.stdout+out.stderr, tc.want) {
					t.Fatalf("exit %d, want an error containing %q\n%s%s", out.code, tc.want, out.stdout, out.stderr)
				}
			})
		}
	})
}
