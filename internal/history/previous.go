package history

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// PreviousPassed returns the latest passed run of a schedule that has a result document, or nil
// when there is none; the daemon compares each new run of the schedule with it.
func (s *Store) PreviousPassed(ctx context.Context, schedule string) (*experiments.Result, error) {
	return PreviousPassed(ctx, s, schedule)
}

// PreviousPassed is Store.PreviousPassed for any backend.
func PreviousPassed(ctx context.Context, b Backend, schedule string) (*experiments.Result, error) {
	sums, err := b.List(ctx, Filter{Schedule: schedule, Verdict: experiments.Passed, Limit: 1})
	if err != nil || len(sums) == 0 {
		return nil, err
	}
	rec, err := b.Get(ctx, sums[0].RunID)
	if err != nil {
		return nil, fmt.Errorf("previous run of %s: %w", schedule, err)
	}
	return rec.Result, nil
}

// ScheduledStarts lists the starts of a schedule's scheduled runs (not API triggers) since since,
// ascending, finished or not: the per-day cap and chaos-monkey gaps continue from them after a
// restart, and, with a shared store, after a failover.
func ScheduledStarts(ctx context.Context, b Backend, schedule string, since time.Time) ([]time.Time, error) {
	runs, err := b.List(ctx, Filter{Schedule: schedule, Since: since})
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, r := range runs {
		if r.Trigger == "schedule" {
			out = append(out, r.StartedAt)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out, nil
}

// Unfinished lists the runs stored at their start and not finished since (daemon.UnfinishedLister).
func (s *Store) Unfinished(ctx context.Context) ([]Summary, error) {
	return s.List(ctx, Filter{Unfinished: true})
}
