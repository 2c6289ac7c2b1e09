package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/safety"
)

func (m *Main) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "revert every fault a crashed or killed run left applied",
		Description: `Reads the ledger in --state-dir and reverts every fault that is not marked reverted,
using only what the ledger recorded. Faults owned by a run that is still alive are left
alone (halt it instead) unless --force is given. Then removes leftovers that no ledger
entry owns (e.g. FAULTLINE-* iptables chains from a crash before the ledger was written).

Exit 0 when nothing is left applied, 6 when a revert failed (the entry stays in the ledger).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "also revert faults of runs that are still alive"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be reverted"},
		},
		Action: func(c *cli.Context) error {
			log, err := m.logger(c)
			if err != nil {
				return err
			}
			reg, err := registry()
			if err != nil {
				return exitWith(exitAborted, err)
			}
			ledger, err := safety.OpenLedger(ledgerPath(c.String("state-dir")))
			if err != nil {
				return exitWith(exitAborted, err)
			}
			sum, err := recoverAll(c.Context, ledger, reg, injectors.Env{Logger: log}, c.Bool("force"), c.Bool("dry-run"))
			for _, line := range sum.lines {
				fmt.Fprintln(m.Stdout, line)
			}
			if err != nil {
				return exitWith(exitRevertIncomplete, err)
			}
			if sum.reverted == 0 && sum.swept == 0 && sum.skipped == 0 {
				fmt.Fprintln(m.Stdout, "nothing to recover: the ledger holds no applied faults")
			}
			if sum.skipped > 0 {
				return exitWith(exitRevertIncomplete, fmt.Errorf("%d fault(s) belong to runs that are still alive: halt them, or use --force", sum.skipped))
			}
			return nil
		},
	}
}

type recoverSummary struct {
	lines                    []string
	reverted, skipped, swept int
}

// recoverAll reverts open ledger entries and sweeps unowned artifacts. Used by `recover` and at
// every daemon start.
func recoverAll(ctx context.Context, ledger safety.Ledger, reg *injectors.Registry, env injectors.Env, force, dryRun bool) (recoverSummary, error) {
	var sum recoverSummary
	open, err := safety.OpenEntries(ctx, ledger)
	if err != nil {
		return sum, err
	}
	stillOwned := map[string]bool{}
	var errs []error
	for _, e := range open {
		if e.Owner.Alive() && !force {
			stillOwned[e.RunID] = true
			sum.skipped++
			sum.lines = append(sum.lines, fmt.Sprintf("skipped %s (%s on %v): run %s is still alive as pid %d", e.ID, e.Kind, e.Targets, e.RunID, e.Owner.PID))
			continue
		}
		if dryRun {
			sum.lines = append(sum.lines, fmt.Sprintf("would revert %s (%s on %v, state %s)", e.ID, e.Kind, e.Targets, e.State))
			continue
		}
		inj, err := reg.Get(e.Kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %s: %w", e.ID, err))
			continue
		}
		rerr := inj.Revert(context.WithoutCancel(ctx), e.Record, env)
		now := time.Now()
		merr := ledger.Modify(context.WithoutCancel(ctx), e.ID, func(en *safety.Entry) {
			if rerr != nil {
				en.State, en.LastError = safety.StateRevertFailed, rerr.Error()
				return
			}
			en.State, en.RevertedAt, en.LastError = safety.StateReverted, &now, ""
		})
		if rerr != nil {
			errs = append(errs, fmt.Errorf("revert %s (%s on %v): %w", e.ID, e.Kind, e.Targets, rerr))
			continue
		}
		if merr != nil {
			errs = append(errs, merr)
		}
		sum.reverted++
		sum.lines = append(sum.lines, fmt.Sprintf("reverted %s (%s on %v) from run %s", e.ID, e.Kind, e.Targets, e.RunID))
	}
	if !dryRun {
		for _, k := range reg.Kinds() {
			inj, _ := reg.Get(k)
			sw, ok := inj.(injectors.Sweeper)
			if !ok {
				continue
			}
			removed, err := sw.Sweep(ctx, func(runID string) bool { return stillOwned[runID] }, env)
			if err != nil {
				errs = append(errs, fmt.Errorf("sweep %s leftovers: %w", k, err))
			}
			for _, r := range removed {
				sum.swept++
				sum.lines = append(sum.lines, fmt.Sprintf("removed leftover %s (%s) owned by no ledger entry", r, k))
			}
		}
		if _, err := ledger.Prune(ctx, 7*24*time.Hour); err != nil {
			errs = append(errs, err)
		}
	}
	return sum, errors.Join(errs...)
}
