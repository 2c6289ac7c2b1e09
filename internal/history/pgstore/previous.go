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
