package experiments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// RecoverOptions vary Recover.
type RecoverOptions struct {
	// Live reports whether an entry's owner is still running its experiment; such entries are
	// left alone. Nil means ledger.Owner.Alive (a local process check).
	Live func(ledger.Owner) bool
	// Force reverts even entries of live owners.
	Force bool
	// DryRun lists what would be reverted.
	DryRun bool
}

// RecoverSummary says what Recover did, a line per action.
type RecoverSummary struct {
	Lines    []string
	Reverted int
	// WouldRevert counts what a dry run would revert.
	WouldRevert int
	Skipped     int
	Swept       int
}

// Recover reverts every open ledger entry whose owner is gone, from the ledger record alone, then
// asks each injector that leaves named artifacts to sweep those no live entry owns (once per
// sweep scope). It is
// `faultline recover`, and what every daemon start and every new leader runs first.
func Recover(ctx context.Context, led ledger.Ledger, reg *injectors.Registry, env injectors.Env, opts RecoverOptions) (RecoverSummary, error) {
	var sum RecoverSummary
	live := opts.Live
	if live == nil {
		live = ledger.Owner.Alive
	}
	open, err := ledger.OpenEntries(ctx, led)
	if err != nil {
		return sum, err
	}
	// A revert must finish even if the caller is being cancelled: that is what it is for.
	rctx := context.WithoutCancel(ctx)
	stillOwned := map[string]bool{}
	var errs []error
	for _, e := range open {
		if !opts.Force && live(e.Owner) {
			stillOwned[e.RunID] = true
			sum.Skipped++
			sum.Lines = append(sum.Lines, fmt.Sprintf("skipped %s (%s on %v): run %s is still alive (%s)", e.ID, e.Kind, e.Targets, e.RunID, e.Owner))
			continue
		}
		if opts.DryRun {
			sum.WouldRevert++
			sum.Lines = append(sum.Lines, fmt.Sprintf("would revert %s (%s on %v, state %s)", e.ID, e.Kind, e.Targets, e.State))
			continue
		}
		inj, err := reg.Get(e.Kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %s: %w", e.ID, err))
			continue
		}
		rerr := inj.Revert(rctx, e.Record, env)
		now := time.Now()
		merr := led.Modify(rctx, e.ID, func(en *ledger.Entry) {
			if rerr != nil {
				en.State, en.LastError = ledger.StateRevertFailed, rerr.Error()
				return
			}
			en.State, en.RevertedAt, en.LastError = ledger.StateReverted, &now, ""
		})
		if rerr != nil {
			errs = append(errs, fmt.Errorf("revert %s (%s on %v): %w", e.ID, e.Kind, e.Targets, rerr))
			continue
		}
		if merr != nil {
			errs = append(errs, merr)
		}
		sum.Reverted++
		sum.Lines = append(sum.Lines, fmt.Sprintf("reverted %s (%s on %v) from run %s", e.ID, e.Kind, e.Targets, e.RunID))
	}
	if opts.DryRun {
		return sum, errors.Join(errs...)
	}
	swept := map[string]bool{}
	for _, k := range reg.Kinds() {
		inj, _ := reg.Get(k)
		sw, ok := inj.(injectors.Sweeper)
		if !ok {
			continue
		}
		if sc, ok := inj.(injectors.SweepScoper); ok {
			if swept[sc.SweepScope()] {
				continue
			}
			swept[sc.SweepScope()] = true
		}
		removed, err := sw.Sweep(rctx, func(runID string) bool { return stillOwned[runID] }, env)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s leftovers: %w", k, err))
		}
		for _, r := range removed {
			sum.Swept++
			sum.Lines = append(sum.Lines, fmt.Sprintf("removed leftover %s (%s) owned by no ledger entry", r, k))
		}
	}
	if _, err := led.Prune(rctx, 7*24*time.Hour); err != nil {
		errs = append(errs, err)
	}
	return sum, errors.Join(errs...)
}
