package history

import (
	"context"
	"fmt"

	"github.com/faultline-dev/faultline/experiments"
)

// PreviousPassed returns the latest passed run of a schedule that has a result document, or nil
// when there is none; the daemon compares each new run of the schedule with it.
func (s *Store) PreviousPassed(ctx context.Context, schedule string) (*experiments.Result, error) {
	sums, err := s.List(ctx, Filter{Schedule: schedule, Verdict: experiments.Passed, Limit: 1})
	if err != nil || len(sums) == 0 {
		return nil, err
	}
	rec, err := s.Get(ctx, sums[0].RunID)
	if err != nil {
		return nil, fmt.Errorf("previous run of %s: %w", schedule, err)
	}
	return rec.Result, nil
}
