package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
)

// A run ID the daemon just returned may take a moment to become visible, and a daemon may
// restart while a run is followed; these bound how long --wait puts up with either.
const (
	waitNotFoundGrace = 10 * time.Second
	waitUnreachable   = time.Minute
)

func (m *Main) triggerCommand() *cli.Command {
	return &cli.Command{
		Name:      "trigger",
		Usage:     "start a run of a daemon's schedule now, outside its schedule but inside its policy",
		ArgsUsage: "SCHEDULE|RUNBOOK",
		Description: `Asks the daemon (--server or $FAULTLINE_SERVER, an admin token from --token-file or
$FAULTLINE_TOKEN) to run a configured schedule's runbook now. Blackouts, a paused daemon
and concurrency limits still apply: the daemon refuses (exit 4) rather than overlap.

Prints the run ID. With --wait, follows the run until its verdict, prints the result as
'faultline run' does (--output json: the result document) and exits with the run's exit code:

` + exitCodesHelp + `

Without --wait: 0 started, 4 refused, 5 the daemon could not be reached.
Interrupting --wait stops following; the run goes on in the daemon.`,
		Flags: append(apiFlags(),
			&cli.BoolFlag{Name: "wait", Usage: "follow the run until it ends and exit with its exit code"},
			&cli.DurationFlag{Name: "poll-interval", Value: time.Second, Usage: "how often --wait asks for the run's state"},
			outputFlag("with --wait: text (the result for people) or json (the result document)"),
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exitWith(exitInvalid, errors.New("trigger needs exactly one schedule name or runbook"))
			}
			output, err := checkOutput(c)
			if err != nil {
				return err
			}
			if c.Duration("poll-interval") <= 0 {
				return exitWith(exitInvalid, errors.New("--poll-interval must be positive"))
			}
			a, err := newAPIClient(c)
			if err != nil {
				return err
			}
			var tr api.TriggerResponse
			if err := a.do(c.Context, http.MethodPost, "/api/v1/runs", api.TriggerRequest{Runbook: c.Args().First()}, &tr); err != nil {
				return apiExit(err) // the daemon's message names the runbook
			}
			if !c.Bool("wait") {
				fmt.Fprintln(m.Stdout, tr.RunID)
				return nil
			}
			fmt.Fprintf(m.Stderr, "run %s started; waiting for its verdict\n", tr.RunID)
			run, err := m.follow(c.Context, a, tr.RunID, c.Duration("poll-interval"))
			if err != nil {
				return exitWith(exitAborted, fmt.Errorf("%w; the run goes on in the daemon: 'faultline history %s', 'faultline halt --server %s %s'",
					err, tr.RunID, a.base, tr.RunID))
			}
			switch {
			case output == "json" && run.Result != nil:
				err = printJSON(m.Stdout, run.Result)
			case output == "json":
				err = printJSON(m.Stdout, run)
			default:
				printRun(m.Stdout, run)
			}
			if err != nil {
				return exitWith(exitAborted, err)
			}
			v := run.Summary.Verdict
			if run.Result != nil {
				v = run.Result.Verdict
			}
			if code := verdictExit(v); code != 0 {
				return exitWith(code, nil)
			}
			return nil
		},
	}
}

// follow polls the run until it has finished. A run not yet visible and a daemon briefly
// unreachable are waited out, within bounds.
func (m *Main) follow(ctx context.Context, a *apiClient, id string, every time.Duration) (*api.RunResponse, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var missingSince, failingSince time.Time
	for {
		run, err := a.run(ctx, id)
		ae, isAPI := errors.AsType[*apiError](err)
		switch {
		case err == nil:
			if run.State == api.RunFinished {
				return run, nil
			}
			missingSince, failingSince = time.Time{}, time.Time{}
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("stopped waiting for run %s: %w", id, err)
		case isAPI && ae.code == http.StatusNotFound:
			if missingSince.IsZero() {
				missingSince = time.Now()
			} else if time.Since(missingSince) > waitNotFoundGrace {
				return nil, fmt.Errorf("run %s: %w", id, err)
			}
		case isAPI && ae.code < 500:
			return nil, fmt.Errorf("run %s: %w", id, err)
		default: // unreachable or failing: the daemon may be restarting
			if failingSince.IsZero() {
				failingSince = time.Now()
				fmt.Fprintf(m.Stderr, "faultline: %v; still trying\n", err)
			} else if time.Since(failingSince) > waitUnreachable {
				return nil, fmt.Errorf("run %s: gave up after %s: %w", id, waitUnreachable, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting for run %s: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
