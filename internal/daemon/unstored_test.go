package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// refusingHistory is the one fake here: an injected storage error.
type refusingHistory struct{}

func (refusingHistory) Put(context.Context, RunSummary, *experiments.Result) error {
	return errors.New("injected: history disk full")
}

func TestResultHistoryRefusedIsKept(t *testing.T) {
	v := local.StartVictims(t, 1)[0]
	reg, err := injectors.NewRegistry(process.Pause{})
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	eng := &experiments.Engine{Injectors: reg, Probes: guardrail.DefaultProbes(), Ledger: led, Logger: slog.New(slog.DiscardHandler)}
	rb, err := runbooks.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: t}
environment: {name: test, type: local}
experiments:
  - name: x
    duration: 50ms
    faults:
      - {name: f, processPause: {pidFile: %q}}
`, v.PidFile)))
	if err != nil {
		t.Fatal(err)
	}
	d := New(Options{Engine: eng, Registry: reg, Results: refusingHistory{}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.base = ctx
	ar := d.start("", rb, "api", nil, nil)
	select {
	case <-ar.done:
	case <-ctx.Done():
		t.Fatal("run did not finish")
	}
	u := d.Unstored()
	if len(u) != 1 || u[0].RunID != ar.sum.RunID || u[0].Result == nil || u[0].StoreError != "injected: history disk full" {
		t.Fatalf("unstored = %+v, want the run with its store error", u)
	}
}
