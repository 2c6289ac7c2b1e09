package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/metrics"
	"github.com/faultline-dev/faultline/runbooks"
)

// previousStore answers PreviousPassed from memory; the history store's own answer is tested in
// internal/history.
type previousStore struct{ prev *experiments.Result }

func (p previousStore) Put(context.Context, RunSummary, *experiments.Result) error { return nil }
func (p previousStore) PreviousPassed(context.Context, string) (*experiments.Result, error) {
	return p.prev, nil
}

func recovered(id string, ttr string) *experiments.Result {
	t0 := time.Date(2026, 1, 5, 2, 0, 0, 0, time.UTC)
	return &experiments.Result{RunID: id, Runbook: "checkout", Verdict: experiments.Passed, StartedAt: t0, EndedAt: t0.Add(time.Minute),
		Experiments: []experiments.ExperimentResult{{Name: "kill", Verdict: experiments.Passed,
			Recovery: &experiments.RecoveryResult{Within: "30s", Recovered: true, TimeToRecover: ttr}}}}
}

func TestCompareWithPrevious(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := &Daemon{o: Options{Results: previousStore{recovered("prev", "2s")}, Metrics: metrics.NewDaemon(reg)}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rb := &runbooks.Runbook{Baseline: &runbooks.Baseline{Tolerance: "50%"}}

	res := recovered("now", "5s")
	d.compareWithPrevious(context.Background(), "nightly", rb, res)
	if res.Baseline == nil || res.Baseline.BaselineRunID != "prev" || len(res.Baseline.Failures()) != 1 || res.Baseline.Failures()[0].Key != "engine/experiment/timeToRecover" {
		t.Fatalf("comparison %+v", res.Baseline)
	}
	if res.Verdict != experiments.Passed {
		t.Errorf("the daemon's comparison changed the verdict to %s", res.Verdict)
	}
	gauge := func(want int) {
		t.Helper()
		exp := fmt.Sprintf("# HELP faultline_baseline_regressions Recovery figures of the schedule's latest run that got worse than its previous passed run (regressed, unreached or missing); 0 when none.\n# TYPE faultline_baseline_regressions gauge\nfaultline_baseline_regressions{schedule=\"nightly\"} %d\n", want)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "faultline_baseline_regressions"); err != nil {
			t.Error(err)
		}
	}
	gauge(1)
	// Within the runbook's 50%: no regression, and the gauge goes back to 0.
	res = recovered("later", "2.9s")
	d.compareWithPrevious(context.Background(), "nightly", rb, res)
	if res.Baseline == nil || len(res.Baseline.Failures()) != 0 {
		t.Fatalf("comparison %+v", res.Baseline)
	}
	gauge(0)
}
