package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

// promRunbook pauses one victim while a Prometheus guardrail watches test_value{series="errors"}:
// healthy while it is below 1. last_over_time keeps the latest value visible through a scrape that
// failed on a loaded machine (a failed scrape marks the series stale at once, which would read as
// "no series"); it changes nothing about how soon a new value is seen.
const promRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-prometheus}
environment: {name: test, type: local}
guardrails:
  - name: errors
    interval: 250ms
    for: {{.For}}
    onError: {{.OnError}}
    prometheus:
      address: {{.URL}}
      query: 'max(last_over_time(test_value{series="errors"}[2s]))'
      op: "<"
      threshold: 1
      timeout: 2s
{{.Conn}}experiments:
  - name: pause
    duration: {{.Duration}}
    faults:
      - name: freeze
        processPause: {pidFile: "{{.PidFile}}"}
    recovery: {within: {{.Recovery}}}
`

type promData struct {
	URL, PidFile, Duration, For, OnError, Recovery, Conn string
}

func newPromData(s *prom.Server, v *victim) promData {
	return promData{URL: s.URL, PidFile: v.PidFile, Duration: "60s", For: "1", OnError: "fail", Recovery: "5s"}
}

// setErrors sets the watched value and waits until Prometheus has scraped it; it returns when the
// value was set.
func setErrors(t testing.TB, s *prom.Server, v float64) time.Time {
	t.Helper()
	at := time.Now()
	s.Target.Value.WithLabelValues("errors").Set(v)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.WaitIngested(ctx, at); err != nil {
		t.Fatal(err)
	}
	return at
}

// waitStopped waits until the run has paused the victim; a run that ends first fails the test with
// its output.
func waitStopped(t testing.TB, run *started, v *victim) {
	t.Helper()
	waitFor(t, 20*time.Second, "the victim to be stopped", func() bool {
		select {
		case <-run.done:
			out := run.wait(t, time.Second)
			t.Fatalf("faultline exited (code %d) before pausing the victim\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
		default:
		}
		return v.State() == "T"
	})
}

func running(t testing.TB, v *victim) bool {
	st := v.State()
	return st == "S" || st == "R"
}

// During injection the error value crosses the threshold: the run halts (exit 2), the paused
// process runs again, and the result names the guardrail, the value and the series.
func TestPrometheusBreachDuringInjectionHalts(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 0)
	v := startVictims(t, 1)[0]
	state := t.TempDir()
	d := newPromData(s, v)
	d.Recovery = "1s" // the value stays bad: the after phase gives up after 1s (the verdict stays halted)
	run := startFaultline(t, nil, state, "run", "--output", "json", runbook(t, promRunbook, d))

	waitStopped(t, run, v)
	flipped := time.Now()
	s.Target.Value.WithLabelValues("errors").Set(7)
	out := run.wait(t, 30*time.Second)

	if out.code != 2 {
		t.Fatalf("exit code = %d, want 2 (halted)\nstderr:\n%s", out.code, out.stderr)
	}
	if !running(t, v) {
		t.Fatalf("victim state after halt = %q, want running", v.State())
	}
	r := out.result(t)
	if r.Halt == nil || r.Halt.Guardrail != "errors" || r.Halt.Value == nil || *r.Halt.Value != 7 {
		t.Fatalf("halt = %+v, want guardrail errors at value 7", r.Halt)
	}
	// A 100ms scrape, a 250ms interval and the revert; generous for a loaded machine.
	lat := r.Halt.LastRevertedAt.Sub(flipped)
	t.Logf("flip → breach %s → last revert %s", r.Halt.At.Sub(flipped), lat)
	if lat > 1500*time.Millisecond {
		t.Fatalf("flip to last revert took %s", lat)
	}
	g := r.Experiments[0].Guardrails[0]
	if !g.Breached || g.Kind != "prometheus" || !strings.Contains(g.Describe, `max(last_over_time(test_value{series="errors"}[2s])) < 1 @ `+s.URL) {
		t.Fatalf("guardrail result = %+v", g)
	}
	phases := map[string]int{}
	var last experiments.PhasedSample
	for _, o := range g.Observations {
		phases[o.Phase]++
		if o.Phase == "during" {
			last = o
		}
	}
	if phases["steady-state"] != 1 || phases["during"] == 0 {
		t.Fatalf("observations by phase = %v", phases)
	}
	if last.Pass || last.Value == nil || *last.Value != 7 || !strings.Contains(last.Detail, "want < 1") {
		t.Fatalf("last observation during the window = %+v", last)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries still open", n)
	}
}

// The guardrail does not hold before injection: exit 3, and the process never entered state T.
func TestPrometheusSteadyStateBreachInjectsNothing(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 3)
	v := startVictims(t, 1)[0]
	state := t.TempDir()

	stop := make(chan struct{})
	stopped := make(chan bool, 1)
	go func() {
		seen := false
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				stopped <- seen
				return
			case <-tick.C:
				seen = seen || v.State() == "T"
			}
		}
	}()
	out := faultline(t, state, "run", "--output", "json", runbook(t, promRunbook, newPromData(s, v)))
	close(stop)

	if out.code != 3 {
		t.Fatalf("exit code = %d, want 3 (not started)\nstderr:\n%s", out.code, out.stderr)
	}
	if <-stopped {
		t.Fatal("the victim was stopped although the steady state did not hold")
	}
	r := out.result(t)
	if r.Experiments[0].Faults[0].RecordedAt != nil {
		t.Fatalf("a fault was recorded: %+v", r.Experiments[0].Faults[0])
	}
	if !strings.Contains(r.Reason, "steady state did not hold") || !strings.Contains(r.Reason, "errors: 3") {
		t.Fatalf("reason = %q, want it to name the guardrail and the value", r.Reason)
	}
	if entries, err := mustLedger(t, state).Entries(context.Background(), nil); err != nil || len(entries) != 0 {
		t.Fatalf("ledger has %d entries (err %v), want none", len(entries), err)
	}
}

// Prometheus is SIGKILLed mid-experiment: the guardrail cannot see its source and fails closed,
// halting within interval × for plus a margin.
func TestPrometheusKilledMidExperimentFailsClosed(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 0)
	v := startVictims(t, 1)[0]
	d := newPromData(s, v)
	d.For, d.Recovery = "2", "1s"
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, promRunbook, d))

	waitStopped(t, run, v)
	killed := time.Now()
	s.Kill()
	out := run.wait(t, 30*time.Second)

	if out.code != 2 {
		t.Fatalf("exit code = %d, want 2 (halted)\nstderr:\n%s", out.code, out.stderr)
	}
	if !running(t, v) {
		t.Fatalf("victim state = %q, want running", v.State())
	}
	r := out.result(t)
	// Two failed evaluations 250ms apart; the first comes at most one interval after the kill.
	limit := 2*250*time.Millisecond + 500*time.Millisecond
	if r.Halt != nil && r.Halt.LastRevertedAt != nil {
		t.Logf("kill → breach %s → last revert %s", r.Halt.At.Sub(killed), r.Halt.LastRevertedAt.Sub(killed))
	}
	if r.Halt == nil || r.Halt.Guardrail != "errors" || r.Halt.At.Sub(killed) > limit || r.Halt.LastRevertedAt.Sub(killed) > limit+200*time.Millisecond {
		t.Fatalf("halt = %+v, %s after the kill; want a guardrail halt within %s", r.Halt, r.Halt.At.Sub(killed), limit)
	}
	if !strings.Contains(r.Halt.Detail, "could not evaluate") {
		t.Fatalf("halt detail = %q, want it to say the source could not be seen", r.Halt.Detail)
	}
	g := r.Experiments[0].Guardrails[0]
	if !g.Blind || !g.Breached {
		t.Fatalf("guardrail result: blind=%v breached=%v", g.Blind, g.Breached)
	}
}

// With onError: ignore a dead Prometheus does not stop the game day; the gap is in the result.
func TestPrometheusOnErrorIgnoreRecordsGap(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 0)
	v := startVictims(t, 1)[0]
	d := newPromData(s, v)
	d.OnError, d.Duration, d.Recovery = "ignore", "3s", "2s"
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, promRunbook, d))

	waitStopped(t, run, v)
	s.Kill()
	out := run.wait(t, 30*time.Second)

	if out.code != 0 {
		t.Fatalf("exit code = %d, want 0 (passed, the gap ignored)\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	if !running(t, v) {
		t.Fatalf("victim state = %q, want running", v.State())
	}
	r := out.result(t)
	x := r.Experiments[0]
	f := x.Faults[0]
	if f.RevertedAt.Sub(*f.AppliedAt) < 3*time.Second {
		t.Fatalf("fault held %s, want the full 3s window", f.RevertedAt.Sub(*f.AppliedAt))
	}
	g := x.Guardrails[0]
	gaps := 0
	for _, o := range g.Observations {
		if o.Error != "" {
			if !o.Ignored || !o.Pass {
				t.Fatalf("an error observation was not ignored: %+v", o)
			}
			gaps++
		}
	}
	if !g.Blind || g.Breached || gaps < 5 {
		t.Fatalf("guardrail: blind=%v breached=%v, %d ignored errors; want blind, not breached, ≥5 gaps", g.Blind, g.Breached, gaps)
	}
}

// for: 3 — the bad value is visible for one evaluation only (held until an evaluation has seen it,
// then restored before the next), and the run is not halted.
func TestPrometheusForThreeIgnoresOneBlip(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 0)
	v := startVictims(t, 1)[0]
	d := newPromData(s, v)
	d.For, d.Duration = "3", "4s"
	metricsAddr, err := prom.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", "--metrics-addr", metricsAddr, runbook(t, promRunbook, d))

	waitStopped(t, run, v)
	fails := func() float64 { return evaluations(t, metricsAddr, "errors", "fail") }
	before := fails()
	setErrors(t, s, 5) // held until Prometheus has scraped it …
	waitFor(t, 5*time.Second, "an evaluation to see the blip", func() bool { return fails() > before })
	setErrors(t, s, 0) // … and until one evaluation has seen it; restored within one scrape
	out := run.wait(t, 30*time.Second)

	if out.code != 0 {
		t.Fatalf("exit code = %d, want 0 (a single blip does not breach for: 3)\nstderr:\n%s", out.code, out.stderr)
	}
	g := out.result(t).Experiments[0].Guardrails[0]
	failing := 0
	for _, o := range g.Observations {
		if !o.Pass {
			failing++
		}
	}
	if g.Breached || failing < 1 || failing > 2 {
		t.Fatalf("breached=%v with %d failing observations; want not breached, the blip seen once (at most twice)", g.Breached, failing)
	}
}

// evaluations reads faultline_guardrail_evaluations_total{guardrail,result} from a running
// faultline's --metrics-addr.
func evaluations(t testing.TB, addr, guardrail, result string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0 // not listening yet
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse faultline metrics: %v", err)
	}
	for _, m := range fams["faultline_guardrail_evaluations_total"].GetMetric() {
		var g, r string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "guardrail":
				g = l.GetValue()
			case "result":
				r = l.GetValue()
			}
		}
		if g == guardrail && r == result {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// After revert the guardrail must hold again within the recovery window: it does when the value
// comes back (exit 0, time to recover recorded), and it does not when the value stays bad (exit 1).
func TestPrometheusRecoveryWindow(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	for _, recovers := range []bool{true, false} {
		name := map[bool]string{true: "recovers", false: "does not recover"}[recovers]
		t.Run(name, func(t *testing.T) {
			setErrors(t, s, 0)
			v := startVictims(t, 1)[0]
			d := newPromData(s, v)
			// A slow error budget (for: 30s) tolerates the fault window; the recovery objective does not.
			d.For, d.Duration, d.Recovery = "30s", "2s", "1500ms"
			run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, promRunbook, d))
			waitStopped(t, run, v)
			setErrors(t, s, 2)
			if recovers {
				waitFor(t, 15*time.Second, "the victim to be resumed", func() bool { return running(t, v) })
				s.Target.Value.WithLabelValues("errors").Set(0)
			}
			out := run.wait(t, 30*time.Second)
			r := out.result(t)
			rec := r.Experiments[0].Recovery
			if recovers {
				if out.code != 0 || rec == nil || !rec.Recovered || rec.TimeToRecover == "" {
					t.Fatalf("exit %d, recovery %+v; want 0 and recovered\nstderr:\n%s", out.code, rec, out.stderr)
				}
				return
			}
			if out.code != 1 || rec == nil || rec.Recovered {
				t.Fatalf("exit %d, recovery %+v; want 1 (failed) and not recovered\nstderr:\n%s", out.code, rec, out.stderr)
			}
			if !strings.Contains(r.Reason, "did not hold again within 1.5s") || !strings.Contains(r.Reason, "errors: 2") {
				t.Fatalf("reason = %q", r.Reason)
			}
			after := 0
			for _, o := range r.Experiments[0].Guardrails[0].Observations {
				if o.Phase == "after" && !o.Pass {
					after++
				}
			}
			if after == 0 {
				t.Fatal("no failing observation recorded in the after phase")
			}
		})
	}
}

// TLS and a bearer token through a real TLS reverse proxy that also requires a tenant header.
func TestPrometheusTLSBearerThroughProxy(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setErrors(t, s, 0)
	p := prom.StartProxy(t, s, "game-day-token", map[string]string{"X-Scope-OrgID": "staging"})
	v := startVictims(t, 1)[0]
	d := newPromData(s, v)
	d.URL, d.Recovery = p.URL, "1s"
	d.Conn = "      bearerTokenFile: " + p.TokenFile + "\n      headers: {X-Scope-OrgID: staging}\n      tls: {caFile: " + p.CA.File + "}\n"
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, promRunbook, d))

	waitStopped(t, run, v)
	s.Target.Value.WithLabelValues("errors").Set(4)
	out := run.wait(t, 30*time.Second)
	if out.code != 2 {
		t.Fatalf("exit code = %d, want 2\nstderr:\n%s", out.code, out.stderr)
	}
	r := out.result(t)
	if r.Halt == nil || r.Halt.Value == nil || *r.Halt.Value != 4 || r.Experiments[0].Guardrails[0].Blind {
		t.Fatalf("halt = %+v; want a breach at 4 seen through the proxy, never blind", r.Halt)
	}
	if p.Accepted.Load() < 2 || p.Rejected.Load() != 0 {
		t.Fatalf("proxy accepted %d, rejected %d", p.Accepted.Load(), p.Rejected.Load())
	}
	if !running(t, v) {
		t.Fatalf("victim state = %q, want running", v.State())
	}
}

// A real Prometheus scrapes `faultline run --metrics-addr` while it runs: the series exist, with
// the right types in the server's metadata.
func TestFaultlineMetricsScrapedByPrometheus(t *testing.T) {
	t.Parallel()
	addr, err := prom.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := prom.Start(t, prom.WithJob("faultline", addr))
	setErrors(t, s, 0)
	v := startVictims(t, 1)[0]
	d := newPromData(s, v)
	d.Duration, d.For = "8s", "3" // this test is about the metrics: a slow query on a loaded machine must not halt it
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", "--metrics-addr", addr, runbook(t, promRunbook, d))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, q := range []string{
		`faultline_guardrail_evaluations_total{job="faultline",guardrail="errors",kind="prometheus",result="pass"} > 0`,
		`faultline_active_faults{job="faultline",kind="process-pause"} == 1`,
		`faultline_faults_applied_total{job="faultline",kind="process-pause"} == 1`,
		`faultline_guardrail_failing{job="faultline",guardrail="errors"} == 0`,
		`time() - faultline_guardrail_last_evaluation_timestamp_seconds{job="faultline",guardrail="errors"} < 5`,
		`faultline_guardrail_evaluation_duration_seconds_count{job="faultline",kind="prometheus"} > 0`,
		`faultline_experiments_total{job="faultline",verdict="passed"} == 0`,
	} {
		if _, err := s.WaitVector(ctx, q, func(v model.Vector) bool { return len(v) > 0 }); err != nil {
			t.Fatalf("%v\nfaultline stderr:\n%s", err, run.stderr)
		}
	}
	want := map[string]promv1.MetricType{
		"faultline_experiments_total":                           promv1.MetricTypeCounter,
		"faultline_active_faults":                               promv1.MetricTypeGauge,
		"faultline_faults_applied_total":                        promv1.MetricTypeCounter,
		"faultline_guardrail_evaluations_total":                 promv1.MetricTypeCounter,
		"faultline_guardrail_evaluation_duration_seconds":       promv1.MetricTypeHistogram,
		"faultline_guardrail_last_evaluation_timestamp_seconds": promv1.MetricTypeGauge,
		"faultline_guardrail_failing":                           promv1.MetricTypeGauge,
		"faultline_halt_latency_seconds":                        promv1.MetricTypeHistogram,
		"faultline_ledger_entries_outstanding":                  promv1.MetricTypeGauge,
	}
	var md map[string][]promv1.Metadata
	waitFor(t, 10*time.Second, "the metadata of faultline's metrics", func() bool {
		md, err = s.API().Metadata(ctx, "", "")
		if err != nil {
			return false
		}
		for name := range want {
			if len(md[name]) == 0 {
				return false
			}
		}
		return true
	})
	for name, typ := range want {
		if got := md[name][0].Type; got != typ {
			t.Errorf("%s has type %s in Prometheus, want %s", name, got, typ)
		}
	}
	if out := run.wait(t, 30*time.Second); out.code != 0 {
		t.Fatalf("exit code = %d, want 0\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
}
