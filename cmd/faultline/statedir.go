package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/faultline-dev/faultline/safety/ledger"
)

// wellKnownStateDirs are where a ledger usually is: the CLI's default and the container image's.
func wellKnownStateDirs() []string {
	return []string{defaultStateDir(), "/var/lib/faultline"}
}

// stateDirHint names a well-known state directory that exists, for "did you mean".
func stateDirHint(stateDir string) string {
	abs, _ := filepath.Abs(stateDir)
	for _, d := range wellKnownStateDirs() {
		if d == abs || d == stateDir {
			continue
		}
		if _, err := os.Stat(d); err == nil {
			return "--state-dir " + d
		}
	}
	return "another --state-dir (or $FAULTLINE_STATE_DIR)"
}

// noLedgerError says that --state-dir holds no ledger, and where one is, if anywhere known.
func noLedgerError(stateDir string) error {
	msg := fmt.Sprintf("no ledger at %s", ledgerPath(stateDir))
	abs, _ := filepath.Abs(stateDir)
	for _, d := range wellKnownStateDirs() {
		if d == abs || d == stateDir {
			continue
		}
		if _, err := os.Stat(ledgerPath(d)); err == nil {
			return fmt.Errorf("%s; did you mean --state-dir %s?", msg, d)
		}
	}
	return fmt.Errorf("%s; did you mean another --state-dir (or $FAULTLINE_STATE_DIR)? No ledger was found in %v either", msg, wellKnownStateDirs())
}

// openExistingLedger opens the ledger in stateDir without creating anything.
func openExistingLedger(stateDir string) (*ledger.FileLedger, error) {
	l, err := ledger.OpenExisting(ledgerPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noLedgerError(stateDir)
	}
	return l, err
}

// dryRunLedger is the ledger of a dry run, which must not create a state directory or a ledger:
// the engine writes nothing in a dry run, and a write that happened anyway is refused.
type dryRunLedger struct{ where string }

var errDryRunWrite = errors.New("a dry run does not write the ledger")

func (l dryRunLedger) Put(context.Context, ...*ledger.Entry) error { return errDryRunWrite }

func (l dryRunLedger) Modify(context.Context, string, func(*ledger.Entry)) error {
	return errDryRunWrite
}

func (l dryRunLedger) Entries(context.Context, func(*ledger.Entry) bool) ([]*ledger.Entry, error) {
	return nil, nil
}

func (l dryRunLedger) Prune(context.Context, time.Duration) (int, error) { return 0, nil }

func (l dryRunLedger) Where() string { return l.where + " (not written by a dry run)" }
