package pgstore

import (
	"context"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/history"
)

// PreviousPassed implements daemon.PreviousResults.
func (s *Store) PreviousPassed(ctx context.Context, schedule string) (*experiments.Result, error) {
	return history.PreviousPassed(ctx, s, schedule)
}

// Unfinished lists the runs stored at their start and not finished since (daemon.UnfinishedLister).
func (s *Store) Unfinished(ctx context.Context) ([]history.Summary, error) {
	return s.List(ctx, history.Filter{Unfinished: true})
}
