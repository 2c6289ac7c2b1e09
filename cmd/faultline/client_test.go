package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/metrics"
)

// The client commands run in-process against the real stack: the daemon, its API server on a
// loopback port, a bbolt history, real victim processes and a real health endpoint.

const (
	cliAdminToken  = "cli-admin-token-0123456789"
	cliReaderToken = "cli-reader-token-0123456789"
)

type apiStack struct {
	url        string
	adminFile  string // client token files: the token alone
	readerFile string
	victim     *victim
	health     *health
	daemon     *daemon.Daemon
}

// startAPIStack runs a daemon with two schedules that never fire on their own (1 January,
// midnight): "quick" pauses the victim for 1s, "long" for 60s. They are started with trigger.
func startAPIStack(t testing.TB, opts ...func(*api.Config)) *apiStack {
	t.Helper()
	s := &apiStack{victim: startVictims(t, 1)[0], health: startHealth(t)}
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, d := range map[string]string{"quick.yaml": "1s", "long.yaml": "60s"} {
		rb := runbook(t, pauseRunbook, pauseData{URL: s.health.URL, PidFile: s.victim.PidFile, Duration: d})
		b, err := os.ReadFile(rb)
		if err != nil {
			t.Fatal(err)
		}
		write(name, strings.Replace(string(b), "name: e2e-pause", "name: "+strings.TrimSuffix(name, ".yaml"), 1))
	}
	cfg := write("faultline.yaml", `apiVersion: faultline.dev/v1alpha1
kind: DaemonConfig
schedules:
  - {name: quick, runbook: quick.yaml, cron: "0 0 1 1 *"}
  - {name: long, runbook: long.yaml, cron: "0 0 1 1 *"}
`)
	tokens := write("tokens", cliAdminToken+" admin ci\n"+cliReaderToken+" read-only dashboards\n")
	s.adminFile = write("admin.token", cliAdminToken+"\n")
	s.readerFile = write("reader.token", cliReaderToken)

	lc, err := daemon.LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, met, err := NewMain(io.Discard, io.Discard).engine(filepath.Join(dir, "state"), log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hist, err := history.Open(ctx, filepath.Join(dir, "state", "history.db"), history.Options{Retention: history.Retention{MaxRuns: 100}})
	if err != nil {
		t.Fatal(err)
	}
	s.daemon = daemon.New(daemon.Options{Config: lc, Engine: eng, Registry: reg, Results: hist, Logger: log,
		Metrics: metrics.NewDaemon(met.Registry)})
	acfg := api.Config{TokenFile: tokens, AuditLog: filepath.Join(dir, "audit.jsonl")}
	for _, o := range opts {
		o(&acfg)
	}
	srv, err := api.New(acfg, s.daemon, hist, met.Registry, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	if acfg.TLSCertFile != "" {
		s.url = "https://" + ln.Addr().String()
	}
	daemonDone, serveDone := make(chan error, 1), make(chan error, 1)
	go func() { daemonDone <- s.daemon.Run(ctx) }()
	go func() { serveDone <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-serveDone; err != nil {
			t.Errorf("API server: %v", err)
		}
		if err := <-daemonDone; err != nil {
			t.Errorf("daemon: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := hist.Close(); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "the daemon to be ready", s.daemon.Ready)
	return s
}

// inproc runs faultline in this process, as main does.
func inproc(t testing.TB, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var so, se bytes.Buffer
	code := NewMain(&so, &se).Run(ctx, append([]string{"faultline"}, args...))
	return outcome{code: code, stdout: so.String(), stderr: se.String()}
}

// as runs a client command against the stack with the admin token.
func (s *apiStack) as(t testing.TB, tokenFile string, cmd string, args ...string) outcome {
	t.Helper()
	return inproc(t, append([]string{cmd, "--server", s.url, "--token-file", tokenFile}, args...)...)
}

func (s *apiStack) admin(t testing.TB, cmd string, args ...string) outcome {
	t.Helper()
	return s.as(t, s.adminFile, cmd, args...)
}

func want(t testing.TB, o outcome, code int, stdoutHas ...string) {
	t.Helper()
	if o.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", o.code, code, o.stdout, o.stderr)
	}
	for _, s := range stdoutHas {
		if !strings.Contains(o.stdout, s) {
			t.Fatalf("stdout lacks %q:\n%s\nstderr:\n%s", s, o.stdout, o.stderr)
		}
	}
}

func TestTriggerWaitExitCodes(t *testing.T) {
	s := startAPIStack(t)

	// Passed: the result as 'faultline run' prints it, exit 0.
	o := s.admin(t, "trigger", "--wait", "--poll-interval", "100ms", "quick")
	want(t, o, 0, "runbook quick", "experiment pause: passed", "verdict: passed (exit 0)")
	if !strings.Contains(o.stderr, "waiting for its verdict") {
		t.Errorf("stderr: %s", o.stderr)
	}

	// JSON: the result document.
	o = s.admin(t, "trigger", "--wait", "--poll-interval", "100ms", "-o", "json", "quick")
	want(t, o, 0)
	if r := o.result(t); r.Verdict != experiments.Passed || r.Runbook != "quick" || len(r.Experiments) != 1 {
		t.Fatalf("result %+v", r)
	}

	// The steady state does not hold: not started, exit 3, and the victim was never stopped.
	s.health.Healthy.Store(false)
	o = s.admin(t, "trigger", "--wait", "--poll-interval", "100ms", "-o", "json", "quick")
	want(t, o, exitNotStarted)
	if r := o.result(t); r.Verdict != experiments.NotStarted {
		t.Fatalf("verdict %s, want not-started", r.Verdict)
	}
	s.health.Healthy.Store(true)

	// Without --wait: the run ID alone on stdout, for scripts.
	o = s.admin(t, "trigger", "quick")
	want(t, o, 0)
	id := strings.TrimSpace(o.stdout)
	if !validRunID(id) {
		t.Fatalf("stdout %q is not a run ID", o.stdout)
	}
	waitFor(t, 30*time.Second, "the run to finish", func() bool { return len(s.daemon.Active()) == 0 })
	o = s.admin(t, "history", id)
	want(t, o, 0, "run "+id, "verdict: passed")
}

func TestHaltServerStopsAWaitingTrigger(t *testing.T) {
	s := startAPIStack(t)
	done := make(chan outcome, 1)
	go func() {
		var so, se bytes.Buffer
		code := NewMain(&so, &se).Run(context.Background(), []string{"faultline", "trigger", "--server", s.url,
			"--token-file", s.adminFile, "--wait", "--poll-interval", "100ms", "long"})
		done <- outcome{code: code, stdout: so.String(), stderr: se.String()}
	}()
	waitFor(t, 20*time.Second, "the victim to be paused", func() bool { return s.victim.State() == "T" })
	active := s.daemon.Active()
	if len(active) != 1 {
		t.Fatalf("active runs: %+v", active)
	}
	id := active[0].RunID

	// status shows it; a read-only token may look but not halt.
	o := s.as(t, s.readerFile, "status")
	want(t, o, 0, "leader", "ready", "quick", "long", "ACTIVE RUNS (1)", id, "running")
	o = s.as(t, s.readerFile, "halt", "--reason", "not allowed", id)
	want(t, o, exitInvalid)
	if !strings.Contains(o.stderr, "read-only") {
		t.Errorf("read-only halt stderr: %s", o.stderr)
	}

	// No run named, one active: that one is halted; the daemon answers once it is reverted.
	o = s.admin(t, "halt", "--reason", "game day over")
	want(t, o, 0, "halted run "+id)
	if st := s.victim.State(); st != "S" && st != "R" {
		t.Errorf("victim state after halt %q, want running", st)
	}
	var w outcome
	select {
	case w = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("trigger --wait did not return after the halt")
	}
	want(t, w, exitHalted, "verdict: halted (exit 2)")

	o = s.admin(t, "history", "-o", "json", id)
	want(t, o, 0)
	var run api.RunResponse
	if err := json.Unmarshal([]byte(o.stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.State != api.RunFinished || run.Result == nil || run.Result.Halt == nil || run.Result.Halt.Source != "operator" ||
		!strings.Contains(run.Result.Halt.Reason, "game day over") || !strings.Contains(run.Result.Halt.Reason, "ci") {
		t.Fatalf("stored run %+v, halt %+v", run, run.Result.Halt)
	}
}

func TestHaltServerAllAndUnknown(t *testing.T) {
	s := startAPIStack(t)
	want(t, s.admin(t, "halt", "--all"), 0, "no active runs")
	want(t, s.admin(t, "halt"), 0, "no active runs")
	o := s.admin(t, "halt", "nosuchrun")
	want(t, o, exitInvalid)
	if !strings.Contains(o.stderr, "no active run") {
		t.Errorf("stderr: %s", o.stderr)
	}
	want(t, s.admin(t, "halt", "--all", "x"), exitInvalid)

	o = s.admin(t, "trigger", "long")
	want(t, o, 0)
	id := strings.TrimSpace(o.stdout)
	waitFor(t, 20*time.Second, "the victim to be paused", func() bool { return s.victim.State() == "T" })
	o = s.admin(t, "halt", "--all", "--reason", "kill switch drill")
	want(t, o, 0, "halted run "+id)
	if n := len(s.daemon.Active()); n != 0 {
		t.Fatalf("%d runs still active after the kill switch", n)
	}
	o = s.admin(t, "history", "--verdict", "halted")
	want(t, o, 0, id, "halted", "long")
}

func TestStatusAndHistoryOutput(t *testing.T) {
	s := startAPIStack(t)
	// The schedule loops publish their next start just after the daemon turns ready.
	var o outcome
	var st api.StatusResponse
	waitFor(t, 10*time.Second, "status to show both schedules' next start", func() bool {
		o = s.as(t, s.readerFile, "status", "-o", "json")
		want(t, o, 0)
		st = api.StatusResponse{}
		if err := json.Unmarshal([]byte(o.stdout), &st); err != nil {
			t.Fatal(err)
		}
		for _, sc := range st.Schedules {
			if sc.NextStart == nil {
				return false
			}
		}
		return len(st.Schedules) > 0
	})
	if !st.Leader || !st.Ready || st.Paused || len(st.Schedules) != 2 || len(st.Active) != 0 {
		t.Fatalf("status %+v", st)
	}
	for _, sc := range st.Schedules {
		if sc.NextStart == nil || sc.NextStart.Month() != time.January || sc.NextStart.Day() != 1 {
			t.Errorf("schedule %s next start %v, want 1 January", sc.Name, sc.NextStart)
		}
	}
	o = s.as(t, s.readerFile, "status")
	want(t, o, 0, "SCHEDULES (2)", "NEXT START", "0 0 1 1 *", "ACTIVE RUNS (0)")

	want(t, s.as(t, s.readerFile, "history"), 0, "no runs")
	var ids []string
	for range 2 {
		o := s.admin(t, "trigger", "--wait", "--poll-interval", "100ms", "-o", "json", "quick")
		want(t, o, 0)
		ids = append(ids, o.result(t).RunID)
	}
	o = s.as(t, s.readerFile, "history")
	want(t, o, 0, "RUN ID", ids[0], ids[1], "passed", "quick", "api:ci")
	if strings.Index(o.stdout, ids[1]) > strings.Index(o.stdout, ids[0]) {
		t.Errorf("history is not newest first:\n%s", o.stdout)
	}
	o = s.as(t, s.readerFile, "history", "--limit", "1", "-o", "json")
	want(t, o, 0)
	var runs api.RunsResponse
	if err := json.Unmarshal([]byte(o.stdout), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs.Finished) != 1 || runs.Finished[0].RunID != ids[1] || runs.Finished[0].Verdict != experiments.Passed {
		t.Fatalf("history --limit 1: %+v", runs)
	}
	want(t, s.as(t, s.readerFile, "history", "--verdict", "failed"), 0, "no runs")
	want(t, s.as(t, s.readerFile, "history", "--schedule", "long"), 0, "no runs")
	want(t, s.as(t, s.readerFile, "history", "--since", "1h", "--schedule", "quick"), 0, ids[0], ids[1])
	want(t, s.as(t, s.readerFile, "history", ids[0]), 0, "schedule quick · trigger api:ci", "run "+ids[0], "verdict: passed")
	// The second run was compared with the first by the daemon; its report says so.
	want(t, s.as(t, s.readerFile, "history", "--report", "markdown", ids[1]), 0, "Baseline `"+ids[0]+"`: no figure got worse")
	page := filepath.Join(t.TempDir(), "run.html")
	want(t, s.as(t, s.readerFile, "history", "--report", "html", "--report-file", page, ids[1]), 0)
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "Content-Security-Policy") || !strings.Contains(string(b), ids[1]) {
		t.Errorf("history --report html: %v", err)
	}
	want(t, s.as(t, s.readerFile, "history", "--report", "pdf", ids[1]), exitInvalid)
	want(t, s.as(t, s.readerFile, "history", "--report", "html"), exitInvalid)

	o = s.as(t, s.readerFile, "history", "--verdict", "great")
	want(t, o, exitInvalid)
	if !strings.Contains(o.stderr, "verdict") {
		t.Errorf("stderr: %s", o.stderr)
	}
	want(t, s.as(t, s.readerFile, "history", "--limit", "2", ids[0]), exitInvalid)
	o = s.as(t, s.readerFile, "history", "nosuchrun")
	want(t, o, exitInvalid)
	if !strings.Contains(o.stderr, "neither running nor in history") {
		t.Errorf("stderr: %s", o.stderr)
	}
}

func TestTriggerRefusalsAndClientErrors(t *testing.T) {
	s := startAPIStack(t)
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-token-at-all-0000"), 0o600); err != nil {
		t.Fatal(err)
	}
	serverFile := filepath.Join(dir, "server-format")
	if err := os.WriteFile(serverFile, []byte(cliAdminToken+" admin ci\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"read-only token", []string{"trigger", "--server", s.url, "--token-file", s.readerFile, "quick"}, exitInvalid, `token "dashboards" is read-only`},
		{"no token", []string{"trigger", "--server", s.url, "quick"}, exitInvalid, "wants a token: pass --token-file FILE or set FAULTLINE_TOKEN"},
		{"wrong token", []string{"status", "--server", s.url, "--token-file", wrong}, exitInvalid, "did not accept the token"},
		{"server token file", []string{"status", "--server", s.url, "--token-file", serverFile}, exitInvalid, "want the token alone"},
		{"unknown schedule", []string{"trigger", "--server", s.url, "--token-file", s.adminFile, "nightly"}, exitInvalid, `no schedule or runbook "nightly"`},
		{"no daemon", []string{"status", "--server", dead, "--token-file", s.adminFile}, exitAborted, "is the daemon running at http://" + dead},
		{"no daemon halt", []string{"halt", "--server", "http://" + dead, "--all"}, exitAborted, "is the daemon running at"},
		{"bad server", []string{"status", "--server", "ftp://x"}, exitInvalid, "want http(s)://HOST:PORT"},
		{"no server", []string{"status"}, exitInvalid, "pass --server URL or set FAULTLINE_SERVER"},
		{"bad output", []string{"status", "--server", s.url, "-o", "yaml"}, exitInvalid, "--output must be text or json"},
		{"two runbooks", []string{"trigger", "--server", s.url, "a", "b"}, exitInvalid, "exactly one"},
		{"https to http", []string{"status", "--server", strings.Replace(s.url, "http:", "https:", 1), "--token-file", s.adminFile}, exitAborted, "cannot reach the daemon"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := inproc(t, c.args...)
			if o.code != c.code || !strings.Contains(o.stderr, c.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", o.code, o.stderr, c.code, c.stderr)
			}
		})
	}

	// Paused: a trigger is refused (409), exit 4.
	_ = s.daemon.Pause(context.Background(), "test")
	o := s.admin(t, "trigger", "quick")
	if o.code != exitInvalid || !strings.Contains(o.stderr, "paused") {
		t.Fatalf("trigger while paused: exit %d, stderr %s", o.code, o.stderr)
	}
	want(t, s.as(t, s.readerFile, "status"), 0, "PAUSED")
	_ = s.daemon.Resume(context.Background(), "test")

	// The address and the token from the environment.
	t.Setenv("FAULTLINE_SERVER", strings.TrimPrefix(s.url, "http://"))
	t.Setenv("FAULTLINE_TOKEN", cliReaderToken)
	want(t, inproc(t, "status"), 0, "leader")
	// With FAULTLINE_SERVER set, halt goes to the daemon, not to local runs.
	want(t, inproc(t, "halt", "--all"), exitInvalid)
	t.Setenv("FAULTLINE_TOKEN", cliAdminToken)
	want(t, inproc(t, "halt", "--all"), 0, "no active runs")
}

// writeTestPKI writes a CA certificate and a serving pair for 127.0.0.1 signed by it.
func writeTestPKI(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	create := func(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) []byte {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := newKey()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER := create(ca, ca, &caKey.PublicKey, caKey)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey()
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "faultline daemon"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER),
		write("tls.crt", "CERTIFICATE", create(leaf, caCert, &key.PublicKey, caKey)),
		write("tls.key", "EC PRIVATE KEY", kder)
}

func TestStatusAndTriggerOverTLS(t *testing.T) {
	caFile, certFile, keyFile := writeTestPKI(t, t.TempDir())
	s := startAPIStack(t, func(c *api.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	want(t, s.admin(t, "status", "--ca-file", caFile), 0, "leader")
	want(t, s.admin(t, "trigger", "--ca-file", caFile, "--wait", "--poll-interval", "100ms", "quick"), 0, "verdict: passed")

	o := s.admin(t, "status")
	if o.code != exitAborted || !strings.Contains(o.stderr, "pass --ca-file") {
		t.Fatalf("without the CA: exit %d, stderr %s", o.code, o.stderr)
	}
	o = s.admin(t, "status", "--ca-file", keyFile)
	if o.code != exitInvalid || !strings.Contains(o.stderr, "no PEM certificates") {
		t.Fatalf("a key as CA file: exit %d, stderr %s", o.code, o.stderr)
	}
}
