package history

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

func TestPreviousPassed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer s.Close()
	ctx := context.Background()
	base := time.Date(2026, 1, 5, 2, 0, 0, 0, time.UTC)
	if got, err := s.PreviousPassed(ctx, "nightly"); got != nil || err != nil {
		t.Fatalf("empty history: %v %v", got, err)
	}
	put(t, s, "nightly", result("p1", "checkout", experiments.Passed, base))
	put(t, s, "nightly", result("h2", "checkout", experiments.Halted, base.Add(time.Hour)))
	put(t, s, "other", result("p3", "checkout", experiments.Passed, base.Add(2*time.Hour)))
	got, err := s.PreviousPassed(ctx, "nightly")
	if err != nil || got == nil || got.RunID != "p1" || got.Experiments[0].Name != "kill-one" {
		t.Fatalf("previous passed of nightly = %+v, %v; want p1 (h2 halted, p3 another schedule)", got, err)
	}
}
