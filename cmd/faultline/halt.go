package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func (m *Main) haltCommand() *cli.Command {
	return &cli.Command{
		Name:      "halt",
		Usage:     "halt running experiments: every fault is reverted at once",
		ArgsUsage: "[RUN_ID...]",
		Description: `Finds runs started by 'faultline run' with the same --state-dir, records the request and
signals each run, which reverts all of its faults in parallel and exits 2 (halted).
With no RUN_ID and no --all, halts the only active run, or lists them if there are several.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "halt every active run"},
			&cli.StringFlag{Name: "reason", Value: "halted by operator", Usage: "recorded in the run's result"},
		},
		Action: func(c *cli.Context) error {
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
