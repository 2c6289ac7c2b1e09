package daemon

import (
	"context"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/report"
	"github.com/faultline-dev/faultline/runbooks"
)

// PreviousResults is implemented by a Results store that can find a schedule's last passed run
// (the history store does); with it, each run is compared with that run.
type PreviousResults interface {
	// PreviousPassed returns the schedule's latest passed run, or nil when it has none.
	PreviousPassed(ctx context.Context, schedule string) (*experiments.Result, error)
}

// compareWithPrevious records in res how its recovery figures compare with the schedule's last
// passed run, and sets the regression gauge. It does not change the verdict: a scheduled game day
// is judged by its own objectives, and the delta is for the people and alerts reading history
// and metrics (a CI stage that must fail on a regression uses faultline run --baseline).
func (d *Daemon) compareWithPrevious(ctx context.Context, schedule string, rb *runbooks.Runbook, res *experiments.Result) {
	p, ok := d.o.Results.(PreviousResults)
	if !ok || schedule == "" || res.Verdict == experiments.DryRun || len(res.Experiments) == 0 {
		return
	}
	base, err := p.PreviousPassed(ctx, schedule)
	if err != nil {
		d.log.Warn("no comparison with the previous run", "schedule", schedule, "run", res.RunID, "err", err)
		return
	}
	if base == nil || base.RunID == res.RunID {
		return
	}
	cmp := report.Compare(base, res, rb.Baseline)
	res.Baseline = cmp
	fails := cmp.Failures()
	d.o.Metrics.BaselineRegressions(schedule, len(fails))
	if len(fails) > 0 {
		d.log.Warn("recovery worse than the previous passed run", "schedule", schedule, "run", res.RunID, "baseline", base.RunID,
			"figures", len(fails), "first", fails[0].Key+" "+fails[0].Status+": "+fails[0].Detail)
	}
}
