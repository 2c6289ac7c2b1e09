package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/faultline-dev/faultline/experiments"
)

var verdictIcon = map[experiments.Verdict]string{
	experiments.Passed: "✅", experiments.Failed: "❌", experiments.Halted: "🛑", experiments.NotStarted: "⏸️",
	experiments.Refused: "⛔", experiments.Aborted: "⚠️", experiments.RevertIncomplete: "🚨", experiments.DryRun: "📝",
}

// Markdown writes a short summary for a pull-request comment or a CI job summary: the verdict,
// one row per experiment, the objectives that failed and the figures with their baseline deltas.
func Markdown(w io.Writer, results ...*experiments.Result) error {
	var b strings.Builder
	for _, res := range results {
		markdownRun(&b, res)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func markdownRun(b *strings.Builder, res *experiments.Result) {
	fmt.Fprintf(b, "### %s faultline: `%s` %s on `%s`\n\n", verdictIcon[res.Verdict], md(res.Runbook), res.Verdict, md(res.Environment))
	if res.Reason != "" {
		fmt.Fprintf(b, "> %s\n\n", md(res.Reason))
	}
	fmt.Fprintf(b, "Run `%s` · exit %d · %s · %s\n\n", res.RunID, res.ExitCode, res.EndedAt.Sub(res.StartedAt).Round(1e6), versionLine(res))
	if len(res.Experiments) > 0 {
		b.WriteString("| experiment | verdict | reason |\n|---|---|---|\n")
		for _, x := range res.Experiments {
			fmt.Fprintf(b, "| %s | %s %s | %s |\n", md(x.Name), verdictIcon[x.Verdict], x.Verdict, md(x.Reason))
		}
		b.WriteString("\n")
	}
	for i := range res.Experiments {
		x := &res.Experiments[i]
		figs := Figures(res, x)
		if len(figs) == 0 && len(x.Objectives) == 0 {
			continue
		}
		fmt.Fprintf(b, "<details><summary>%s: recovery figures</summary>\n\n", md(x.Name))
		b.WriteString("| figure | value | objective | baseline |\n|---|---|---|---|\n")
		for _, f := range figs {
			fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", md(f.Key), md(figureText(f)), md(objectiveText(x, f.Key)), md(deltaText(res.Baseline.Delta(x.Name, f.Key))))
		}
		for _, o := range x.Objectives {
			if o.Figure == "" {
				fmt.Fprintf(b, "| %s | %s | %s | |\n", md(o.Name), md(o.Value), md(objText(o)))
			}
		}
		b.WriteString("\n</details>\n\n")
	}
	if c := res.Baseline; c != nil {
		fails := c.Failures()
		if len(fails) == 0 {
			fmt.Fprintf(b, "Baseline `%s`: no figure got worse beyond its tolerance.\n\n", c.BaselineRunID)
		} else {
			fmt.Fprintf(b, "**Baseline `%s`: %d figure(s) got worse**\n\n| figure | status | detail | tolerance |\n|---|---|---|---|\n", c.BaselineRunID, len(fails))
			for _, f := range fails {
				fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", md(f.Key), f.Status, md(f.Detail), md(f.Tolerance))
			}
			b.WriteString("\n")
		}
		for _, w := range c.Warnings {
			fmt.Fprintf(b, "> ⚠️ %s\n\n", md(w))
		}
	}
}

func versionLine(res *experiments.Result) string {
	v := res.FaultlineVersion
	if v == "" {
		v = "unknown"
	}
	s := "faultline " + v
	if res.RunbookDigest != "" {
		s += " · runbook " + short(res.RunbookDigest)
	}
	return s
}

func objectiveText(x *experiments.ExperimentResult, key string) string {
	var parts []string
	for _, o := range x.Objectives {
		if o.Figure == key {
			parts = append(parts, objText(o))
		}
	}
	return strings.Join(parts, "; ")
}

func objText(o experiments.ObjectiveResult) string {
	mark := "✅"
	if !o.Passed {
		mark = "❌"
	}
	s := mark + " " + o.Name + " ≤ " + o.Limit
	if o.Reason != "" && !o.Passed {
		s += ": " + o.Reason
	}
	return s
}

func deltaText(d *experiments.FigureDelta) string {
	if d == nil {
		return ""
	}
	switch d.Status {
	case experiments.StatusRegressed, experiments.StatusUnreached, experiments.StatusMissing:
		return "❌ " + d.Detail
	}
	return d.Detail
}

// md escapes what would break a table cell or start markup.
func md(s string) string {
	r := strings.NewReplacer("|", `\|`, "\n", " ", "\r", "", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}
