package load

import (
	"fmt"
	"slices"
	"time"
)

// SeriesPoint is one second of the load, for the result document and the reports.
type SeriesPoint struct {
	T          time.Time `json:"t"`
	Requested  float64   `json:"requested"`  // requests per second asked for in the second before T
	Sent       float64   `json:"sent"`       // requests per second sent in the second before T
	Throughput float64   `json:"throughput"` // requests per second completed in the second before T
	P50        float64   `json:"p50"`        // seconds
	P95        float64   `json:"p95"`
	P99        float64   `json:"p99"`
	ErrorRatio float64   `json:"errorRatio"`
	Requests   int       `json:"requests"`
}

// Summary is a load's part of the result.
type Summary struct {
	Name      string    `json:"name"`
	StartedAt time.Time `json:"startedAt"`
	StoppedAt time.Time `json:"stoppedAt"`
	Stopped   string    `json:"stopped"`
	// Sent counts requests sent; Requests those that completed (answered, failed or timed out);
	// the difference was abandoned in flight when the load stopped.
	Sent     int64 `json:"sent"`
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Requested and Achieved are mean rates over the load's life, requests per second, Achieved
	// counting requests sent (the rate offered to the target, whatever it did with them). When
	// Achieved falls short, RateShortfall says so: a rate the machine could not produce is
	// reported, never silently lowered.
	Requested     float64          `json:"requested"`
	Achieved      float64          `json:"achieved"`
	RateShortfall string           `json:"rateShortfall,omitempty"`
	Codes         map[string]int64 `json:"codes,omitempty"` // "0" is a transport error or timeout
	Series        []SeriesPoint    `json:"series,omitempty"`
}

// summarize builds the summary; called with mu held, after the traffic stopped.
func (g *Generator) summarize() *Summary {
	s := &Summary{Name: g.name, StartedAt: g.started, StoppedAt: g.stopped, Stopped: g.stopWhy, Sent: int64(g.inflight.sent()),
		Requests: g.total, Errors: g.errs, Codes: map[string]int64{}, Series: slices.Clone(g.series)}
	for c, n := range g.codes {
		s.Codes[fmt.Sprint(c)] = n
	}
	life := g.stopped.Sub(g.started)
	if life > 0 {
		s.Requested = min(g.pacer.expected(life), float64(g.pacer.max)) / life.Seconds()
		s.Achieved = float64(s.Sent) / life.Seconds()
	}
	s.RateShortfall = shortfall(s.Achieved, s.Requested)
	return s
}

// Between returns the series points within [from, to] (an experiment's part of a runbook's load).
func (s *Summary) Between(from, to time.Time) []SeriesPoint {
	var out []SeriesPoint
	for _, p := range s.Series {
		if !p.T.Before(from) && !p.T.After(to) {
			out = append(out, p)
		}
	}
	return out
}

// Slice is the part of a runbook-wide load that fell within [from, to] (one experiment's span):
// its series points and the totals counted from them.
func (s *Summary) Slice(from, to time.Time) *Summary {
	out := &Summary{Name: s.Name, StartedAt: from, StoppedAt: to, Stopped: "runbook load continues", Series: s.Between(from, to), Codes: nil}
	var req, sent float64
	for _, p := range out.Series {
		out.Requests += int64(p.Requests)
		out.Errors += int64(float64(p.Requests)*p.ErrorRatio + 0.5)
		req += p.Requested
		sent += p.Sent
	}
	if n := float64(len(out.Series)); n > 0 {
		out.Requested, out.Achieved = req/n, sent/n
		out.Sent = int64(sent*seriesStep.Seconds() + 0.5)
	}
	// A few seconds of series cannot tell a shortfall from the stop's partial second.
	if len(out.Series) >= 5 {
		out.RateShortfall = shortfall(out.Achieved, out.Requested)
	}
	return out
}

// shortfall words a sent rate below 95 % of the requested one (the last partial second makes a
// few percent of noise on a short load).
func shortfall(achieved, requested float64) string {
	if requested <= 0 || achieved >= 0.95*requested {
		return ""
	}
	return fmt.Sprintf("sent %.1f/s of the %.1f/s requested (%.0f%%): the machine or maxWorkers could not keep up",
		achieved, requested, 100*achieved/requested)
}
