package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/report"
	"github.com/faultline-dev/faultline/runbooks"
)

func (m *Main) reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "turn result documents into an HTML page, JUnit XML or a Markdown summary",
		ArgsUsage: "RESULT.json...",
		Description: `Reads result documents ('faultline run --result-file', '--output json', or a daemon's
'faultline history RUN_ID --output json') and writes one report of them all:

  html      one self-contained page: per experiment, the fault windows, each guardrail
            against its threshold with breaches and the halt, the recorders' lanes
            (workload readiness, autoscaler replicas, breaker states), and the recovery
            figures with their objectives and baseline deltas. Opens offline; prints.
  junit     one testsuite per run, one testcase per experiment and per recovery
            objective, for Jenkins, GitLab and GitHub test reporters
  markdown  a short summary for a pull-request comment or a CI job summary
  text      the plain summary

Exit codes: 0 written, 4 a document could not be read (not a result, or a schema
version this faultline does not know), 5 the report could not be written.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "html", Usage: "html, junit, markdown or text"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the report to this file instead of standard output"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return exitWith(exitInvalid, errors.New("report needs at least one result document"))
			}
			format := c.String("format")
			if err := report.CheckFormat(format); err != nil {
				return exitWith(exitInvalid, err)
			}
			var results []*experiments.Result
			for _, path := range c.Args().Slice() {
				res, err := experiments.ReadResultFile(path)
				if err != nil {
					return exitWith(exitInvalid, err)
				}
				results = append(results, res)
			}
			return m.writeReport(format, c.String("output"), results...)
		},
	}
}

// writeReport renders in memory first, so that a failed render never leaves half a file.
func (m *Main) writeReport(format, path string, results ...*experiments.Result) error {
	var buf bytes.Buffer
	if err := report.Write(&buf, format, results...); err != nil {
		return exitWith(exitAborted, fmt.Errorf("write %s report: %w", format, err))
	}
	if path == "" || path == "-" {
		if _, err := m.Stdout.Write(buf.Bytes()); err != nil {
			return exitWith(exitAborted, err)
		}
		return nil
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return exitWith(exitAborted, fmt.Errorf("write %s report: %w", format, err))
	}
	return nil
}

func (m *Main) compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "compare a run's recovery figures with a baseline run's",
		ArgsUsage: "BASE.json CURRENT.json",
		Description: `Matches the experiments of the two result documents by name and compares every recovery
figure (time to detect, time to recover per guardrail and per workload, autoscaler
reaction, breaker open time, halt latency, ...) by its key. A figure is a regression when
it got worse than the baseline by more than its tolerance: 20% by default; --tolerance,
or the runbook's baseline: section (--runbook), sets it, per figure key or metric name.
The measurements' own uncertainties are added to the tolerance.

A figure the baseline has and this run lacks (the experiment did not run, a recorder is
gone) or did not reach (a breaker that never closed) fails the comparison too: what
cannot be compared is not a pass. A changed runbook (its digest) is a warning.

Exit codes: 0 no regression, 1 a figure regressed, is missing or was not reached,
4 a document could not be read (corrupt, not a result, an unknown schema version).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "runbook", Usage: "read tolerances from this runbook's baseline: section"},
			&cli.StringFlag{Name: "tolerance", Usage: "the default tolerance: a percentage (20%), a duration (5s) or a number"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text, json (the comparison) or markdown"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return exitWith(exitInvalid, errors.New("compare needs BASE.json and CURRENT.json"))
			}
			out := c.String("output")
			if out != "text" && out != "json" && out != "markdown" {
				return exitWith(exitInvalid, fmt.Errorf("--output must be text, json or markdown, got %q", out))
			}
			tol, err := tolerances(c.String("runbook"), c.String("tolerance"))
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			base, err := readBaseline(c.Args().Get(0))
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			cur, err := experiments.ReadResultFile(c.Args().Get(1))
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			cmp := report.Compare(base, cur, tol)
			switch out {
			case "json":
				if err := printJSON(m.Stdout, cmp); err != nil {
					return exitWith(exitAborted, err)
				}
			case "markdown":
				cur.Baseline = cmp
				if err := report.Markdown(m.Stdout, cur); err != nil {
					return exitWith(exitAborted, err)
				}
			default:
				printComparison(m.Stdout, cmp)
			}
			if len(cmp.Failures()) > 0 {
				return exitWith(exitFailed, nil)
			}
			return nil
		},
	}
}

func tolerances(runbookPath, def string) (*runbooks.Baseline, error) {
	b := &runbooks.Baseline{}
	if runbookPath != "" {
		rb, err := runbooks.Load(runbookPath)
		if err != nil {
			return nil, fmt.Errorf("--runbook: %w", err)
		}
		if rb.Baseline != nil {
			b = rb.Baseline
		}
	}
	if def != "" {
		if _, err := runbooks.ParseTolerance(def); err != nil {
			return nil, fmt.Errorf("--tolerance: %w", err)
		}
		b.Tolerance = def
	}
	return b, nil
}

// readBaseline reads a baseline document; its errors say that it is the baseline that is wrong.
func readBaseline(path string) (*experiments.Result, error) {
	res, err := experiments.ReadResultFile(path)
	if err != nil {
		return nil, fmt.Errorf("baseline %w", err)
	}
	if res.Verdict == experiments.DryRun {
		return nil, fmt.Errorf("baseline %s is a dry run: it has no recovery figures to compare with", path)
	}
	return res, nil
}

func printComparison(w io.Writer, c *experiments.BaselineComparison) {
	for _, warn := range c.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "compared with baseline run %s:\n", c.BaselineRunID)
	for _, x := range c.Experiments {
		fmt.Fprintf(w, "experiment %s\n", x.Name)
		for _, f := range x.Figures {
			mark := "  "
			if f.Failing() {
				mark = "✗ "
			}
			tol := ""
			if f.Status != experiments.StatusRegressed { // a regression's detail names it already
				tol = " (tolerance " + f.Tolerance + ")"
			}
			fmt.Fprintf(w, "  %s%-10s %-52s %s%s\n", mark, f.Status, f.Key, f.Detail, tol)
		}
	}
	if n := len(c.Failures()); n > 0 {
		fmt.Fprintf(w, "%d figure(s) got worse than the baseline\n", n)
	} else {
		fmt.Fprintln(w, "no figure got worse beyond its tolerance")
	}
}

// runReports is what `faultline run` was asked to produce besides its result: reports in files
// (--report FORMAT=FILE), a comparison with a baseline (--baseline), the GitHub job summary.
type runReports struct {
	files    [][2]string // format, path
	baseline *experiments.Result
	tol      *runbooks.Baseline
}

func reportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "report", Usage: "also write a report, FORMAT=FILE with FORMAT html, junit, markdown or text; repeat for several (--report html=gameday.html --report junit=junit.xml)"},
		&cli.StringFlag{Name: "baseline", Usage: "compare the recovery figures with this earlier result document; a figure worse than its tolerance fails the run (exit 1)"},
	}
}

// prepareReports checks the report flags and reads the baseline before anything is touched: a
// corrupt or unknown baseline is exit 4 with nothing injected.
func prepareReports(c *cli.Context, rb *runbooks.Runbook) (*runReports, error) {
	r := &runReports{tol: rb.Baseline}
	for _, spec := range c.StringSlice("report") {
		format, path, ok := strings.Cut(spec, "=")
		if !ok || path == "" {
			return nil, exitWith(exitInvalid, fmt.Errorf("--report %q: write FORMAT=FILE, e.g. html=gameday.html", spec))
		}
		if err := report.CheckFormat(format); err != nil {
			return nil, exitWith(exitInvalid, fmt.Errorf("--report %q: %w", spec, err))
		}
		r.files = append(r.files, [2]string{format, path})
	}
	if path := c.String("baseline"); path != "" {
		base, err := readBaseline(path)
		if err != nil {
			return nil, exitWith(exitInvalid, fmt.Errorf("%w; nothing was injected", err))
		}
		r.baseline = base
	}
	return r, nil
}

// finish compares with the baseline (which may fail the run) and writes the reports.
func (r *runReports) finish(m *Main, res *experiments.Result) {
	if r.baseline != nil && res.Verdict != experiments.DryRun {
		report.ApplyComparison(res, report.Compare(r.baseline, res, r.tol))
		for _, w := range res.Baseline.Warnings {
			fmt.Fprintf(m.Stderr, "faultline: baseline: %s\n", w)
		}
	}
	for _, f := range r.files {
		if err := m.writeReport(f[0], f[1], res); err != nil {
			fmt.Fprintf(m.Stderr, "faultline: %v\n", err)
		}
	}
	// A GitHub Actions job gets the Markdown summary on its summary page.
	if path := os.Getenv("GITHUB_STEP_SUMMARY"); path != "" {
		var buf bytes.Buffer
		if err := report.Markdown(&buf, res); err == nil {
			if err := appendFile(path, buf.Bytes()); err != nil {
				fmt.Fprintf(m.Stderr, "faultline: GITHUB_STEP_SUMMARY: %v\n", err)
			}
		}
	}
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
