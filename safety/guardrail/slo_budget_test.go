package guardrail_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// The error budget an experiment burned, from the real Prometheus: 1% errors against an SLO that
// allows 2% is half the budget's rate; a counter with no requests in the span gives no ratio
// (not zero); a guardrail without an errorRatio SLO has no budget.
func TestErrorBudgetFromPrometheus(t *testing.T) {
	s := prom.Start(t)
	traffic(t, s, func() {
		s.Target.Requests.WithLabelValues("checkout", "200").Add(99)
		s.Target.Requests.WithLabelValues("checkout", "503").Add(1)
		s.Target.Requests.WithLabelValues("clean", "200").Add(10) // never an error: no 5xx series at all
	})
	slo := func(selector string) string {
		return fmt.Sprintf("    prometheus:\n      address: %s\n      slo: {errorRatio: {metric: test_requests_total, errorSelector: 'code=~\"5..\"', selector: '%s', window: 3s, max: 0.02}}\n", s.URL, selector)
	}
	from := time.Now()
	to := from.Add(2 * time.Second)
	if _, err := s.WaitIngested(ctxFor(t, 20*time.Second), to); err != nil {
		t.Fatal(err)
	}

	br, ok := compileGuardrail(t, slo(`service="checkout"`)).Probe.(guardrail.ErrorBudgetReader)
	if !ok {
		t.Fatal("a Prometheus guardrail with an errorRatio SLO is not an ErrorBudgetReader")
	}
	b, err := br.ErrorBudget(ctxFor(t, 10*time.Second), from, to)
	if err != nil {
		t.Fatal(err)
	}
	wantQ := `(sum(increase(test_requests_total{service="checkout",code=~"5.."}[2s])) or vector(0)) / sum(increase(test_requests_total{service="checkout"}[2s]))`
	if b.Query != wantQ || b.Span != 2*time.Second || b.Max != 0.02 {
		t.Errorf("budget %+v\nwant query %s", b, wantQ)
	}
	if b.ErrorRatio == nil || *b.ErrorRatio < 0.007 || *b.ErrorRatio > 0.013 {
		t.Fatalf("error ratio %v, want about 0.01", b.ErrorRatio)
	}

	b, err = compileGuardrail(t, slo(`service="clean"`)).Probe.(guardrail.ErrorBudgetReader).ErrorBudget(ctxFor(t, 10*time.Second), from, to)
	if err != nil || b.ErrorRatio == nil || *b.ErrorRatio != 0 {
		t.Errorf("a service without errors: ratio %v, err %v; want 0", b.ErrorRatio, err)
	}
	b, err = compileGuardrail(t, slo(`service="idle"`)).Probe.(guardrail.ErrorBudgetReader).ErrorBudget(ctxFor(t, 10*time.Second), from, to)
	if err != nil || b.ErrorRatio != nil {
		t.Errorf("a service without requests: ratio %v, err %v; want none", b.ErrorRatio, err)
	}

	if _, ok := compileGuardrail(t, promGuardrail(s.URL, "vector(1)", "<", 2, "")).Probe.(guardrail.ErrorBudgetReader); ok {
		t.Error("a guardrail with a plain query has no error budget, but is an ErrorBudgetReader")
	}
}
