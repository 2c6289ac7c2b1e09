package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

// The SLO error budget an experiment burned, through the binary and the real Prometheus: a
// service answering 5% errors under an SLO that allows 10% burns its budget at half the
// sustainable rate, and the text summary says so.
func TestSLOErrorBudgetBurned(t *testing.T) {
	s := prom.Start(t)
	v := startVictims(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan struct{})
	go func() { // bounded traffic: every 20ms for at most a minute
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s.Target.Requests.WithLabelValues("checkout", "200").Add(95)
			s.Target.Requests.WithLabelValues("checkout", "503").Add(5)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if _, err := s.WaitIngested(wctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-budget}
environment: {name: test, type: local}
guardrails:
  - name: checkout-errors
    interval: 250ms
    prometheus:
      address: {{.URL}}
      slo: {errorRatio: {metric: test_requests_total, errorSelector: 'code=~"5.."', selector: 'service="checkout"', window: 1s, max: 0.1}}
experiments:
  - name: pause
    duration: 3s
    faults:
      - name: freeze
        processPause: {pidFile: "{{.PidFile}}"}
    recovery: {within: 5s}
`, map[string]string{"URL": s.URL, "PidFile": v.PidFile})
	out := faultline(t, t.TempDir(), "run", "-o", "json", rb)
	if out.code != 0 {
		t.Fatalf("exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	x := out.result(t).Experiments[0]
	var found bool
	for _, f := range x.Figures {
		if f.Metric != "budgetBurned" {
			continue
		}
		found = true
		if f.Key != "engine/slo checkout-errors/budgetBurned" || f.Value == nil || *f.Value < 0.3 || *f.Value > 0.7 || !strings.Contains(f.Note, "error ratio") {
			t.Errorf("budget figure %+v: want about 0.5 (5%% errors against 10%% allowed)", f)
		}
	}
	if !found {
		t.Fatalf("no budgetBurned figure in %+v", x.Figures)
	}
}
