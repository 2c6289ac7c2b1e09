//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faultline-dev/faultline/injectors/proxyserver"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// proxyStack is a `faultline proxy serve` process with one proxy, db, in front of an echo server.
type proxyStack struct {
	proc   *started
	api    string // http://host:port
	db     string // where the db proxy listens
	client *proxyserver.Client
}

func startProxyServer(t testing.TB) *proxyStack {
	t.Helper()
	up := local.EchoServer(t)
	proc := startFaultline(t, nil, t.TempDir(), "proxy", "serve", "--proxy", "db=127.0.0.1:0="+up, "--api-address", "127.0.0.1:0")
	s := &proxyStack{proc: proc}
	waitFor(t, 10*time.Second, "the proxy server to print its addresses", func() bool {
		for _, line := range strings.Split(proc.stdout.String(), "\n") {
			if a, ok := strings.CutPrefix(line, "faultline proxy: API listening on "); ok {
				s.api = a
			}
			if rest, ok := strings.CutPrefix(line, "faultline proxy: db listening on "); ok {
				s.db, _, _ = strings.Cut(rest, " ")
			}
		}
		return s.api != "" && s.db != ""
	})
	c, err := proxyserver.NewClient(s.api, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.client = c
	return s
}

func (s *proxyStack) toxics(t testing.TB) []proxyserver.ToxicSet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := s.client.Proxy(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	return ps.Toxics
}

// echoRTT is the median of 5 round trips on a fresh connection through the db proxy.
func (s *proxyStack) echoRTT(t testing.TB) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.db, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	msg, buf := make([]byte, 16), make([]byte, 16)
	var ds []time.Duration
	for range 5 {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[2]
}

const proxyToxicsRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-proxy-toxics}
environment: {name: golden, type: golden-copy}
experiments:
  - name: slow-db
    duration: {{.Duration}}
    faults:
      - name: db-latency
        proxyToxics:
          server: {{.Server}}
          proxy: {{.Proxy}}
          lease: {{.Lease}}
          toxics:
            - latency: {delay: 50ms}
              stream: upstream
`

type proxyToxicsData struct{ Duration, Server, Proxy, Lease string }

// A run switches the toxic on for its window and off at the end; the result says what was applied
// and when it was removed.
func TestProxyToxicsRunTogglesALongLivedProxy(t *testing.T) {
	s := startProxyServer(t)
	if d := s.echoRTT(t); d > 10*time.Millisecond {
		t.Fatalf("before the run: round trip %s through an idle proxy", d)
	}
	state := t.TempDir()
	rb := runbook(t, proxyToxicsRunbook, proxyToxicsData{Duration: "3s", Server: s.api, Proxy: "db", Lease: "1s"})
	run := startFaultline(t, nil, state, "run", "-o", "json", rb)
	run.waitFor(t, 10*time.Second, "the run's toxic on the proxy", func() bool { return len(s.toxics(t)) == 1 })
	if d := s.echoRTT(t); d < 50*time.Millisecond || d > 80*time.Millisecond {
		t.Errorf("during the window: round trip %s, want 50ms added", d)
	}
	out := run.wait(t, 30*time.Second)
	if out.code != 0 {
		t.Fatalf("run exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	if ts := s.toxics(t); len(ts) != 0 {
		t.Fatalf("after the run the proxy still has toxics %+v", ts)
	}
	if d := s.echoRTT(t); d > 10*time.Millisecond {
		t.Errorf("after the run: round trip %s", d)
	}
	res := out.result(t)
	f := res.Experiments[0].Faults[0]
	if f.AppliedAt == nil || f.RevertedAt == nil || !f.RevertedAt.After(*f.AppliedAt) {
		t.Errorf("fault applied %v, reverted %v", f.AppliedAt, f.RevertedAt)
	}
	// 3s window with a 1s lease: it was renewed (else the server would have dropped it and the
	// run would have failed), and the applied lines name the toxic.
	if got := strings.Join(f.Applied, "\n"); !strings.Contains(got, "toxic ") || !strings.Contains(got, "latency 50ms") || !strings.Contains(got, "lease 1s") {
		t.Errorf("applied lines:\n%s", got)
	}
}

// SIGKILL mid-window: the toxic stays (the server cannot tell a crash from a slow run) until
// recover removes it from the ledger record; without recover the lease removes it.
func TestProxyToxicsSIGKILLThenRecoverOrLease(t *testing.T) {
	for _, viaRecover := range []bool{true, false} {
		name := "lease"
		if viaRecover {
			name = "recover"
		}
		t.Run(name, func(t *testing.T) {
			s := startProxyServer(t)
			state := t.TempDir()
			lease := "30s"
			if !viaRecover {
				lease = "2s"
			}
			rb := runbook(t, proxyToxicsRunbook, proxyToxicsData{Duration: "60s", Server: s.api, Proxy: "db", Lease: lease})
			run := startFaultline(t, nil, state, "run", rb)
			run.waitFor(t, 10*time.Second, "the toxic applied and ledgered", func() bool {
				open := openEntries(t, state)
				return len(s.toxics(t)) == 1 && len(open) == 1 && open[0].State == ledger.StateApplied
			})
			if err := run.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-run.done
			killed := time.Now()
			if ts := s.toxics(t); len(ts) != 1 || !strings.HasSuffix(ts[0].Owner, ".db-latency") {
				t.Fatalf("right after SIGKILL: toxics %+v, want the run's still in place", ts)
			}
			if d := s.echoRTT(t); d < 50*time.Millisecond {
				t.Fatalf("right after SIGKILL: round trip %s, want the fault still active", d)
			}
			if viaRecover {
				out := faultline(t, state, "recover")
				if out.code != 0 || !strings.Contains(out.stdout, "reverted ") {
					t.Fatalf("recover exit %d\n%s%s", out.code, out.stdout, out.stderr)
				}
				if ts := s.toxics(t); len(ts) != 0 {
					t.Fatalf("after recover: toxics %+v", ts)
				}
			} else {
				waitFor(t, 10*time.Second, "the server to drop the toxic when its lease ran out", func() bool { return len(s.toxics(t)) == 0 })
				if gone := time.Since(killed); gone > 4*time.Second {
					t.Errorf("toxic lasted %s after the crash with a 2s lease", gone)
				}
				// The ledger still holds the entry; recover finds nothing left and closes it.
				out := faultline(t, state, "recover")
				if out.code != 0 {
					t.Fatalf("recover exit %d\n%s%s", out.code, out.stdout, out.stderr)
				}
			}
			if n := len(openEntries(t, state)); n != 0 {
				t.Fatalf("%d ledger entries open", n)
			}
			if d := s.echoRTT(t); d > 10*time.Millisecond {
				t.Errorf("after cleanup: round trip %s", d)
			}
		})
	}
}

func TestProxyToxicsRefusalsTouchNothing(t *testing.T) {
	s := startProxyServer(t)
	state := t.TempDir()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + closed.Addr().String()
	closed.Close()
	for _, c := range []struct {
		server, proxy, want string
	}{
		{s.api, "queue", `runs no proxy "queue" (it runs: db)`},
		{dead, "db", "cannot reach the proxy server"},
	} {
		rb := runbook(t, proxyToxicsRunbook, proxyToxicsData{Duration: "5s", Server: c.server, Proxy: c.proxy, Lease: "5s"})
		out := faultline(t, state, "run", rb)
		if out.code != 4 || !strings.Contains(out.stdout+out.stderr, c.want) {
			t.Errorf("%s %s: exit %d, want 4 saying %q\n%s%s", c.server, c.proxy, out.code, c.want, out.stdout, out.stderr)
		}
	}
	if ts := s.toxics(t); len(ts) != 0 {
		t.Fatalf("refused runs left toxics %+v", ts)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("refused runs left %d ledger entries", n)
	}
	// Bad input is refused by validate with a position, before any server is asked.
	rb := runbook(t, proxyToxicsRunbook, proxyToxicsData{Duration: "5s", Server: "ftp://x", Proxy: "db", Lease: "1h"})
	out := faultline(t, state, "validate", rb)
	if out.code != 4 || !strings.Contains(out.stdout+out.stderr, "runbook.yaml:11:11") || !strings.Contains(out.stdout+out.stderr, "runbook.yaml:13:11") {
		t.Errorf("validate: exit %d, want 4 with the server and lease positions\n%s%s", out.code, out.stdout, out.stderr)
	}
}

// The serve command refuses an unauthenticated API on a non-loopback address.
func TestProxyServeRefusesAnOpenAPI(t *testing.T) {
	out := faultline(t, t.TempDir(), "proxy", "serve", "--proxy", "db=127.0.0.1:0=127.0.0.1:9", "--api-address", "0.0.0.0:0")
	if out.code != 4 || !strings.Contains(out.stderr, "--token-file") {
		t.Fatalf("exit %d, want 4 asking for --token-file\n%s", out.code, out.stderr)
	}
	out = faultline(t, t.TempDir(), "proxy", "serve", "--proxy", "db=127.0.0.1:0")
	if out.code != 4 || !strings.Contains(out.stderr, "NAME=LISTEN=UPSTREAM") {
		t.Fatalf("bad --proxy: exit %d\n%s", out.code, out.stderr)
	}
}

// The compose example's proxy command and game day are real: the command, with the addresses
// and secrets swapped for the test's, serves and answers the example admin token, and the game
// day validates.
func TestComposeExampleIsReal(t *testing.T) {
	if out := faultline(t, t.TempDir(), "validate", "../../deploy/compose/gameday.yaml"); out.code != 0 {
		t.Fatalf("gameday.yaml: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	raw, err := os.ReadFile("../../deploy/compose/docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"proxy-tokens", "proxy-token"} {
		b, err := os.ReadFile("../../deploy/compose/" + f + ".example")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	up := startProxyServer(t) // an upstream that answers: the db proxy of another server
	repl := strings.NewReplacer("0.0.0.0:5432=postgres:5432", "127.0.0.1:0="+up.db, "0.0.0.0:8475", "127.0.0.1:0",
		"/run/secrets/proxy-tokens", filepath.Join(dir, "proxy-tokens"))
	var args []string
	for _, a := range compose.Services["toxics"].Command {
		args = append(args, repl.Replace(a))
	}
	if !slices.Contains(args, "proxy") || !slices.Contains(args, "serve") {
		t.Fatalf("toxics command %q", compose.Services["toxics"].Command)
	}
	proc := startFaultline(t, nil, t.TempDir(), args...)
	var api string
	waitFor(t, 10*time.Second, "the compose proxy server to listen", func() bool {
		select {
		case <-proc.done:
			t.Fatalf("the compose command exited:\n%s", proc.stderrText())
		default:
		}
		for _, line := range strings.Split(proc.stdout.String(), "\n") {
			if a, ok := strings.CutPrefix(line, "faultline proxy: API listening on "); ok {
				api = a
			}
		}
		return api != ""
	})
	token, err := os.ReadFile(filepath.Join(dir, "proxy-token"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := proxyserver.NewClient(api, strings.TrimSpace(string(token)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := cl.Proxies(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "postgres" {
		t.Fatalf("compose proxy server: %+v, %v", ps, err)
	}
	if _, err := cl.Reset(ctx); err != nil {
		t.Fatalf("the example's admin token cannot reset: %v", err)
	}
}

func TestProxyListAndResetCommands(t *testing.T) {
	s := startProxyServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lat := runbooksLatency(40 * time.Millisecond)
	if _, err := s.client.SetToxics(ctx, "db", "run-9.slow", lat, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	out := faultline(t, state, "proxy", "list", "--server", s.api)
	if out.code != 0 || !strings.Contains(out.stdout, "run-9.slow: latency 40ms") || !strings.Contains(out.stdout, s.db) {
		t.Fatalf("list: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	out = faultline(t, state, "proxy", "list", "--server", s.api, "-o", "json")
	var resp proxyserver.ProxiesResponse
	if err := json.Unmarshal([]byte(out.stdout), &resp); err != nil || len(resp.Proxies) != 1 || len(resp.Proxies[0].Toxics) != 1 {
		t.Fatalf("list -o json: %v\n%s", err, out.stdout)
	}
	out = faultline(t, state, "proxy", "reset", "--server", s.api)
	if out.code != 0 || !strings.Contains(out.stdout, "removed 1 toxic set") {
		t.Fatalf("reset: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	if ts := s.toxics(t); len(ts) != 0 {
		t.Fatalf("after reset: %+v", ts)
	}
	if out := faultline(t, state, "proxy", "list", "--server", "http://127.0.0.1:1"); out.code != 5 || !strings.Contains(out.stderr, "connection refused") {
		t.Fatalf("list against nothing: exit %d\n%s", out.code, out.stderr)
	}
}

func runbooksLatency(d time.Duration) []runbooks.ProxyToxic {
	return []runbooks.ProxyToxic{{Name: "slow", Latency: &runbooks.ToxicLatency{Delay: runbooks.Duration(d)}}}
}
