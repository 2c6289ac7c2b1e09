// Package injectortest holds the conformance test every injector passes: the properties the
// engine and `faultline recover` rely on, checked against the real system the injector touches.
package injectortest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
)

// Case describes one fault to put through the conformance test.
type Case struct {
	Fault runbooks.Fault
	Env   injectors.Env
	// Active reports whether the fault is in effect on the real system right now (a process is in
	// state T, an iptables chain exists, a pod count dropped...). It is called with a deadline.
	Active func(ctx context.Context) (bool, error)
	// Revertible is false for faults that cannot be undone (a kill); then only idempotence of
	// Revert and the absence of side effects in Prepare are checked.
	Revertible bool
}

// Run checks, in order:
//  1. Prepare has no side effects (the fault is not active after it);
//  2. Record is valid JSON and Revert of a never-applied record succeeds and changes nothing;
//  3. after Apply the fault is active;
//  4. Revert from the JSON record alone (as a different process would) ends it;
//  5. a second Revert is a no-op that succeeds.
func Run(t *testing.T, inj injectors.Injector, c Case) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if c.Env.RunID == "" {
		c.Env.RunID = "conformance"
	}
	active := func(step string, want bool) {
		t.Helper()
		got, err := c.Active(ctx)
		if err != nil {
			t.Fatalf("%s: checking the real system: %v", step, err)
		}
		if got != want {
			t.Fatalf("%s: fault active = %v, want %v", step, got, want)
		}
	}

	act, err := inj.Prepare(ctx, c.Fault, c.Env)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if len(act.Targets()) == 0 {
		t.Fatalf("Prepare resolved no targets")
	}
	active("after Prepare", false)

	rec, err := act.Record()
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	if !json.Valid(rec) {
		t.Fatalf("Record is not valid JSON: %q", rec)
	}
	if err := inj.Revert(ctx, rec, c.Env); err != nil {
		t.Fatalf("Revert of a never-applied fault: %v", err)
	}
	active("after Revert of a never-applied fault", false)

	latest := rec
	recorder := func(_ context.Context, r json.RawMessage) error {
		if !json.Valid(r) {
			t.Errorf("Recorder got invalid JSON: %q", r)
		}
		latest = append(json.RawMessage(nil), r...)
		return nil
	}
	if err := act.Apply(ctx, recorder); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Cleanup(func() { _ = inj.Revert(context.Background(), latest, c.Env) })
	if c.Revertible {
		active("after Apply", true)
	}

	// Round-trip through bytes: Revert may rely on nothing but what the ledger stores.
	stored := append(json.RawMessage(nil), latest...)
	if err := inj.Revert(ctx, stored, c.Env); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	active("after Revert", false)
	if err := inj.Revert(ctx, stored, c.Env); err != nil {
		t.Fatalf("second Revert (must be idempotent): %v", err)
	}
	active("after second Revert", false)
}
