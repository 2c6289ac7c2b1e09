package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/load"
)

// printLoad summarises a load's client-side figures in two lines: the rate it got against the
// rate it asked for, and the worst second it saw.
func printLoad(w io.Writer, s *load.Summary) {
	if s == nil || s.Requests == 0 && len(s.Series) == 0 {
		return
	}
	ratio := 0.0
	if s.Requests > 0 {
		ratio = float64(s.Errors) / float64(s.Requests)
	}
	fmt.Fprintf(w, "  load %s: %d requests completed, sent at %.1f/s of %.1f/s requested, errors %.2f%%\n", s.Name, s.Requests, s.Achieved, s.Requested, 100*ratio)
	if len(s.Series) > 0 {
		worst := slices.MaxFunc(s.Series, func(a, b load.SeriesPoint) int {
			if a.P95 < b.P95 {
				return -1
			}
			if a.P95 > b.P95 {
				return 1
			}
			return 0
		})
		sec := func(v float64) time.Duration {
			return time.Duration(v * float64(time.Second)).Round(100 * time.Microsecond)
		}
		fmt.Fprintf(w, "    worst second %s: p50 %s, p95 %s, p99 %s, errors %.1f%%\n", worst.T.Format("15:04:05"),
			sec(worst.P50), sec(worst.P95), sec(worst.P99), 100*worst.ErrorRatio)
	}
	if s.RateShortfall != "" {
		fmt.Fprintf(w, "    WARNING: %s\n", s.RateShortfall)
	}
}
