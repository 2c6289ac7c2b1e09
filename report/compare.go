package report

import (
	"fmt"
	"math"
	"strconv"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/runbooks"
)

// Compare compares every recovery figure of cur with the same figure of base, experiment by
// experiment (matched by name). tol may be nil (the default tolerance for every figure).
func Compare(base, cur *experiments.Result, tol *runbooks.Baseline) *experiments.BaselineComparison {
	c := &experiments.BaselineComparison{BaselineRunID: base.RunID}
	if base.RunbookDigest != "" && cur.RunbookDigest != "" && base.RunbookDigest != cur.RunbookDigest {
		c.DigestChanged = true
		c.Warnings = append(c.Warnings, fmt.Sprintf("the runbook changed since the baseline (digest %s, baseline %s): figures are compared by name and may not mean the same", short(cur.RunbookDigest), short(base.RunbookDigest)))
	}
	if base.Runbook != cur.Runbook {
		c.Warnings = append(c.Warnings, fmt.Sprintf("the baseline is a run of runbook %q, this is %q", base.Runbook, cur.Runbook))
	}
	curX := map[string]*experiments.ExperimentResult{}
	for i := range cur.Experiments {
		curX[cur.Experiments[i].Name] = &cur.Experiments[i]
	}
	baseX := map[string]bool{}
	for i := range base.Experiments {
		bx := &base.Experiments[i]
		baseX[bx.Name] = true
		ed := experiments.ExperimentDelta{Name: bx.Name}
		cx := curX[bx.Name]
		var curFigs map[string]experiments.Figure
		var curOrder []experiments.Figure
		if cx != nil {
			curOrder = Figures(cur, cx)
			curFigs = map[string]experiments.Figure{}
			for _, f := range curOrder {
				curFigs[f.Key] = f
			}
		}
		seen := map[string]bool{}
		for _, bf := range Figures(base, bx) {
			seen[bf.Key] = true
			t := tol.For(bf.Key, bf.Metric)
			cf, ok := curFigs[bf.Key]
			if !ok {
				why := "not in this run"
				if cx == nil {
					why = "experiment " + bx.Name + " did not run this time"
				}
				ed.Figures = append(ed.Figures, experiments.FigureDelta{Key: bf.Key, Metric: bf.Metric, Unit: bf.Unit, Baseline: bf.Value, Tolerance: t.Text, Status: experiments.StatusMissing, Detail: why})
				continue
			}
			ed.Figures = append(ed.Figures, compareFigure(bf, cf, t))
		}
		for _, cf := range curOrder {
			if !seen[cf.Key] {
				ed.Figures = append(ed.Figures, experiments.FigureDelta{Key: cf.Key, Metric: cf.Metric, Unit: cf.Unit, Current: cf.Value, Tolerance: tol.For(cf.Key, cf.Metric).Text, Status: experiments.StatusNew, Detail: "not in the baseline"})
			}
		}
		c.Experiments = append(c.Experiments, ed)
	}
	for _, x := range cur.Experiments {
		if !baseX[x.Name] {
			c.Warnings = append(c.Warnings, fmt.Sprintf("experiment %q is not in the baseline: nothing to compare it with", x.Name))
		}
	}
	return c
}

// unreachedIsFine are the figures whose "not reached" means the bad thing did not happen: nothing
// breached, so there was nothing to detect; the breaker never opened. For every other figure
// (never closed, never back at baseline, never scaled out) not reaching it is a regression.
var unreachedIsFine = map[string]bool{"timeToDetect": true, "timeToOpen": true}

func compareFigure(bf, cf experiments.Figure, t runbooks.Tolerance) experiments.FigureDelta {
	d := experiments.FigureDelta{Key: bf.Key, Metric: bf.Metric, Unit: bf.Unit, Baseline: bf.Value, Current: cf.Value, Tolerance: t.Text, Status: experiments.StatusOK}
	switch {
	case bf.Value == nil && cf.Value == nil:
		d.Detail = "not reached in either run"
		return d
	case cf.Value == nil && unreachedIsFine[bf.Metric]:
		d.Detail = fmt.Sprintf("not reached (baseline %s), which is no regression", FormatValue(*bf.Value, bf.Unit))
		if cf.Note != "" {
			d.Detail += ": " + cf.Note
		}
		return d
	case cf.Value == nil:
		d.Status = experiments.StatusUnreached
		d.Detail = fmt.Sprintf("not reached (baseline %s)", FormatValue(*bf.Value, bf.Unit))
		if cf.Note != "" {
			d.Detail += ": " + cf.Note
		}
		return d
	case bf.Value == nil:
		d.Detail = fmt.Sprintf("%s; the baseline never reached it", FormatValue(*cf.Value, cf.Unit))
		return d
	}
	b, v := *bf.Value, *cf.Value
	worse := v - b // how much worse, in the figure's unit
	if bf.HigherIsBetter {
		worse = b - v
	}
	allowed := t.Absolute
	if !t.IsAbs {
		allowed = math.Abs(b) * t.Percent / 100
	}
	// What the two measurements cannot tell apart is never a regression.
	allowed += bf.Uncertainty + cf.Uncertainty
	d.Detail = fmt.Sprintf("%s, baseline %s (%s)", FormatValue(v, cf.Unit), FormatValue(b, bf.Unit), change(b, v, cf.Unit))
	if worse > allowed+1e-9 {
		d.Status = experiments.StatusRegressed
		d.Detail += " exceeds tolerance " + t.Text
	}
	return d
}

func change(b, v float64, unit string) string {
	diff := v - b
	sign := "+"
	if diff < 0 {
		sign = "-"
	}
	s := sign + FormatValue(math.Abs(diff), unit)
	if b != 0 {
		s += fmt.Sprintf(", %s%.0f%%", sign, math.Abs(diff)/math.Abs(b)*100)
	}
	return s
}

// FormatValue writes a figure's value with its unit.
func FormatValue(v float64, unit string) string {
	switch unit {
	case "s":
		switch {
		case v >= 100:
			return strconv.FormatFloat(v, 'f', 0, 64) + "s"
		case v >= 1:
			return strconv.FormatFloat(v, 'f', 2, 64) + "s"
		}
		return strconv.FormatFloat(v*1000, 'f', 0, 64) + "ms"
	case "ratio":
		return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
	case "count", "replicas", "":
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + " " + unit
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// ApplyComparison records c in res and fails a run that otherwise passed when a figure regressed,
// was not reached or is missing; the reason names the figures.
func ApplyComparison(res *experiments.Result, c *experiments.BaselineComparison) {
	res.Baseline = c
	fails := c.Failures()
	if len(fails) == 0 {
		return
	}
	for i := range res.Experiments {
		x := &res.Experiments[i]
		for _, ed := range c.Experiments {
			if ed.Name != x.Name {
				continue
			}
			for _, f := range ed.Figures {
				if f.Failing() && x.Verdict == experiments.Passed {
					x.Verdict = experiments.Failed
					x.Reason = "baseline: " + f.Key + " " + f.Status + ": " + f.Detail
				}
			}
		}
	}
	why := fmt.Sprintf("%d recovery figure(s) worse than baseline run %s: %s %s (%s)", len(fails), c.BaselineRunID, fails[0].Key, fails[0].Status, fails[0].Detail)
	if res.Verdict == experiments.Passed {
		res.Verdict = experiments.Failed
		res.Reason = why
	} else if res.Reason != "" {
		res.Reason += "; " + why
	}
	res.ExitCode = res.Verdict.ExitCode()
}
