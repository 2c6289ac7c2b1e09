package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// flakyHistory refuses writes while down (the injected error) and records what it took.
type flakyHistory struct {
	mu   sync.Mutex
	down bool
	took []RunSummary
}

func (h *flakyHistory) Put(_ context.Context, sum RunSummary, _ *experiments.Result) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return errors.New("injected: history database unreachable")
	}
	h.took = append(h.took, sum)
	return nil
}

func (h *flakyHistory) setDown(v bool) { h.mu.Lock(); h.down = v; h.mu.Unlock() }

// A record history refuses is kept in the pending file; a newer record of the same run replaces
// it; a daemon started later finds it there and writes it once history is back.
func TestRefusedRecordsSurviveARestartAndAreWrittenOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pending := filepath.Join(t.TempDir(), "history-pending.json")
	h := &flakyHistory{down: true}
	quiet := slog.New(slog.DiscardHandler)
	d := New(Options{Results: h, PendingFile: pending, Logger: quiet})
	start := RunSummary{RunID: "r1", Runbook: "rb", Trigger: "schedule", StartedAt: time.Now()}
	d.store(ctx, start, nil)
	end := start
	now := time.Now()
	end.EndedAt, end.Verdict = &now, experiments.Halted
	d.store(ctx, end, &experiments.Result{RunID: "r1", Verdict: experiments.Halted, Reason: "kept"})
	if u := d.Unstored(); len(u) != 1 || u[0].EndedAt == nil || u[0].Attempts != 2 {
		t.Fatalf("kept = %+v; want the final record of r1 only, after 2 attempts", u)
	}
	if _, err := os.Stat(pending); err != nil {
		t.Fatalf("pending file: %v", err)
	}

	// The process dies; the next one reads the file.
	d2 := New(Options{Results: h, PendingFile: pending, Logger: quiet})
	d2.loadPending()
	u := d2.Unstored()
	if len(u) != 1 || u[0].Result == nil || u[0].Result.Reason != "kept" || u[0].Verdict != experiments.Halted {
		t.Fatalf("after the restart: %+v; want r1 with its result", u)
	}
	d2.flushUnstored(ctx)
	if len(d2.Unstored()) != 1 || len(h.took) != 0 {
		t.Fatalf("history still down: kept %d, written %d", len(d2.Unstored()), len(h.took))
	}
	h.setDown(false)
	d2.flushUnstored(ctx)
	d2.flushUnstored(ctx)
	if len(d2.Unstored()) != 0 || len(h.took) != 1 || h.took[0].Verdict != experiments.Halted {
		t.Fatalf("history back: kept %+v, written %+v; want r1 written once, halted", d2.Unstored(), h.took)
	}
	if _, err := os.Stat(pending); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pending file after everything was written: %v", err)
	}
}
