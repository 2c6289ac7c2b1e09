package experiments

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// failRevertRecord is the real file ledger with one injected error: the write that marks faults
// reverted fails.
type failRevertRecord struct{ *ledger.FileLedger }

func (l failRevertRecord) Put(ctx context.Context, entries ...*ledger.Entry) error {
	for _, e := range entries {
		if e.State == ledger.StateReverted {
			return errors.New("injected: disk full")
		}
	}
	return l.FileLedger.Put(ctx, entries...)
}

func TestLedgerWriteFailureAfterRevertIsInTheVerdict(t *testing.T) {
	vs := local.StartVictims(t, 1)
	eng, led := newEngine(t, nil)
	eng.Ledger = failRevertRecord{led}
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 100ms\n    faults:\n%s", pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})
	if res.Verdict != Aborted || res.ExitCode != 5 {
		t.Fatalf("verdict %s exit %d, want aborted/5: %s", res.Verdict, res.ExitCode, res.Reason)
	}
	for _, want := range []string{"injected: disk full", "faultline recover", "faults reverted"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason %q does not say %q", res.Reason, want)
		}
	}
	if vs[0].State() == "T" {
		t.Error("victim still stopped: the fault itself must be reverted")
	}
}

func TestLedgerEntryNamesTheRunbook(t *testing.T) {
	vs := local.StartVictims(t, 1)
	eng, led := newEngine(t, nil)
	// metadata.name (t) differs from environment.name (test) in header.
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 50ms\n    faults:\n%s", pauseFaults(vs))
	if res := eng.Run(context.Background(), rb, RunOptions{}); res.Verdict != Passed {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	all, err := led.Entries(context.Background(), nil)
	if err != nil || len(all) != 1 {
		t.Fatalf("entries %v, err %v", all, err)
	}
	if all[0].Runbook != "t" {
		t.Errorf("ledger entry runbook = %q, want the runbook's name %q", all[0].Runbook, "t")
	}
}
