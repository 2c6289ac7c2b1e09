package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/safety/ledger"
)

// recover, halt and a dry run never create a state directory; a missing one is named, not taken
// for a clean system.
func TestMissingStateDirIsNamedAndNotCreated(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "5s"})
	state := filepath.Join(t.TempDir(), "typo")

	out := faultline(t, state, "recover")
	if out.code != 4 || !strings.Contains(out.stderr, "no ledger at "+filepath.Join(state, "ledger.db")+"; did you mean") {
		t.Errorf("recover: exit %d, stderr %q; want 4 and \"no ledger at …; did you mean\"", out.code, out.stderr)
	}
	if out := faultline(t, state, "recover", "--dry-run"); out.code != 4 || strings.Contains(out.stdout, "nothing to recover") {
		t.Errorf("recover --dry-run: exit %d, stdout %q", out.code, out.stdout)
	}
	if out := faultline(t, state, "halt"); out.code != 0 || !strings.Contains(out.stdout, "there is no state directory "+state) {
		t.Errorf("halt: exit %d, stdout %q", out.code, out.stdout)
	}
	if out := faultline(t, state, "run", "--dry-run", rb); out.code != 0 || !strings.Contains(out.stdout, "dry run") {
		t.Errorf("run --dry-run: exit %d\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state dir %s exists after recover, halt and a dry run (stat: %v)", state, err)
	}
}

// recover --dry-run lists what it would revert and does not then claim there is nothing to do.
func TestRecoverDryRunSaysWhatItWouldDo(t *testing.T) {
	state := t.TempDir()
	l := mustLedger(t, state)
	e := &ledger.Entry{ID: "gone1-x-00", RunID: "gone1", Runbook: "rb", Experiment: "x", Fault: "f", Kind: "process-pause",
		Targets: []string{"pid 1 (init)"}, State: ledger.StateApplied, Record: []byte(`{}`),
		Owner: ledger.Owner{PID: 999999999, Host: "gone"}, RecordedAt: time.Now()}
	if err := l.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(state, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	out := faultline(t, state, "recover", "--dry-run")
	if out.code != 0 || !strings.Contains(out.stdout, "would revert gone1-x-00") || !strings.Contains(out.stdout, "1 fault(s) would be reverted") || strings.Contains(out.stdout, "nothing to recover") {
		t.Fatalf("recover --dry-run: exit %d\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	after, err := os.ReadFile(filepath.Join(state, "ledger.db"))
	if err != nil || string(after) != string(before) {
		t.Fatalf("recover --dry-run changed the ledger (err %v)", err)
	}
}
