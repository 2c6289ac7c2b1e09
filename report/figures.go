// Package report turns result documents into what their readers need: a self-contained HTML page
// for a game-day review, JUnit XML for CI test reporters, a Markdown summary for pull requests, and
// a comparison with a baseline run. It reads only the result document (experiments.Result), so a
// report can be made from any stored run, by any faultline that reads its schema version.
package report

import (
	"slices"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// Figures returns every recovery figure of an experiment: the engine's, each recording's, and
// those derived from the result itself (time to recover overall and per guardrail, halt latency),
// unless a recorder or the engine already reported one with the same key. Order is stable.
func Figures(res *experiments.Result, x *experiments.ExperimentResult) []experiments.Figure {
	var out []experiments.Figure
	seen := map[string]bool{}
	add := func(f experiments.Figure) {
		if f.Key == "" || seen[f.Key] {
			return
		}
		seen[f.Key] = true
		out = append(out, f)
	}
	for _, f := range x.Figures {
		add(f)
	}
	for _, r := range x.Recordings {
		for _, f := range r.Figures {
			add(f)
		}
	}
	for _, f := range derived(res, x) {
		add(f)
	}
	return out
}

func seconds(d time.Duration) *float64 {
	v := d.Seconds()
	return &v
}

// derived computes the figures the result document holds implicitly.
func derived(res *experiments.Result, x *experiments.ExperimentResult) []experiments.Figure {
	var out []experiments.Figure
	last := lastRevert(x)
	if rec := x.Recovery; rec != nil {
		f := experiments.Figure{Key: "engine/experiment/timeToRecover", Subject: "experiment", Metric: "timeToRecover", Unit: "s"}
		if d, err := time.ParseDuration(rec.TimeToRecover); err == nil && rec.Recovered {
			f.Value = seconds(d)
			f.Uncertainty = maxGap(x.Guardrails)
		} else if !rec.Recovered {
			f.Note = "not recovered within " + rec.Within
		}
		out = append(out, f)
		for _, g := range x.Guardrails {
			if last.IsZero() {
				break
			}
			f := experiments.Figure{Key: "guardrails/" + g.Name + "/timeToRecover", Subject: "guardrail " + g.Name, Metric: "timeToRecover", Unit: "s"}
			if at, ok := healthyFrom(g.Observations, last); ok {
				f.Value = seconds(max(0, at.Sub(last)))
				f.Uncertainty = maxGap([]experiments.GuardrailResult{g})
			} else {
				f.Note = "still failing at the end of the recovery window"
			}
			out = append(out, f)
		}
	}
	if h := res.Halt; h != nil && h.LastRevertedAt != nil && x.Verdict == experiments.Halted {
		out = append(out, experiments.Figure{Key: "engine/run/haltLatency", Subject: "run", Metric: "haltLatency", Unit: "s", Value: seconds(h.LastRevertedAt.Sub(h.At))})
	}
	return out
}

// lastRevert is the latest revert of the experiment's faults (zero when none was reverted).
func lastRevert(x *experiments.ExperimentResult) time.Time {
	var t time.Time
	for _, f := range x.Faults {
		if f.RevertedAt != nil && f.RevertedAt.After(t) {
			t = *f.RevertedAt
		}
	}
	return t
}

// healthyFrom is when a guardrail last became healthy for good after `after`: the first passing
// observation after the last failing one. A guardrail that never failed after `after` is healthy
// at `after`.
func healthyFrom(obs []experiments.PhasedSample, after time.Time) (time.Time, bool) {
	i := slices.IndexFunc(obs, func(o experiments.PhasedSample) bool { return !o.Time.Before(after) })
	if i < 0 {
		return after, true
	}
	at := after
	healthy := true
	for _, o := range obs[i:] {
		switch {
		case !o.Pass && !o.Ignored:
			healthy = false
		case o.Pass && !healthy:
			healthy, at = true, o.Time
		}
	}
	return at, healthy
}

// maxGap is the longest interval between two consecutive evaluations of the guardrails, in
// seconds: a recovery seen by an evaluation happened at most that long before it.
func maxGap(gs []experiments.GuardrailResult) float64 {
	var gap time.Duration
	for _, g := range gs {
		for i := 1; i < len(g.Observations); i++ {
			gap = max(gap, g.Observations[i].Time.Sub(g.Observations[i-1].Time))
		}
	}
	return gap.Seconds()
}
