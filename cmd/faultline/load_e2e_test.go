package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// slowServer is a real HTTP server on loopback whose latency the test sets.
type slowServer struct {
	URL      string
	delay    atomic.Int64
	requests atomic.Int64
}

func startSlowServer(t *testing.T) *slowServer {
	t.Helper()
	s := &slowServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = w.Write([]byte("ok"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.URL = "http://" + ln.Addr().String() + "/"
	return s
}

const loadRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-load}
environment: {name: test, type: local}
load:
  targets: [{url: "{{.URL}}"}]
  rate: {{.Rate}}
  timeout: 2s
  maxDuration: 2m
guardrails:
  - name: client-p95
    interval: 250ms
    for: 2
    load: {p95: {max: 100ms}, errorRatio: {max: 0.05}, window: 1s}
experiments:
  - name: pause
    duration: 60s
    faults:
      - processPause: {pidFile: "{{.PidFile}}"}
    recovery: {within: 5s}
`

type loadData struct {
	URL, PidFile string
	Rate         int
}

// The client-side p95 guardrail holds while the server is fast, and halts the run (exit 2) once
// the server slows; the result carries the load's figures.
func TestLoadGuardrailHaltsWhenTheServerSlows(t *testing.T) {
	v := startVictims(t, 1)[0]
	srv := startSlowServer(t)
	rb := runbook(t, loadRunbook, loadData{URL: srv.URL, PidFile: v.PidFile, Rate: 50})
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", rb)
	run.waitFor(t, 20*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
	// Two seconds of fast traffic under the fault: the guardrail must not trip on it.
	before := srv.requests.Load()
	run.waitFor(t, 20*time.Second, "100 requests under the fault", func() bool { return srv.requests.Load() >= before+100 })
	slowed := time.Now()
	srv.delay.Store(int64(300 * time.Millisecond))
	out := run.wait(t, 30*time.Second)
	if out.code != 2 {
		t.Fatalf("exit %d, want 2 (halted)\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	r := out.result(t)
	if r.Halt == nil || r.Halt.Guardrail != "client-p95" || r.Halt.At.Before(slowed) {
		t.Fatalf("halt = %+v (server slowed at %s); want client-p95, after the slowdown", r.Halt, slowed.Format(time.RFC3339Nano))
	}
	if r.Load == nil || r.Load.Requests < 100 || len(r.Load.Series) == 0 {
		t.Fatalf("run load summary = %+v", r.Load)
	}
	x := r.Experiments[0]
	if x.Load == nil || len(x.Load.Series) == 0 {
		t.Fatalf("experiment load = %+v, want its span of the series", x.Load)
	}
	var sawSlow bool
	for _, p := range x.Load.Series {
		sawSlow = sawSlow || p.P95 >= 0.3
	}
	if !sawSlow {
		t.Fatalf("no second of the experiment's series shows the 300ms p95: %+v", x.Load.Series)
	}
	if st := v.State(); st == "T" {
		t.Fatal("victim still stopped after the halt")
	}
}

// An unreachable load target before start is a steady state that does not hold: exit 3, and
// nothing is injected.
func TestLoadUnreachableTargetIsNotStarted(t *testing.T) {
	v := startVictims(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close()
	state := t.TempDir()
	out := faultline(t, state, "run", "--output", "json", runbook(t, loadRunbook, loadData{URL: url, PidFile: v.PidFile, Rate: 10}))
	if out.code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	if r := out.result(t); r.Verdict != experiments.NotStarted || len(r.Experiments) != 0 {
		t.Fatalf("verdict %s with %d experiments; reason %q", r.Verdict, len(r.Experiments), r.Reason)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries after a run that never started", n)
	}
}

// The load lives in faultline's process: SIGKILL it and the traffic stops with it.
func TestSIGKILLLeavesNoLoadRunning(t *testing.T) {
	v := startVictims(t, 1)[0]
	srv := startSlowServer(t)
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json",
		runbook(t, loadRunbook, loadData{URL: srv.URL, PidFile: v.PidFile, Rate: 100}))
	run.waitFor(t, 20*time.Second, "the load to reach the server", func() bool { return srv.requests.Load() > 100 })
	if err := run.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-run.done
	// Requests already in the server's socket buffers may still be read; give them a moment,
	// then nothing new may arrive for a whole second (at 100/s that would be 100 requests).
	settle := time.NewTimer(200 * time.Millisecond)
	<-settle.C
	n := srv.requests.Load()
	quiet := time.NewTimer(time.Second)
	<-quiet.C
	if m := srv.requests.Load(); m != n {
		t.Fatalf("server saw %d more requests in the second after faultline was killed", m-n)
	}
	// The paused victim stays paused (a crash leaves faults for recover); resume it for cleanup.
	_ = syscall.Kill(v.PID(), syscall.SIGCONT)
}

// During a run the load's figures are on faultline's own /metrics, for the dashboards that watch a
// game day.
func TestLoadFiguresOnMetricsDuringARun(t *testing.T) {
	v := startVictims(t, 1)[0]
	srv := startSlowServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", "--metrics-addr", addr,
		runbook(t, loadRunbook, loadData{URL: srv.URL, PidFile: v.PidFile, Rate: 50}))
	var body string
	run.waitFor(t, 30*time.Second, "the load's figures on /metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, `faultline_load_requests_total{code="200",load="e2e-load",result="ok"}`) &&
			strings.Contains(body, `faultline_load_rate_requested{load="e2e-load"} 50`) &&
			strings.Contains(body, `faultline_load_latency_seconds{load="e2e-load",quantile="0.95"}`)
	})
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if out := run.wait(t, 30*time.Second); out.code != 2 {
		t.Fatalf("exit %d after SIGINT, want 2 (halted)\n%s", out.code, out.stderr)
	}
}
