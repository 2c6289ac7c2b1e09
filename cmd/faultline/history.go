package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/report"
)

func (m *Main) historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "list a daemon's runs, or show one run's result",
		ArgsUsage: "[RUN_ID]",
		Description: `Without RUN_ID: the runs in progress, then finished runs newest first, from the daemon's
API (--server or $FAULTLINE_SERVER, token from --token-file or $FAULTLINE_TOKEN).
With RUN_ID: that run's result, as 'faultline run' prints it; --output json prints
{"state": "finished"|"running", "summary": …, "result": <the result document>}.

Exit codes: 0 answered, 4 refused (bad filter, unknown run, no or wrong token),
5 the daemon could not be reached.`,
		Flags: append(apiFlags(),
			&cli.StringFlag{Name: "schedule", Usage: "only runs of this schedule"},
			&cli.StringFlag{Name: "runbook", Usage: "only runs of this runbook (its metadata name)"},
			&cli.StringFlag{Name: "verdict", Usage: "only finished runs with this verdict (passed, failed, halted, not-started, refused, aborted, revert-incomplete)"},
			&cli.StringFlag{Name: "since", Usage: "only runs started since: a duration back from now (24h) or an RFC 3339 time"},
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "at most this many finished runs"},
			&cli.StringFlag{Name: "report", Usage: "with RUN_ID: print the run's report instead, in this format (html, junit, markdown, text)"},
			&cli.StringFlag{Name: "report-file", Usage: "with --report: write the report to this file"},
			outputFlag("text (a table, or the result for people) or json"),
		),
		Subcommands: []*cli.Command{m.historyMigrateCommand()},
		Action: func(c *cli.Context) error {
			output, err := checkOutput(c)
			if err != nil {
				return err
			}
			if c.NArg() > 1 {
				return exitWith(exitInvalid, fmt.Errorf("history takes at most one RUN_ID, got %d arguments", c.NArg()))
			}
			a, err := newAPIClient(c)
			if err != nil {
				return err
			}
			if c.NArg() == 1 {
				for _, f := range []string{"schedule", "runbook", "verdict", "since", "limit"} {
					if c.IsSet(f) {
						return exitWith(exitInvalid, fmt.Errorf("--%s lists runs; it does not go with a RUN_ID", f))
					}
				}
				if f := c.String("report"); f != "" {
					return m.runReport(c, a, c.Args().First(), f)
				}
				return m.showRun(c, a, c.Args().First(), output)
			}
			if c.IsSet("report") {
				return exitWith(exitInvalid, errors.New("--report needs a RUN_ID"))
			}
			q := url.Values{}
			for _, f := range []string{"schedule", "runbook", "verdict", "since"} {
				if v := c.String(f); v != "" {
					q.Set(f, v)
				}
			}
			if n := c.Int("limit"); n < 1 {
				return exitWith(exitInvalid, fmt.Errorf("--limit must be at least 1, got %d", n))
			}
			q.Set("limit", strconv.Itoa(c.Int("limit")))
			runs, err := a.runs(c.Context, q)
			if err != nil {
				return apiExit(err)
			}
			if output == "json" {
				if err := printJSON(m.Stdout, runs); err != nil {
					return exitWith(exitAborted, err)
				}
				return nil
			}
			if len(runs.Active)+len(runs.Finished) == 0 {
				fmt.Fprintln(m.Stdout, "no runs")
				return nil
			}
			printRunTable(m.Stdout, runs.Active, runs.Finished, time.Now())
			return nil
		},
	}
}

func (m *Main) showRun(c *cli.Context, a *apiClient, id, output string) error {
	run, err := a.run(c.Context, id)
	if err != nil {
		return apiExit(err)
	}
	if output == "json" {
		if err := printJSON(m.Stdout, run); err != nil {
			return exitWith(exitAborted, err)
		}
		return nil
	}
	printRun(m.Stdout, run)
	return nil
}

// printRun prints a finished run's result as `faultline run` does, or a running run's summary.
func printRun(w io.Writer, run *api.RunResponse) {
	s := run.Summary
	switch {
	case run.State == api.RunRunning:
		fmt.Fprintf(w, "run %s · runbook %s · running since %s", s.RunID, s.Runbook, ago(s.StartedAt, time.Now()))
		if s.Schedule != "" {
			fmt.Fprintf(w, " · schedule %s", s.Schedule)
		}
		fmt.Fprintln(w)
	case run.Result != nil:
		if s.Schedule != "" || s.Trigger != "" {
			fmt.Fprintf(w, "schedule %s · trigger %s\n", dash(s.Schedule), dash(s.Trigger))
		}
		printResult(w, run.Result)
	default: // stored without a result document
		fmt.Fprintf(w, "run %s · runbook %s · %s", s.RunID, s.Runbook, s.Verdict)
		if s.Reason != "" {
			fmt.Fprintf(w, " — %s", s.Reason)
		}
		fmt.Fprintln(w)
	}
}

// runReport renders a finished run's stored result here, as 'faultline report' would.
func (m *Main) runReport(c *cli.Context, a *apiClient, id, format string) error {
	if err := report.CheckFormat(format); err != nil {
		return exitWith(exitInvalid, fmt.Errorf("--report: %w", err))
	}
	run, err := a.run(c.Context, id)
	if err != nil {
		return apiExit(err)
	}
	if run.Result == nil {
		return exitWith(exitInvalid, fmt.Errorf("run %s has no result yet (%s)", id, run.State))
	}
	return m.writeReport(format, c.String("report-file"), run.Result)
}
