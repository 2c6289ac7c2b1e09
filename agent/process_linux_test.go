package agent_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// binDir holds the faultline binary the tests build, removed when they end.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faultline-agent-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds faultline once per test binary, static (CGO_ENABLED=0, as the image's) so that it
// also runs in an image of its own.
var binary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "faultline")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/faultline-dev/faultline/cmd/faultline")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build faultline: " + e.err.Error() + "\n" + e.out }

// agentProc is a `faultline agent` process running inside a network namespace of its own.
type agentProc struct {
	cmd    *exec.Cmd
	url    string
	done   chan error
	client *agentapi.Client
}

// startAgentProcess runs the agent in ns (host mode), with its ledger in state, and a client that
// dials it from inside ns.
func startAgentProcess(t *testing.T, ns *netns.NS, ca *pki.CA, state string) *agentProc {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	srv := ca.Server("agent", []string{agentapi.ServerName})
	cli := ca.Client("run")
	cmd := exec.Command(bin, "--log-level", "info", "agent", "--host-only", "--listen", "127.0.0.1:0",
		"--metrics-listen", "", "--state-dir", state, "--node-name", "test-host",
		"--tls-ca", ca.CertPEM, "--tls-cert", srv.Cert, "--tls-key", srv.Key)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t}
	// Forked from a thread inside ns: the agent's own namespace is ns.
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() { p.kill(t) })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "faultline agent: listening on "); ok {
				addr <- a
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	select {
	case p.url = <-addr:
	case err := <-p.done:
		t.Fatalf("agent exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("agent did not listen within 60s")
	}
	conf, err := agentapi.ClientTLS(ca.CertPEM, cli.Cert, cli.Key)
	if err != nil {
		t.Fatal(err)
	}
	p.client = agentapi.NewClient(p.url, conf)
	p.client.SetDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.Dial(ctx, network, addr)
	})
	t.Cleanup(p.client.CloseIdleConnections)
	return p
}

// stop sends sig and waits for the process to exit.
func (p *agentProc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not exit within 30s of %v", sig)
		return nil
	}
}

func (p *agentProc) kill(t *testing.T) {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		select {
		case err := <-p.done:
			p.done <- err
		case <-time.After(30 * time.Second):
			t.Errorf("agent pid %d did not exit", p.cmd.Process.Pid)
		}
	}
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("agent: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// The agent in a namespace of its own, on a plain host: SIGKILL leaves its faults applied; the
// next agent reverts the one whose lease ran out meanwhile and holds the other, which survives a
// SIGTERM too and is reverted on request.
func TestAgentProcessSurvivesSIGKILL(t *testing.T) {
	require(t)
	ca := pki.NewCA(t, "agents")
	state := t.TempDir()
	self := netns.New(t)
	l := netns.NewPair(t)
	server := echoServer(t, l.A, l.A4.String())
	beforeA, beforeSelf := baseline(t, l.A), baseline(t, self)
	ctx := ctxFor(t, 3*time.Minute)

	p1 := startAgentProcess(t, self, ca, state)
	long, err := p1.client.Apply(ctx, partition(t, agentapi.Target{Host: true}, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snapshot(t, self), "FAULTLINE-") {
		t.Fatal("no FAULTLINE chain in the agent's own namespace for target host")
	}
	// The short fault goes last, just before the kill: on a loaded machine the checks above may
	// take longer than its lease, and the agent would rightly revert it before it dies.
	short, err := p1.client.Apply(ctx, partition(t, agentapi.Target{Netns: l.A.Name}, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILLed agent exited cleanly")
	}
	if time.Now().After(short.ExpiresAt) {
		t.Fatalf("the kill came %s after the short lease ended: the test cannot tell a revert by the dying agent from one by nobody", time.Since(short.ExpiresAt))
	}
	if !strings.Contains(snapshot(t, l.A), "FAULTLINE-") {
		t.Fatal("the partition went away with the agent process")
	}
	// Nothing reverts while no agent runs: past the short lease, the agent's ledger still has the
	// fault applied. (The ledger, not the rules: another test's `faultline recover` sweeps chains
	// of dead owners in every named namespace, this test's too, and may remove them meanwhile.)
	<-time.After(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	open, err := ledger.OpenEntries(ctx, mustOpenLedger(t, state))
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(open, func(e *ledger.Entry) bool { return e.ID == short.ID }); i < 0 || open[i].State != ledger.StateApplied {
		t.Fatalf("past its lease with no agent running, the fault is not held as applied in the ledger: %v", open)
	}

	p2 := startAgentProcess(t, self, ca, state)
	fs, err := p2.client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := find(fs, short.ID); !ok || f.State != agentapi.StateReverted || f.RevertReason != agentapi.ReasonLeaseExpired {
		t.Errorf("expired fault after restart = %+v (found %v)", f, ok)
	}
	if f, ok := find(fs, long.ID); !ok || f.State != agentapi.StateApplied || !f.ExpiresAt.Equal(long.ExpiresAt) {
		t.Errorf("valid fault after restart = %+v (found %v), want it held with expiry %v", f, ok, long.ExpiresAt)
	}
	if got := snapshot(t, l.A); got != beforeA {
		t.Errorf("rules of the expired fault left:\n%s", got)
	}
	if !reach(t, l.B, server) {
		t.Error("the server is not reachable after the expired fault's revert")
	}
	if err := p2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// The ledger says what the agent did (its chains, labelled by the dead first agent, are fair
	// game for another test's sweep).
	open, err = ledger.OpenEntries(ctx, mustOpenLedger(t, state))
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(open, func(e *ledger.Entry) bool { return e.ID == long.ID }); i < 0 || open[i].State != ledger.StateApplied {
		t.Fatal("SIGTERM reverted a held fault")
	}

	p3 := startAgentProcess(t, self, ca, state)
	if _, err := p3.client.Renew(ctx, long.ID, time.Minute); err != nil {
		t.Fatalf("renew after two restarts: %v", err)
	}
	if f, err := p3.client.Revert(ctx, long.ID); err != nil || f.RevertReason != agentapi.ReasonRequested {
		t.Fatalf("revert = %+v, %v", f, err)
	}
	if got := snapshot(t, self); got != beforeSelf {
		t.Errorf("rules left in the agent's namespace:\n%s", got)
	}
}

func mustOpenLedger(t *testing.T, state string) *ledger.FileLedger {
	t.Helper()
	l, err := ledger.OpenFile(filepath.Join(state, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
