package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// gated wraps the real process-pause injector so that its record names the fault: the test can
// then hold one fault's revert back, and give some actions a mechanism to report. The pausing
// and resuming is real.
type gated struct {
	process.Pause
	hold      map[string]chan struct{} // fault name → closed when its revert may go ahead
	reverted  chan reverted            // told of each revert that succeeded
	mechanism map[string]string        // fault name → the mechanism its action reports
}

// reverted is a fault whose revert succeeded, and a time at or before which Revert returned.
type reverted struct {
	fault string
	at    time.Time
}

type gatedRecord struct {
	Fault string          `json:"fault"`
	Inner json.RawMessage `json:"inner"`
}

type gatedAction struct {
	injectors.Action
	fault string
}

func (a *gatedAction) Record() (json.RawMessage, error) {
	inner, err := a.Action.Record()
	if err != nil {
		return nil, err
	}
	return json.Marshal(gatedRecord{Fault: a.fault, Inner: inner})
}

// mechanismAction is a gatedAction that says how it injects.
type mechanismAction struct {
	*gatedAction
	mechanism string
}

func (a mechanismAction) Mechanism() string { return a.mechanism }

func (g gated) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	a, err := g.Pause.Prepare(ctx, f, env)
	if err != nil {
		return nil, err
	}
	ga := &gatedAction{Action: a, fault: f.Name}
	if m, ok := g.mechanism[f.Name]; ok {
		return mechanismAction{gatedAction: ga, mechanism: m}, nil
	}
	return ga, nil
}

func (g gated) Revert(ctx context.Context, record json.RawMessage, env injectors.Env) error {
	var rec gatedRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return fmt.Errorf("decode gated record: %w", err)
	}
	if hold := g.hold[rec.Fault]; hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := g.Pause.Revert(ctx, rec.Inner, env); err != nil {
		return err
	}
	if g.reverted != nil {
		g.reverted <- reverted{rec.Fault, time.Now()}
	}
	return nil
}

func TestEachFaultRecordsItsOwnRevertTime(t *testing.T) {
	vs := local.StartVictims(t, 2)
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	// A failing test must not leave f1's revert waiting out the revert timeout.
	t.Cleanup(release)
	inj := gated{hold: map[string]chan struct{}{"f1": hold}, reverted: make(chan reverted, 2)}
	eng, led := newEngine(t, inj)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// A halt ends the window at once and makes the result carry the last revert time.
	eng.Progress = func(p Progress) {
		if p.Phase == "observe" {
			cancel(&HaltRequest{Source: "operator", Reason: "stop"})
		}
	}
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 30s\n    faults:\n%s", pauseFaults(vs))
	done := make(chan *Result, 1)
	go func() { done <- eng.Run(ctx, rb, RunOptions{}) }()

	var f0Done time.Time
	select {
	case r := <-inj.reverted:
		if r.fault != "f0" {
			t.Fatalf("%s reverted first; f1's revert is held back", r.fault)
		}
		f0Done = r.at
	case <-time.After(30 * time.Second):
		t.Fatal("f0 was not reverted")
	}
	// The gap is what is measured: f1's revert cannot finish before it has passed, f0's already has.
	const gap = 200 * time.Millisecond
	<-time.After(gap)
	releasedAt := time.Now()
	release()
	var res *Result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not finish after f1's revert was released")
	}

	if res.Verdict != Halted {
		t.Fatalf("verdict %s, want halted: %s", res.Verdict, res.Reason)
	}
	for i, v := range vs {
		if v.State() == "T" {
			t.Errorf("victim %d still stopped", i)
		}
	}
	f := res.Experiments[0].Faults
	if f[0].RevertedAt == nil || f[1].RevertedAt == nil {
		t.Fatalf("revertedAt missing: %+v", f)
	}
	r0, r1 := *f[0].RevertedAt, *f[1].RevertedAt
	if !r0.Before(releasedAt) {
		t.Errorf("f0 revertedAt %s is not before f1's revert was released (%s): it is not its own", r0.Format(time.RFC3339Nano), releasedAt.Format(time.RFC3339Nano))
	}
	if r0.Before(f0Done) {
		t.Errorf("f0 revertedAt %s is before its revert finished (%s)", r0.Format(time.RFC3339Nano), f0Done.Format(time.RFC3339Nano))
	}
	if r1.Before(releasedAt) {
		t.Errorf("f1 revertedAt %s is before its revert was released (%s)", r1.Format(time.RFC3339Nano), releasedAt.Format(time.RFC3339Nano))
	}
	if d := r1.Sub(r0); d < gap/2 {
		t.Errorf("f1 reverted %s after f0, want at least %s", d, gap/2)
	}
	if res.Halt == nil || res.Halt.LastRevertedAt == nil || !res.Halt.LastRevertedAt.Equal(r1) {
		t.Errorf("halt %+v, want lastRevertedAt = f1's revertedAt %s", res.Halt, r1.Format(time.RFC3339Nano))
	}

	entries, err := led.Entries(context.Background(), func(*ledger.Entry) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d ledger entries, want 2", len(entries))
	}
	for _, en := range entries {
		var want time.Time
		switch en.Fault {
		case "f0":
			want = r0
		case "f1":
			want = r1
		default:
			t.Fatalf("ledger entry for unknown fault %q", en.Fault)
		}
		if en.State != ledger.StateReverted || en.RevertedAt == nil || !en.RevertedAt.Equal(want) {
			t.Errorf("ledger %s: state %s revertedAt %v, want reverted at %s", en.Fault, en.State, en.RevertedAt, want.Format(time.RFC3339Nano))
		}
	}
}

func TestMechanismIsRecordedWhenReported(t *testing.T) {
	vs := local.StartVictims(t, 2)
	eng, _ := newEngine(t, gated{mechanism: map[string]string{"f0": "netem"}})
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 100ms\n    faults:\n%s", pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})
	if res.Verdict != Passed {
		t.Fatalf("verdict %s, want passed: %s", res.Verdict, res.Reason)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	// Read back from the JSON, since the document is what the field is for.
	var doc struct {
		Experiments []struct {
			Faults []map[string]any `json:"faults"`
		} `json:"experiments"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	faults := doc.Experiments[0].Faults
	if m := faults[0]["mechanism"]; m != "netem" {
		t.Errorf("f0 mechanism = %v, want netem", m)
	}
	if m, ok := faults[1]["mechanism"]; ok {
		t.Errorf("f1 reports no mechanism, but the document has mechanism %v", m)
	}
}
