package api

import (
	"context"
	"encoding/xml"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/report"
)

func TestRunReport(t *testing.T) {
	e := start(t)
	base := time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)
	res := &experiments.Result{SchemaVersion: 1, RunID: "old1", Runbook: "checkout", Environment: "golden", Verdict: experiments.Halted, ExitCode: 2,
		Reason: "guardrail api breached", StartedAt: base, EndedAt: base.Add(time.Minute), ExperimentNames: []string{"kill", "partition"},
		Experiments: []experiments.ExperimentResult{{Name: "kill", Verdict: experiments.Halted, Reason: "guardrail api breached", StartedAt: base, EndedAt: base.Add(time.Minute)}}}
	if err := e.hist.Put(context.Background(), history.SummaryOf(res, "nightly", "schedule"), res); err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"search"}`) // run1, live

	r := e.do("GET", "/api/v1/runs/old1/report", bearerReader, "")
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.HasPrefix(r.header.Get("Content-Security-Policy"), "default-src 'none'") || !strings.HasSuffix(r.header.Get("Content-Security-Policy"), "sandbox allow-scripts") {
		t.Fatalf("html report: %d %v", r.code, r.header)
	}
	if body := string(r.body); !strings.Contains(body, `<h1>checkout <span class="verdict">halted</span></h1>`) || !strings.Contains(body, `<svg class="chart"`) {
		t.Errorf("html report body lacks the run or its charts:\n%.500s", body)
	}

	r = e.do("GET", "/api/v1/runs/old1/report?format=junit", bearerReader, "")
	var doc report.JUnitSuites
	if err := xml.Unmarshal(r.body, &doc); err != nil || r.code != http.StatusOK || r.header.Get("Content-Type") != "application/xml; charset=utf-8" {
		t.Fatalf("junit report: %d %v %v", r.code, err, r.header)
	}
	if s := doc.Suites[0]; s.Tests != 2 || s.Failures != 1 || s.Skipped != 1 {
		t.Errorf("junit suite: %+v", s)
	}
	if r = e.do("GET", "/api/v1/runs/old1/report?format=markdown", bearerReader, ""); r.code != http.StatusOK || !strings.Contains(string(r.body), "`checkout` halted on `golden`") {
		t.Errorf("markdown report: %d %s", r.code, r.body)
	}

	for _, c := range []struct {
		path, auth string
		code       int
		msg        string
	}{
		{"/api/v1/runs/old1/report?format=pdf", bearerReader, 400, `unknown report format "pdf"`},
		{"/api/v1/runs/ghost/report", bearerReader, 404, `run "ghost" is not in history`},
		{"/api/v1/runs/run1/report", bearerReader, 404, "a running run has no report yet"},
		{"/api/v1/runs/old1/report", "", 401, ""},
	} {
		r := e.do("GET", c.path, c.auth, "")
		if r.code != c.code {
			t.Errorf("GET %s: %d, want %d: %s", c.path, r.code, c.code, r.body)
			continue
		}
		if msg := r.errorText(t); c.msg != "" && !strings.Contains(msg, c.msg) {
			t.Errorf("GET %s: error %q, want %q", c.path, msg, c.msg)
		}
	}
}
