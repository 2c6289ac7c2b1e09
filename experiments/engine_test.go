package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// faulty wraps the real process-pause injector with injected errors (the only fakes here: the
// processes, signals, ledger and HTTP servers are real).
type faulty struct {
	process.Pause
	failApplyOf string // fault name whose Apply stops the process, then reports an error
	failRevert  bool
}

type faultyAction struct {
	injectors.Action
	fail bool
}

func (f faulty) Prepare(ctx context.Context, fl runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	a, err := f.Pause.Prepare(ctx, fl, env)
	if err != nil {
		return nil, err
	}
	return &faultyAction{Action: a, fail: fl.Name == f.failApplyOf}, nil
}

func (a *faultyAction) Apply(ctx context.Context, rec injectors.Recorder) error {
	if err := a.Action.Apply(ctx, rec); err != nil {
		return err
	}
	if a.fail {
		return errors.New("injected: apply failed after its side effect")
	}
	return nil
}

func (f faulty) Revert(ctx context.Context, rec json.RawMessage, env injectors.Env) error {
	if f.failRevert {
		return errors.New("injected: revert failed")
	}
	return f.Pause.Revert(ctx, rec, env)
}

func newEngine(t testing.TB, inj injectors.Injector) (*Engine, *ledger.FileLedger) {
	t.Helper()
	if inj == nil {
		inj = process.Pause{}
	}
	reg, err := injectors.NewRegistry(inj)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Injectors: reg, Probes: guardrail.DefaultProbes(), Ledger: l, RecoveryWindow: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)}, l
}

func parse(t testing.TB, format string, args ...any) *runbooks.Runbook {
	t.Helper()
	rb, err := runbooks.Parse("test.yaml", []byte(fmt.Sprintf(format, args...)))
	if err != nil {
		t.Fatalf("runbook: %v", err)
	}
	return rb
}

func pauseFaults(vs []*local.Victim) string {
	var b strings.Builder
	for i, v := range vs {
		fmt.Fprintf(&b, "      - {name: f%d, processPause: {pidFile: %q}}\n", i, v.PidFile)
	}
	return b.String()
}

const header = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: t}
environment: {name: test, type: local}
`

func TestPartialApplyFailureRevertsEverything(t *testing.T) {
	vs := local.StartVictims(t, 3)
	eng, led := newEngine(t, faulty{failApplyOf: "f1"})
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 30s\n    faults:\n%s", pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})

	if res.Verdict != Aborted || res.ExitCode != 5 {
		t.Fatalf("verdict %s exit %d, want aborted/5: %s", res.Verdict, res.ExitCode, res.Reason)
	}
	for i, v := range vs {
		if v.State() == "T" {
			t.Errorf("victim %d still stopped", i)
		}
	}
	f := res.Experiments[0].Faults
	if f[0].RevertedAt == nil || f[1].RevertedAt == nil {
		t.Errorf("the applied and the partly applied fault must both be reverted: %+v", f[:2])
	}
	if f[2].RecordedAt != nil {
		t.Errorf("the fault after the failure was recorded: %+v", f[2])
	}
	if open, _ := ledger.OpenEntries(context.Background(), led); len(open) != 0 {
		t.Errorf("%d ledger entries open", len(open))
	}
}

func TestRevertFailureIsRevertIncompleteAndStaysInLedger(t *testing.T) {
	vs := local.StartVictims(t, 1)
	eng, led := newEngine(t, faulty{failRevert: true})
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 100ms\n    faults:\n%s", pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})
	if res.Verdict != RevertIncomplete || res.ExitCode != 6 {
		t.Fatalf("verdict %s exit %d, want revert-incomplete/6", res.Verdict, res.ExitCode)
	}
	open, err := ledger.OpenEntries(context.Background(), led)
	if err != nil || len(open) != 1 || open[0].State != ledger.StateRevertFailed || !strings.Contains(open[0].LastError, "injected") {
		t.Fatalf("ledger = %+v (err %v), want one revert-failed entry", open, err)
	}
	// What the ledger kept is enough for the real injector to finish the job.
	if err := (process.Pause{}).Revert(context.Background(), open[0].Record, injectors.Env{}); err != nil {
		t.Fatal(err)
	}
	if vs[0].State() == "T" {
		t.Fatal("revert from the ledger record did not resume the victim")
	}
}

func TestHypothesisDeviationFailsWithoutHalting(t *testing.T) {
	vs := local.StartVictims(t, 1)
	guard, hyp := local.StartHealth(t), local.StartHealth(t)
	eng, _ := newEngine(t, nil)
	eng.Progress = func(p Progress) {
		if p.Phase == "observe" {
			hyp.Healthy.Store(false)
		}
		if p.Phase == "revert" {
			hyp.Healthy.Store(true)
		}
	}
	rb := parse(t, header+`guardrails:
  - {name: g, interval: 250ms, http: {url: %q}}
experiments:
  - name: x
    duration: 1s
    faults:
%s    hypothesis:
      - {name: h, interval: 250ms, for: 2, http: {url: %q}}
`, guard.URL, pauseFaults(vs), hyp.URL)
	res := eng.Run(context.Background(), rb, RunOptions{})
	if res.Verdict != Failed || res.ExitCode != 1 || res.Halt != nil {
		t.Fatalf("verdict %s exit %d halt %+v, want failed/1 without halt: %s", res.Verdict, res.ExitCode, res.Halt, res.Reason)
	}
	f := res.Experiments[0].Faults[0]
	if held := f.RevertedAt.Sub(*f.AppliedAt); held < time.Second {
		t.Fatalf("faults held %s: a hypothesis deviation must not cut the window short", held)
	}
	if h := res.Experiments[0].Hypothesis[0]; !h.Breached || h.Name != "h" {
		t.Fatalf("hypothesis result %+v, want breached", h)
	}
}

func TestRecoveryWindowMissedFails(t *testing.T) {
	vs := local.StartVictims(t, 1)
	guard := local.StartHealth(t)
	eng, _ := newEngine(t, nil)
	eng.Progress = func(p Progress) {
		if p.Phase == "revert" {
			guard.Healthy.Store(false) // the system "does not come back" after the faults are gone
		}
	}
	rb := parse(t, header+`guardrails:
  - {name: g, interval: 250ms, http: {url: %q}}
experiments:
  - name: x
    duration: 300ms
    faults:
%s    recovery: {within: 700ms}
`, guard.URL, pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})
	x := res.Experiments[0]
	if res.Verdict != Failed || x.Recovery == nil || x.Recovery.Recovered || !strings.Contains(x.Reason, "did not hold again within 700ms") {
		t.Fatalf("verdict %s recovery %+v reason %q; want failed, not recovered", res.Verdict, x.Recovery, x.Reason)
	}
	var after int
	for _, o := range x.Guardrails[0].Observations {
		if o.Phase == "after" {
			after++
		}
	}
	if after < 2 {
		t.Fatalf("%d after-phase observations, want the window to be watched", after)
	}
}

func TestHaltStopsTheGameDay(t *testing.T) {
	vs := local.StartVictims(t, 2)
	eng, _ := newEngine(t, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	eng.Progress = func(p Progress) {
		if p.Phase == "observe" && p.Experiment == "first" {
			cancel(&HaltRequest{Source: "operator", Reason: "stop"})
		}
	}
	rb := parse(t, header+`experiments:
  - name: first
    duration: 30s
    faults: [{processPause: {pidFile: %q}}]
  - name: second
    duration: 30s
    faults: [{processPause: {pidFile: %q}}]
`, vs[0].PidFile, vs[1].PidFile)
	res := eng.Run(ctx, rb, RunOptions{})
	if res.Verdict != Halted || len(res.Experiments) != 1 || res.Halt.Source != "operator" {
		t.Fatalf("verdict %s, %d experiments, halt %+v; want halted after the first", res.Verdict, len(res.Experiments), res.Halt)
	}
	if vs[0].State() == "T" || vs[1].State() == "T" {
		t.Fatal("a victim is still stopped")
	}
}

func TestWorse(t *testing.T) {
	order := []Verdict{Passed, Failed, NotStarted, Halted, Refused, Aborted, RevertIncomplete}
	for i, a := range order {
		for j, b := range order {
			want := a
			if j > i {
				want = b
			}
			if got := Worse(a, b); got != want {
				t.Errorf("Worse(%s, %s) = %s, want %s", a, b, got, want)
			}
		}
	}
	for v, code := range map[Verdict]int{Passed: 0, Failed: 1, Halted: 2, NotStarted: 3, Refused: 4, Aborted: 5, RevertIncomplete: 6, DryRun: 0} {
		if v.ExitCode() != code {
			t.Errorf("%s exit %d, want %d", v, v.ExitCode(), code)
		}
	}
}
