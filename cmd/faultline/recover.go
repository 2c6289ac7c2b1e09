package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
)

func (m *Main) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "revert every fault a crashed or killed run left applied",
		Description: `Reads the ledger in --state-dir (or, with --ledger kubernetes, the daemon's ledger
ConfigMaps in --namespace) and reverts every fault that is not marked reverted,
using only what the ledger recorded. Faults owned by a run that is still alive are left
alone (halt it instead) unless --force is given. Then removes leftovers that no ledger
entry owns (e.g. FAULTLINE-* iptables chains from a crash before the ledger was written).

Exit 0 when nothing is left applied, 6 when a revert failed (the entry stays in the ledger).`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "also revert faults of runs that are still alive"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list the ledger's faults that would be reverted; change nothing"},
		}, append(kubeFlags(), recoverLedgerFlags()...)...),
		Action: func(c *cli.Context) error {
			log, err := m.logger(c)
			if err != nil {
				return err
			}
			reg, err := registry()
			if err != nil {
				return exitWith(exitAborted, err)
			}
			ledger, live, err := recoverLedger(c)
			if err != nil {
				return err
			}
			sum, err := experiments.Recover(c.Context, ledger, reg, injectors.Env{Logger: log, Kube: kubeClient(c)},
				experiments.RecoverOptions{Force: c.Bool("force"), DryRun: c.Bool("dry-run"), Live: live})
			for _, line := range sum.Lines {
				fmt.Fprintln(m.Stdout, line)
			}
			if err != nil {
				return exitWith(exitRevertIncomplete, err)
			}
			switch {
			case c.Bool("dry-run") && sum.WouldRevert > 0:
				fmt.Fprintf(m.Stdout, "dry run: %d fault(s) would be reverted; nothing was changed (leftovers that no ledger entry owns are found and removed only by a real recover)\n", sum.WouldRevert)
			case sum.Reverted == 0 && sum.Swept == 0 && sum.Skipped == 0 && sum.WouldRevert == 0:
				fmt.Fprintf(m.Stdout, "nothing to recover: the ledger %s holds no applied faults\n", ledger.Where())
			}
			if sum.Skipped > 0 {
				return exitWith(exitRevertIncomplete, fmt.Errorf("%d fault(s) belong to runs that are still alive: halt them, or use --force", sum.Skipped))
			}
			return nil
		},
	}
}
