package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/experiments"
)

func TestJUnitFieldByField(t *testing.T) {
	var buf bytes.Buffer
	if err := JUnit(&buf, haltedResult()); err != nil {
		t.Fatal(err)
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("parse back: %v\n%s", err, buf.String())
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d suites, want 1", len(doc.Suites))
	}
	s := doc.Suites[0]
	props := map[string]string{}
	for _, p := range s.Properties {
		props[p.Name] = p.Value
	}
	for k, want := range map[string]string{"runId": "f00dcafe01", "environment": "golden-eu1", "runbookDigest": "sha256:" + strings.Repeat("0", 63) + "7", "verdict": "halted", "clusterId": "0b6c6d0e-0000-4000-8000-000000000001"} {
		if props[k] != want {
			t.Errorf("property %s = %q, want %q", k, props[k], want)
		}
	}
	// 2 experiments + 2 objectives each + 1 not reached.
	if s.Tests != 7 || len(s.Cases) != 7 {
		t.Fatalf("tests=%d cases=%d, want 7:\n%s", s.Tests, len(s.Cases), buf.String())
	}
	if s.Failures != 2 || s.Skipped != 1 || s.Errors != 0 {
		t.Errorf("failures=%d skipped=%d errors=%d, want 2 1 0", s.Failures, s.Skipped, s.Errors)
	}
	byName := map[string]JUnitCase{}
	for _, c := range s.Cases {
		byName[c.Name] = c
	}
	if c := byName["web-pod-kill"]; c.Failure != nil || c.Error != nil || c.Skipped != nil || c.Classname != "faultline.shop-gameday" || c.Time != "60.000" {
		t.Errorf("passed experiment case: %+v", c)
	}
	if c := byName["web-pod-kill-again"]; c.Failure == nil || c.Failure.Type != "halted" || !strings.Contains(c.Failure.Message, "checkout-latency breached") {
		t.Errorf("halted experiment case: %+v", c)
	}
	obj := byName["web-pod-kill-again / breakers.closedWithin [breakers/haproxy be_app/srv2/timeToClose]"]
	if obj.Failure == nil || obj.Failure.Message != "breaker be_app/srv2 did not close within 30s of the last revert" || obj.Failure.Type != "objective" {
		t.Errorf("failing objective case: %+v", obj)
	}
	if c := byName["web-pod-kill / workloads.readyWithin [workloads/deployment shop/web/timeToReady]"]; c.Failure != nil || c.SystemOut != "value 8.5s, limit 20s" {
		t.Errorf("passing objective case: %+v", c)
	}
	if c := byName["db-partition"]; c.Skipped == nil || !strings.Contains(c.Skipped.Message, "not reached") {
		t.Errorf("not reached case: %+v", c)
	}
	if !strings.Contains(s.SystemOut, "run f00dcafe01 of runbook shop-gameday on golden-eu1: halted (exit 2)") {
		t.Errorf("system-out lacks the summary:\n%s", s.SystemOut)
	}
	if s.Timestamp != "2026-12-06T10:00:00" || s.Hostname != "ci-runner-3" {
		t.Errorf("timestamp %q hostname %q", s.Timestamp, s.Hostname)
	}
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := Markdown(&buf, haltedResult()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"### 🛑 faultline: `shop-gameday` halted on `golden-eu1`",
		"| web-pod-kill-again | 🛑 halted | guardrail checkout-latency breached: latency 0.612s &gt; 0.250s |",
		"| `breakers/haproxy be_app/srv2/timeToClose` | not reached: the breaker never closed | ❌ breakers.closedWithin ≤ 30s: breaker be_app/srv2 did not close within 30s of the last revert |",
		"| `engine/run/haltLatency` | 180ms |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestFiguresDerived(t *testing.T) {
	res := haltedResult()
	got := map[string]experiments.Figure{}
	for _, f := range Figures(res, &res.Experiments[1]) {
		got[f.Key] = f
	}
	check := func(key string, want float64) {
		t.Helper()
		f, ok := got[key]
		if !ok || f.Value == nil {
			t.Errorf("%s: missing or unset: %+v", key, f)
			return
		}
		if d := *f.Value - want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", key, *f.Value, want)
		}
	}
	check("engine/run/haltLatency", 0.18)
	check("engine/experiment/timeToRecover", 1.82)
	// The breach ends at +94s (start 70s + 24s); the last revert is at +93.18s.
	check("guardrails/checkout-latency/timeToRecover", 0.82)
	check("engine/experiment/timeToDetect", 12)
}
