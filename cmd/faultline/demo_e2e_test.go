package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// The README's first command must work on a fresh machine without root, a cluster or Prometheus,
// and show the mission: an autoscaler reacting, a breaker opening and closing, a halt.
func TestDemoRunsAsDesigned(t *testing.T) {
	state := t.TempDir()
	out := faultline(t, state, "demo", "--output", "json")
	if out.code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	r := out.result(t)
	want := []experiments.Verdict{experiments.Passed, experiments.Passed, experiments.Passed, experiments.Halted}
	if len(r.Experiments) != len(want) {
		t.Fatalf("demo ran %d experiments: %+v", len(r.Experiments), r.Experiments)
	}
	for i, x := range r.Experiments {
		if x.Verdict != want[i] {
			t.Fatalf("experiment %s: %s (%s), want %s", x.Name, x.Verdict, x.Reason, want[i])
		}
	}
	fig := func(x experiments.ExperimentResult, recorder, metric, subject string) *experiments.Figure {
		for _, rec := range x.Recordings {
			if rec.Recorder != recorder {
				continue
			}
			for i, f := range rec.Figures {
				if f.Metric == metric && strings.Contains(f.Subject, subject) {
					return &rec.Figures[i]
				}
			}
		}
		return nil
	}
	// The autoscaler recorder saw a scale-out and the way back.
	if f := fig(r.Experiments[0], "autoscalers", "timeToScaleOut", "workers"); f == nil || f.Value == nil {
		t.Fatalf("no scale-out recorded for the worker pool: %+v", f)
	}
	if f := fig(r.Experiments[0], "autoscalers", "timeToBaseline", "workers"); f == nil || f.Value == nil {
		t.Fatalf("the worker pool was not recorded back at its baseline: %+v", f)
	}
	// The breaker recorder saw shard 2's breaker open and close, and not the others'.
	if f := fig(r.Experiments[1], "breakers", "opens", "shard-2"); f == nil || f.Value == nil || *f.Value < 1 {
		t.Fatalf("shard-2's breaker was not recorded open: %+v", f)
	}
	if f := fig(r.Experiments[1], "breakers", "timeToClose", "shard-2"); f == nil || f.Value == nil {
		t.Fatalf("shard-2's breaker was not recorded closed again: %+v", f)
	}
	if f := fig(r.Experiments[1], "breakers", "opens", "shard-1"); f == nil || f.Value == nil || *f.Value != 0 {
		t.Fatalf("shard-1's breaker: %+v, want recorded and never opened", f)
	}
	// Mild latency on shard 3 opened no breaker, and the objective saying so was judged.
	if f := fig(r.Experiments[2], "breakers", "opens", "shard-3"); f == nil || f.Value == nil || *f.Value != 0 {
		t.Fatalf("shard-3's breaker under mild latency: %+v, want recorded and never opened", f)
	}
	if len(r.Experiments[2].Objectives) == 0 {
		t.Fatal("the maxOpens objective of the mild-latency experiment was not judged")
	}
	if r.Halt == nil || r.Halt.Guardrail != "client-p95" || r.Halt.LastRevertedAt == nil {
		t.Fatalf("demo halt: %+v", r.Halt)
	}
	if r.Load == nil || r.Load.Requests == 0 || r.Load.RateShortfall != "" {
		t.Fatalf("demo load: %+v", r.Load)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("demo left %d ledger entries open", n)
	}
	if b, err := os.ReadFile(filepath.Join(state, "demo-report.html")); err != nil || !strings.Contains(string(b), "<svg") {
		t.Fatalf("demo report: %v (%d bytes)", err, len(b))
	}
	// Nothing left behind: no child process, and every address the demo used refuses connections.
	if pids := demoChildren(t); len(pids) != 0 {
		t.Fatalf("demo children still running: %v", pids)
	}
	addrs := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(out.stdout, -1)
	if len(addrs) < 4 {
		t.Fatalf("found %d addresses in the result, want the proxies, shards and proxy server", len(addrs))
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo", a)
		}
	}
	text := faultline(t, state, "demo", "--print-runbook")
	if text.code != 0 || !strings.Contains(text.stdout, "kind: Runbook") || !strings.Contains(text.stdout, "{{.GatewayURL}}") {
		t.Fatalf("--print-runbook: exit %d\n%s", text.code, text.stdout)
	}
}

// demoChildren lists processes running this test's faultline binary as a demo child.
func demoChildren(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[0] == binPath && (args[1] == "demo-sample" || strings.Contains(string(b), "proxy\x00serve")) {
			out = append(out, d)
		}
	}
	return out
}
