package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/chromium"
	"github.com/faultline-dev/faultline/report"
)

// reportRunbook is pauseRunbook with a latency limit (so the report draws a threshold) and a
// recovery window long enough for the outage the test stages after the halt.
const reportRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-report}
environment: {name: test, type: local}
guardrails:
  - name: api
    interval: 250ms
    http: {url: "{{.URL}}", timeout: 1s, maxLatency: 800ms}
experiments:
  - name: pause
    duration: {{.Duration}}
    faults:
      - name: freeze
        processPause: {pidFile: "{{.PidFile}}"}
    recovery: {within: 20s}
  - name: pause-again
    duration: 1s
    faults:
      - name: freeze-again
        processPause: {pidFile: "{{.PidFile}}"}
baseline:
  tolerance: 20%
`

func readResult(t *testing.T, path string) *experiments.Result {
	t.Helper()
	r, err := experiments.ReadResultFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A real halted run and a real passed run, with every report form and a baseline comparison.
func TestReportsFromRealRuns(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	dir := t.TempDir()
	state := t.TempDir()
	rb := runbook(t, reportRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
	summary := filepath.Join(dir, "step-summary.md")
	if err := os.WriteFile(summary, []byte("earlier step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	halted := filepath.Join(dir, "halted.json")
	run := startFaultline(t, []string{"GITHUB_STEP_SUMMARY=" + summary}, state, "run", "--result-file", halted,
		"--report", "html="+filepath.Join(dir, "halted.html"), "--report", "junit="+filepath.Join(dir, "halted.xml"), "--report", "markdown="+filepath.Join(dir, "halted.md"), rb)

	// The server goes down while the victim is paused (a halt), and comes back 2s after the
	// revert: the outage is the scenario, and gives the run a real time to recover.
	waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
	h.Healthy.Store(false)
	waitFor(t, 10*time.Second, "the victim to run again", func() bool { st := v.State(); return st == "S" || st == "R" })
	outage := time.NewTimer(2 * time.Second)
	<-outage.C
	h.Healthy.Store(true)
	out := run.wait(t, 60*time.Second)
	if out.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", out.code, out.stderr)
	}

	hr := readResult(t, halted)
	if hr.SchemaVersion != experiments.ResultSchemaVersion || !strings.HasPrefix(hr.RunbookDigest, "sha256:") || hr.FaultlineVersion != "dev" || hr.Identity == nil || hr.Identity.Host == "" || hr.Identity.Type != "local" {
		t.Errorf("document header: version %d digest %q faultline %q identity %+v", hr.SchemaVersion, hr.RunbookDigest, hr.FaultlineVersion, hr.Identity)
	}
	if g := hr.Experiments[0].Guardrails[0]; g.Threshold == nil || *g.Threshold != 0.8 || g.ThresholdOp != "<=" {
		t.Errorf("guardrail threshold %v %q, want <= 0.8", g.Threshold, g.ThresholdOp)
	}
	figs := map[string]*float64{}
	for _, f := range report.Figures(hr, &hr.Experiments[0]) {
		figs[f.Key] = f.Value
	}
	for _, k := range []string{"engine/experiment/timeToRecover", "guardrails/api/timeToRecover", "engine/run/haltLatency"} {
		if figs[k] == nil {
			t.Fatalf("halted run lacks figure %s: %v", k, figs)
		}
	}
	if ttr := *figs["engine/experiment/timeToRecover"]; ttr < 1.5 {
		t.Fatalf("time to recover %.2fs, want about 2s (the staged outage)", ttr)
	}

	// JUnit: parsed back; the halted experiment fails with the halt's reason, the second is skipped.
	var doc report.JUnitSuites
	b, _ := os.ReadFile(filepath.Join(dir, "halted.xml"))
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit: %v", err)
	}
	s := doc.Suites[0]
	if s.Tests != 2 || s.Failures != 1 || s.Skipped != 1 || s.Cases[0].Failure == nil || !strings.Contains(s.Cases[0].Failure.Message, `guardrail "api" breached`) || s.Cases[1].Name != "pause-again" {
		t.Errorf("junit suite: %+v", s)
	}
	// The step summary got the Markdown appended, after what was there.
	md, _ := os.ReadFile(summary)
	if !strings.HasPrefix(string(md), "earlier step\n### 🛑 faultline: `e2e-report` halted on `test`") {
		t.Errorf("GITHUB_STEP_SUMMARY:\n%s", md)
	}

	// A doctored baseline: recovery was 4x faster, and it has a figure this run lacks.
	var base map[string]any
	raw, _ := os.ReadFile(halted)
	if err := json.Unmarshal(raw, &base); err != nil {
		t.Fatal(err)
	}
	x0 := base["experiments"].([]any)[0].(map[string]any)
	rec := x0["recovery"].(map[string]any)
	d, _ := time.ParseDuration(rec["timeToRecover"].(string))
	rec["timeToRecover"] = (d / 4).String()
	x0["figures"] = append(asSlice(x0["figures"]), map[string]any{"key": "breakers/haproxy be/srv/timeToClose", "subject": "breaker be/srv", "metric": "timeToClose", "unit": "s", "value": 3.0})
	doctored := filepath.Join(dir, "doctored.json")
	writeJSON(t, doctored, base)
	cmp := faultline(t, state, "compare", "--output", "json", doctored, halted)
	if cmp.code != 1 {
		t.Fatalf("compare exit %d, want 1\n%s%s", cmp.code, cmp.stdout, cmp.stderr)
	}
	var c experiments.BaselineComparison
	if err := json.Unmarshal([]byte(cmp.stdout), &c); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range c.Failures() {
		got[f.Key] = f.Status
	}
	want := map[string]string{"engine/experiment/timeToRecover": "regressed", "breakers/haproxy be/srv/timeToClose": "missing"}
	if len(got) != len(want) || got["engine/experiment/timeToRecover"] != "regressed" || got["breakers/haproxy be/srv/timeToClose"] != "missing" {
		t.Errorf("flagged %v, want exactly %v", got, want)
	}
	if f := c.Delta("pause", "engine/experiment/timeToRecover"); f == nil || f.Tolerance != "20%" || !strings.Contains(f.Detail, "exceeds tolerance 20%") {
		t.Errorf("regression detail: %+v", f)
	}
	text := faultline(t, state, "compare", doctored, halted)
	if text.code != 1 || !strings.Contains(text.stdout, "regressed  engine/experiment/timeToRecover") {
		t.Errorf("compare text (exit %d):\n%s", text.code, text.stdout)
	}

	// Corrupt and wrong-version baselines: exit 4 before anything is touched.
	corrupt := filepath.Join(dir, "corrupt.json")
	_ = os.WriteFile(corrupt, raw[:len(raw)/2], 0o644)
	newer := filepath.Join(dir, "newer.json")
	base["schemaVersion"] = 99
	writeJSON(t, newer, base)
	for file, msg := range map[string]string{corrupt: "not a faultline result document", newer: "unsupported result schema version 99"} {
		o := faultline(t, state, "run", "--baseline", file, rb)
		if o.code != 4 || !strings.Contains(o.stderr, msg) || !strings.Contains(o.stderr, "nothing was injected") {
			t.Errorf("run --baseline %s: exit %d, stderr %q; want 4 and %q", filepath.Base(file), o.code, o.stderr, msg)
		}
		if o := faultline(t, state, "compare", file, halted); o.code != 4 || !strings.Contains(o.stderr, msg) {
			t.Errorf("compare %s: exit %d, stderr %q", filepath.Base(file), o.code, o.stderr)
		}
	}

	// A passing run compared with the halted one: it has no halt latency to compare, which is
	// reported and fails it (exit 1), though every experiment held.
	rb2 := runbook(t, reportRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "1s"})
	passed := filepath.Join(dir, "passed.json")
	po := faultline(t, state, "run", "--result-file", passed, "--baseline", halted, "--report", "html="+filepath.Join(dir, "passed.html"), rb2)
	if po.code != 1 {
		t.Fatalf("passed run with baseline: exit %d, want 1\n%s", po.code, po.stderr)
	}
	pr := readResult(t, passed)
	if pr.Verdict != experiments.Failed || pr.Baseline == nil || !strings.Contains(pr.Reason, "engine/run/haltLatency missing") {
		t.Errorf("passed run: verdict %s reason %q", pr.Verdict, pr.Reason)
	}

	// faultline report reads both documents; the HTML pages hold up in Chromium.
	if o := faultline(t, state, "report", "--format", "junit", "-o", filepath.Join(dir, "both.xml"), halted, passed); o.code != 0 {
		t.Fatalf("report: exit %d %s", o.code, o.stderr)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "both.xml"))
	doc = report.JUnitSuites{}
	if err := xml.Unmarshal(b, &doc); err != nil || len(doc.Suites) != 2 {
		t.Fatalf("junit of two runs: %v, %d suites", err, len(doc.Suites))
	}
	if o := faultline(t, state, "report", "--format", "pdf", halted); o.code != 4 || !strings.Contains(o.stderr, `unknown report format "pdf"`) {
		t.Errorf("report --format pdf: exit %d %q", o.code, o.stderr)
	}
	br := chromium.Start(t)
	for _, name := range []string{"halted", "passed"} {
		page := filepath.Join(dir, name+".html")
		if _, err := br.Open("file://"+page, `document.body.dataset.ready === '1'`, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		var charts []struct {
			Kind      string `json:"kind"`
			Series    int    `json:"series"`
			Halts     int    `json:"halts"`
			Threshold int    `json:"threshold"`
		}
		if err := br.Eval(`Array.from(document.querySelectorAll('section.experiment')[0].querySelectorAll('svg.chart')).map(c => ({kind: c.dataset.kind, series: c.querySelectorAll('path.line').length, halts: c.querySelectorAll('.mark.halt').length, threshold: c.querySelectorAll('path.threshold').length}))`, &charts); err != nil {
			t.Fatal(err)
		}
		wantHalts := 0
		if name == "halted" {
			wantHalts = 1
		}
		if len(charts) < 2 || charts[0].Kind != "faults" || charts[1].Kind != "guardrail" || charts[1].Series != 1 || charts[1].Threshold != 1 || charts[1].Halts != wantHalts || charts[0].Halts != wantHalts {
			t.Errorf("%s report charts: %+v", name, charts)
		}
		if err := br.Screenshot(filepath.Join(t.ArtifactDir(), name+".png")); err != nil {
			t.Fatal(err)
		}
	}
	problems, requests := br.Seen()
	if len(problems) > 0 {
		t.Errorf("console problems: %q", problems)
	}
	for _, r := range requests {
		if !strings.HasPrefix(r, "file://"+dir) {
			t.Errorf("request %s", r)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
