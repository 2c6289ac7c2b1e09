package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// Text writes a plain-text summary of a run (JUnit's system-out, logs).
func Text(w io.Writer, res *experiments.Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s of runbook %s on %s: %s (exit %d)\n", res.RunID, res.Runbook, res.Environment, res.Verdict, res.ExitCode)
	if res.Reason != "" {
		fmt.Fprintf(&b, "  %s\n", res.Reason)
	}
	if h := res.Halt; h != nil {
		fmt.Fprintf(&b, "halted at %s by %s: %s\n", h.At.Format(time.RFC3339), h.Source, h.Reason)
	}
	for i := range res.Experiments {
		x := &res.Experiments[i]
		fmt.Fprintf(&b, "experiment %s: %s", x.Name, x.Verdict)
		if x.Reason != "" {
			fmt.Fprintf(&b, " (%s)", x.Reason)
		}
		b.WriteString("\n")
		for _, o := range x.Objectives {
			mark := "ok  "
			if !o.Passed {
				mark = "FAIL"
			}
			fmt.Fprintf(&b, "  %s objective %s %s: %s (limit %s)\n", mark, o.Name, o.Figure, o.Value, o.Limit)
		}
		for _, f := range Figures(res, x) {
			fmt.Fprintf(&b, "  %-48s %s\n", f.Key, figureText(f))
		}
	}
	for _, f := range res.Baseline.Failures() {
		fmt.Fprintf(&b, "baseline %s: %s %s (tolerance %s)\n", f.Status, f.Key, f.Detail, f.Tolerance)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func figureText(f experiments.Figure) string {
	if f.Value == nil {
		if f.Note != "" {
			return "not reached: " + f.Note
		}
		return "not reached"
	}
	s := FormatValue(*f.Value, f.Unit)
	if f.Uncertainty > 0 {
		s += " ± " + FormatValue(f.Uncertainty, f.Unit)
	}
	return s
}
