package schedule

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// firstNext runs LoopFrom on a fake clock only until it announces its first start.
func firstNext(t *testing.T, c *Compiled, now string, prior []time.Time) time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time, 1)
	err := LoopFrom(ctx, NewFakeClock(ts(now)), c, rand.New(rand.NewPCG(1, 2)),
		func(context.Context, time.Time) error { return nil }, nil,
		func(at time.Time) {
			got <- at
			cancel()
		}, prior)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoopFrom: %v", err)
	}
	return <-got
}

// A restarted daemon continues from the starts an earlier process (or replica) made: the per-day
// cap counts them, and @every and chaos-monkey gaps are measured from the last of them.
func TestLoopFromPriorStarts(t *testing.T) {
	capped := mustCompile(t, Schedule{Cron: "0 * * * *", MaxRunsPerDay: 1})
	if got := firstNext(t, capped, "2026-03-02T10:30:00Z", nil); !got.Equal(ts("2026-03-02T11:00:00Z")) {
		t.Fatalf("without prior starts: %s, want 11:00 today", got)
	}
	if got := firstNext(t, capped, "2026-03-02T10:30:00Z", []time.Time{ts("2026-03-02T10:00:00Z")}); !got.Equal(ts("2026-03-03T00:00:00Z")) {
		t.Fatalf("with today's start made before the restart: %s, want tomorrow's first", got)
	}
	if got := firstNext(t, capped, "2026-03-02T10:30:00Z", []time.Time{ts("2026-03-01T10:00:00Z")}); !got.Equal(ts("2026-03-02T11:00:00Z")) {
		t.Fatalf("with yesterday's start: %s, want 11:00 today", got)
	}

	// @every counts from the previous start, also the one made before a restart.
	every := mustCompile(t, Schedule{Cron: "@every 2h"})
	if got := firstNext(t, every, "2026-03-02T10:30:00Z", []time.Time{ts("2026-03-02T09:00:00Z")}); !got.Equal(ts("2026-03-02T11:00:00Z")) {
		t.Fatalf("@every 2h after a start at 09:00: %s, want 11:00", got)
	}
	// A chaos monkey keeps at least minGap after the last start.
	monkey := mustCompile(t, Schedule{ChaosMonkey: &ChaosMonkey{MeanTimeBetweenRuns: "4h", MinGap: "1h"}})
	for range 20 {
		got := firstNext(t, monkey, "2026-03-02T10:30:00Z", []time.Time{ts("2026-03-02T10:20:00Z")})
		if got.Before(ts("2026-03-02T11:20:00Z")) {
			t.Fatalf("chaos monkey after a restart: %s, less than minGap after the last start 10:20", got)
		}
	}
}
