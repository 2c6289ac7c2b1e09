package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
)

func (m *Main) haltCommand() *cli.Command {
	return &cli.Command{
		Name:      "halt",
		Usage:     "halt running experiments: every fault is reverted at once",
		ArgsUsage: "[RUN_ID...]",
		Description: `Finds runs started by 'faultline run' with the same --state-dir, records the request and
signals each run, which reverts all of its faults in parallel and exits 2 (halted).
With no RUN_ID and no --all, halts the only active run, or lists them if there are several.

With --server (or $FAULTLINE_SERVER) the runs are a daemon's, halted through its API with an
admin token (--token-file or $FAULTLINE_TOKEN); --all is the daemon's kill switch. The
daemon answers once every fault of the halted runs is reverted.`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "halt every active run"},
			&cli.StringFlag{Name: "reason", Value: "halted by operator", Usage: "recorded in the run's result"},
		}, apiFlags()...),
		Action: func(c *cli.Context) error {
			if c.String("server") != "" {
				return m.haltViaServer(c)
			}
			stateDir := c.String("state-dir")
			runs, err := activeRuns(stateDir)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			want := map[string]bool{}
			for _, id := range c.Args().Slice() {
				want[id] = true
			}
			var targets []runState
			for _, r := range runs {
				if c.Bool("all") || want[r.RunID] || (len(want) == 0 && len(runs) == 1) {
					targets = append(targets, r)
				}
				delete(want, r.RunID)
			}
			for id := range want {
				return exitWith(exitInvalid, fmt.Errorf("no active run %q in %s", id, stateDir))
			}
			if len(targets) == 0 {
				if len(runs) > 1 {
					for _, r := range runs {
						fmt.Fprintf(m.Stdout, "%s  %s  pid %d  since %s\n", r.RunID, r.Runbook, r.Owner.PID, r.StartedAt.Format(time.RFC3339))
					}
					return exitWith(exitInvalid, errors.New("several runs are active: name one or use --all"))
				}
				if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
					// A mistyped --state-dir would otherwise look like a system with nothing running.
					fmt.Fprintf(m.Stdout, "no active runs: there is no state directory %s; did you mean %s?\n", stateDir, stateDirHint(stateDir))
					return nil
				}
				fmt.Fprintln(m.Stdout, "no active runs")
				return nil
			}
			who := "unknown"
			if u, err := user.Current(); err == nil {
				who = u.Username
			}
			var errs []error
			for _, r := range targets {
				req := haltRequest{Reason: c.String("reason"), By: who, At: time.Now()}
				if err := writeJSONFile(filepath.Join(runsDir(stateDir), r.RunID+".halt"), req); err != nil {
					errs = append(errs, fmt.Errorf("run %s: record halt: %w", r.RunID, err))
					continue
				}
				// SIGUSR1 rather than SIGTERM so the run can tell an operator's halt from a shutdown.
				if err := syscall.Kill(r.Owner.PID, syscall.SIGUSR1); err != nil && !errors.Is(err, os.ErrProcessDone) {
					errs = append(errs, fmt.Errorf("run %s: signal pid %d: %w", r.RunID, r.Owner.PID, err))
					continue
				}
				fmt.Fprintf(m.Stdout, "halt sent to run %s (pid %d)\n", r.RunID, r.Owner.PID)
			}
			if len(errs) > 0 {
				return exitWith(exitAborted, errors.Join(errs...))
			}
			return nil
		},
	}
}

// haltViaServer halts a daemon's runs through its API: the named runs, every run (--all, the
// kill switch), or the only active one.
func (m *Main) haltViaServer(c *cli.Context) error {
	a, err := newAPIClient(c)
	if err != nil {
		return err
	}
	ids := c.Args().Slice()
	if c.Bool("all") && len(ids) > 0 {
		return exitWith(exitInvalid, errors.New("name runs or use --all, not both"))
	}
	body := api.ReasonRequest{Reason: c.String("reason")}
	if c.Bool("all") {
		var hr api.HaltResponse
		if err := a.do(c.Context, http.MethodPost, "/api/v1/halt", body, &hr); err != nil {
			return apiExit(fmt.Errorf("halt all: %w", err))
		}
		if len(hr.Halted) == 0 {
			fmt.Fprintln(m.Stdout, "no active runs")
			return nil
		}
		for _, id := range hr.Halted {
			fmt.Fprintf(m.Stdout, "halted run %s\n", id)
		}
		return nil
	}
	if len(ids) == 0 {
		runs, err := a.runs(c.Context, url.Values{"limit": {"1"}})
		if err != nil {
			return apiExit(err)
		}
		switch len(runs.Active) {
		case 0:
			fmt.Fprintln(m.Stdout, "no active runs")
			return nil
		case 1:
			ids = []string{runs.Active[0].RunID}
		default:
			printRunTable(m.Stdout, runs.Active, nil, time.Now())
			return exitWith(exitInvalid, errors.New("several runs are active: name one or use --all"))
		}
	}
	var errs []error
	for _, id := range ids {
		var hr api.HaltResponse
		if err := a.do(c.Context, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/halt", body, &hr); err != nil {
			errs = append(errs, err) // the daemon's message names the run
			continue
		}
		fmt.Fprintf(m.Stdout, "halted run %s\n", id)
	}
	if len(errs) > 0 {
		return apiExit(errors.Join(errs...))
	}
	return nil
}
