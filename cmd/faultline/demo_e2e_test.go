package main

import (
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/experiments"
)

// The README's first command must work on a fresh machine without root, a cluster or Prometheus.
func TestDemoRunsAsDesigned(t *testing.T) {
	state := t.TempDir()
	out := faultline(t, state, "demo", "--worker-duration", "1s", "--output", "json")
	if out.code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	r := out.result(t)
	if len(r.Experiments) != 2 || r.Experiments[0].Verdict != experiments.Passed || r.Experiments[1].Verdict != experiments.Halted {
		t.Fatalf("demo experiments: %+v", r.Experiments)
	}
	if r.Halt == nil || r.Halt.Guardrail != "checkout-slo" || r.Halt.LastRevertedAt == nil {
		t.Fatalf("demo halt: %+v", r.Halt)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("demo left %d ledger entries open", n)
	}
	text := faultline(t, state, "demo", "--print-runbook")
	if text.code != 0 || !strings.Contains(text.stdout, "kind: Runbook") {
		t.Fatalf("--print-runbook: exit %d\n%s", text.code, text.stdout)
	}
}
