package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/breakersvc"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

const breakersRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-breakers}
environment: {name: test, type: local}
experiments:
  - name: pause
    duration: 3s
    faults:
      - name: freeze
        processPause: {pidFile: "{{.PidFile}}"}
    record:
      breakers:
        - preset: gobreaker
          address: {{.URL}}
          interval: 250ms
          settle: 10s
          lookback: 5s
`

// A run with record.breakers: the breaker the test opens and closes during the fault window is in
// the result, with its figures, from the real Prometheus.
func TestBreakersRecordedInRun(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	svc, err := breakersvc.New(s.Target.Registry, breakersvc.Config{Names: []string{"pay"}, OpenFor: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.WaitVector(ctx, `gobreaker_state{state="closed"} == 1`, func(v model.Vector) bool { return len(v) == 1 }); err != nil {
		t.Fatal(err)
	}
	v := startVictims(t, 1)[0]
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, breakersRunbook, struct{ URL, PidFile string }{s.URL, v.PidFile}))
	waitStopped(t, run, v)
	for range 3 {
		_ = svc.Call("pay", false)
	}
	if _, err := s.WaitVector(ctx, `gobreaker_state{state="open"} == 1`, func(v model.Vector) bool { return len(v) == 1 }); err != nil {
		t.Fatal(err)
	}
	// Refused while open; the first call after OpenFor finds it half-open and closes it.
	waitFor(t, 10*time.Second, "the breaker to close", func() bool { return svc.Call("pay", true) == nil })
	out := run.wait(t, time.Minute)
	if out.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", out.code, out.stderr)
	}
	r := out.result(t)
	figs := map[string]float64{}
	found := false
	for _, rec := range r.Experiments[0].Recordings {
		if rec.Recorder != "breakers" {
			continue
		}
		found = true
		if rec.Incomplete || !rec.Recovered {
			t.Fatalf("breakers recording: %+v", rec)
		}
		for _, f := range rec.Figures {
			if f.Value != nil {
				figs[f.Key] = *f.Value
			}
		}
		if len(rec.Timelines) != 1 || len(rec.Timelines[0].States) != 3 {
			t.Errorf("timelines = %+v, want one lane: closed, open, closed", rec.Timelines)
		}
	}
	if !found {
		t.Fatalf("no breakers recording in %+v", r.Experiments[0].Recordings)
	}
	if figs["breakers/gobreaker pay/opens"] != 1 || figs["breakers/gobreaker pay/stillOpen"] != 0 || figs["breakers/gobreaker pay/timeToOpen"] <= 0 {
		t.Errorf("figures = %v, want one open, closed at the end, a positive time to open", figs)
	}
}

// A breaker left open past the revert misses breakers.closedWithin: exit 1, and the result names
// the objective, the breaker's figure and why.
func TestBreakersObjectiveMissed(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	svc, err := breakersvc.New(s.Target.Registry, breakersvc.Config{Names: []string{"pay"}, OpenFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.WaitVector(ctx, `gobreaker_state{state="closed"} == 1`, func(v model.Vector) bool { return len(v) == 1 }); err != nil {
		t.Fatal(err)
	}
	v := startVictims(t, 1)[0]
	rb := breakersRunbook + `    objectives:
      breakers: {closedWithin: 1s, maxOpens: 1}
`
	run := startFaultline(t, nil, t.TempDir(), "run", "--output", "json", runbook(t, rb, struct{ URL, PidFile string }{s.URL, v.PidFile}))
	waitStopped(t, run, v)
	for range 3 {
		_ = svc.Call("pay", false) // open, and it stays open (OpenFor is an hour)
	}
	out := run.wait(t, time.Minute)
	if out.code != 1 {
		t.Fatalf("exit %d, want 1 (objective missed)\nstderr:\n%s", out.code, out.stderr)
	}
	r := out.result(t)
	x := r.Experiments[0]
	if !strings.Contains(x.Reason, "breakers.closedWithin") {
		t.Errorf("reason %q does not name breakers.closedWithin", x.Reason)
	}
	var closed, opens *experiments.ObjectiveResult
	for i, o := range x.Objectives {
		switch o.Name {
		case "breakers.closedWithin":
			closed = &x.Objectives[i]
		case "breakers.maxOpens":
			opens = &x.Objectives[i]
		}
	}
	if closed == nil || closed.Passed || closed.Figure != "breakers/gobreaker pay/timeToClose" || !strings.Contains(closed.Reason, "still open") {
		t.Errorf("closedWithin result = %+v, want failed on breakers/gobreaker pay/timeToClose, still open", closed)
	}
	if opens == nil || !opens.Passed {
		t.Errorf("maxOpens result = %+v, want passed (one open)", opens)
	}
}
