package schedule

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// maxWait re-arms long waits so a wall-clock step (NTP, VM resume) delays a start
// by at most this much: timers run on the monotonic clock, starts on the wall clock.
const maxWait = time.Minute

// Loop starts runs of c until ctx ends, returning ctx.Err(). At each start time it
// skips the start if paused() reports true or the time is no longer permitted
// (the clock jumped into a blackout or past a window), and enforces
// MaxRunsPerDay over the starts it made. start may block; missed start times are
// not caught up. A start error wrapping ErrSkipped is not counted; any other
// error ends the loop. paused may be nil; rng (chaos-monkey mode) must not be
// used by other goroutines meanwhile.
func Loop(ctx context.Context, clk Clock, c *Compiled, rng *rand.Rand,
	start func(ctx context.Context, scheduled time.Time) error, paused func() bool) error {
	return LoopNotify(ctx, clk, c, rng, start, paused, nil)
}

// LoopNotify is Loop that also tells next (when not nil) each start time it decides on, before
// waiting for it: the daemon shows it in `faultline status`, where a chaos-monkey start could not
// be recomputed because it is random.
func LoopNotify(ctx context.Context, clk Clock, c *Compiled, rng *rand.Rand,
	start func(ctx context.Context, scheduled time.Time) error, paused func() bool, next func(time.Time)) error {
	return LoopFrom(ctx, clk, c, rng, start, paused, next, nil)
}

// LoopFrom is LoopNotify continuing from prior starts (ascending; made by an earlier process or
// another replica): they count toward MaxRunsPerDay, and the first start is computed from the
// last of them where that lies ahead (a chaos-monkey gap, @every), so a restart or a failover
// neither resets the cap nor shortens the gap.
func LoopFrom(ctx context.Context, clk Clock, c *Compiled, rng *rand.Rand,
	start func(ctx context.Context, scheduled time.Time) error, paused func() bool, next func(time.Time), prior []time.Time) error {
	if clk == nil || c == nil || start == nil {
		return errors.New("schedule loop: clock, schedule and start are required")
	}
	after := clk.Now()
	// the starts made so far; only the last two days matter to the cap
	starts := recent(append([]time.Time(nil), prior...), after)
	var first time.Time
	if n := len(starts); n > 0 {
		if at := c.nextCapped(starts[n-1], rng, starts); at.After(after) {
			first = at
		}
	}
	for {
		at := first
		if at.IsZero() {
			at = c.nextCapped(after, rng, starts)
		}
		first = time.Time{}
		if at.IsZero() {
			return fmt.Errorf("schedule %q after %s: %w", c.spec.Name, after.Format(time.RFC3339), ErrNoStart)
		}
		if next != nil {
			next(at)
		}
		if err := waitUntil(ctx, clk, at); err != nil {
			return err
		}
		now := clk.Now()
		after = later(at, now)
		if !c.Permitted(now) || (paused != nil && paused()) {
			continue
		}
		err := start(ctx, at)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		switch {
		case errors.Is(err, ErrSkipped):
		case err != nil:
			return fmt.Errorf("schedule %q: start at %s: %w", c.spec.Name, at.Format(time.RFC3339), err)
		default:
			starts = append(recent(starts, at), at)
		}
		after = later(after, clk.Now())
	}
}

func waitUntil(ctx context.Context, clk Clock, at time.Time) error {
	for {
		d := at.Sub(clk.Now())
		if d <= 0 {
			return nil
		}
		t := clk.NewTimer(min(d, maxWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// recent drops starts more than two days before t; no calendar day is longer.
func recent(starts []time.Time, t time.Time) []time.Time {
	cut := t.Add(-48 * time.Hour)
	i := 0
	for i < len(starts) && starts[i].Before(cut) {
		i++
	}
	return starts[i:]
}
