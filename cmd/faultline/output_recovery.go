package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// phrase is how the recovery summary says a figure: reached (with its value) and not reached.
type phrase struct{ reached, missing string }

// phrases cover the figures docs/recovery.md lists, in the order the summary shows them; a figure
// not listed here is shown as "metric value".
var phrases = []struct {
	metric string
	phrase
}{
	{"timeToReady", phrase{"ready again %s after its last disruption", "NOT ready again"}},
	{"podsKilled", phrase{"%s pod(s) deleted", ""}},
	{"minReady", phrase{"min %s ready", ""}},
	{"maxPodTimeToReady", phrase{"slowest pod %s", ""}},
	{"timeToScaleOut", phrase{"scaled out %s after the first fault", "did NOT scale out"}},
	{"peakReplicas", phrase{"peak %s replicas", ""}},
	{"directionChanges", phrase{"%s direction change(s)", ""}},
	{"timeToBaseline", phrase{"back to baseline %s after the revert", "NOT back to baseline"}},
	{"timeToOpen", phrase{"opened %s after the first fault", "never opened"}},
	{"opens", phrase{"opened %s time(s)", ""}},
	{"openTime", phrase{"open %s in all", ""}},
	{"timeToClose", phrase{"closed %s after the revert", "NOT closed again"}},
	{"timeToDetect", phrase{"%s", "not detected"}},
	{"budgetBurned", phrase{"%s× the error budget's rate", "not measured"}},
}

// summaryFigures bounds the figures one subject shows in the summary; -o json has all of them.
const summaryFigures = 4

// printRecovery prints an experiment's recovery summary: what each recorder saw per subject, the
// guardrails' recovery, the engine's figures and every objective with its limit and value.
func printRecovery(w io.Writer, x experiments.ExperimentResult) {
	var lines []string
	for _, rec := range x.Recordings {
		for _, subj := range subjects(rec.Figures) {
			lines = append(lines, fmt.Sprintf("%s: %s", subj, describe(rec.Figures, subj)))
		}
		if rec.Incomplete {
			lines = append(lines, fmt.Sprintf("%s recording INCOMPLETE: %s", rec.Recorder, rec.Reason))
		}
	}
	if r := x.Recovery; r != nil {
		if r.Recovered {
			lines = append(lines, fmt.Sprintf("guardrails: healthy again %s after the revert (allowed %s)", r.TimeToRecover, r.Within))
		} else {
			lines = append(lines, fmt.Sprintf("guardrails: NOT healthy again within %s of the revert", r.Within))
		}
	}
	checks := len(x.Guardrails) + len(x.Hypothesis)
	for _, f := range x.Figures {
		if f.Metric == "timeToDetect" && checks == 0 {
			continue // nothing could detect it: -o json says so, the summary need not
		}
		label := "time to detect"
		if f.Metric != "timeToDetect" {
			label = f.Subject
		}
		lines = append(lines, fmt.Sprintf("%s: %s", label, say(f, true)))
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "  recovery:")
		for _, l := range lines {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	if len(x.Objectives) > 0 {
		fmt.Fprintln(w, "  objectives:")
		for _, o := range x.Objectives {
			what := o.Figure
			if what == "" {
				what = "—"
			}
			var line string
			switch {
			case o.Passed:
				line = fmt.Sprintf("    ✓ %s  %s  %s ≤ %s", o.Name, what, o.Value, o.Limit)
			case strings.HasSuffix(o.Reason, "is above the limit "+o.Limit):
				line = fmt.Sprintf("    ✗ %s  %s  %s > %s", o.Name, what, o.Value, o.Limit)
			default: // not reached, incomplete, nothing recorded: the reason says which
				line = fmt.Sprintf("    ✗ %s  %s  limit %s: %s", o.Name, what, o.Limit, o.Reason)
			}
			fmt.Fprintln(w, line)
		}
	}
}

// subjects lists the figures' subjects in their first order.
func subjects(fs []experiments.Figure) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f.Subject) {
			out = append(out, f.Subject)
		}
	}
	return out
}

// describe says the most important figures of one subject, in the order of phrases.
func describe(fs []experiments.Figure, subject string) string {
	var mine []experiments.Figure
	for _, f := range fs {
		if f.Subject == subject {
			mine = append(mine, f)
		}
	}
	rank := func(m string) int {
		for i, p := range phrases {
			if p.metric == m {
				return i
			}
		}
		return len(phrases)
	}
	slices.SortStableFunc(mine, func(a, b experiments.Figure) int { return rank(a.Metric) - rank(b.Metric) })
	var parts []string
	for _, f := range mine {
		if len(parts) == summaryFigures {
			break
		}
		parts = append(parts, say(f, len(parts) == 0))
	}
	return strings.Join(parts, " · ")
}

// say renders one figure; the note is added for the first figure of a line or a missing value.
func say(f experiments.Figure, withNote bool) string {
	p := phrase{f.Metric + " %s", f.Metric + " not reached"}
	for _, q := range phrases {
		if q.metric == f.Metric {
			p = q.phrase
		}
	}
	if f.Value == nil {
		s := p.missing
		if s == "" {
			s = f.Metric + " not reached"
		}
		if f.Note != "" {
			s += " (" + f.Note + ")"
		}
		return s
	}
	v := value(*f.Value, f.Unit)
	if f.Uncertainty > 0 {
		v += " ±" + value(f.Uncertainty, f.Unit)
	}
	s := fmt.Sprintf(p.reached, v)
	if withNote && f.Note != "" && f.Metric != "timeToReady" {
		s += " (" + f.Note + ")"
	}
	return s
}

func value(v float64, unit string) string {
	switch unit {
	case "s":
		return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
	case "ratio":
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
