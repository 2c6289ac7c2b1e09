package schedule

import (
	"math"
	"math/rand/v2"
	"time"
)

const (
	// searchHorizon bounds how far Next looks for a permitted start or span.
	searchHorizon = 366 * 24 * time.Hour
	// maxSteps bounds every search loop; each step crosses at least one window,
	// blackout or cron match, so real schedules use a handful.
	maxSteps = 100_000
)

// InWindow reports whether t is inside a window; with no windows it always is.
func (c *Compiled) InWindow(t time.Time) bool {
	if len(c.windows) == 0 {
		return true
	}
	_, in := c.windowsEnd(t)
	return in
}

// Permitted reports whether a run may start at t: inside a window, outside blackouts.
func (c *Compiled) Permitted(t time.Time) bool {
	_, black := c.InBlackout(t)
	return !black && c.InWindow(t)
}

// WindowEnd returns when the windows containing t close, merging windows that
// overlap or touch, so the daemon can halt a run before it overruns. ok is false
// when t is outside every window or the windows never close (including none set).
func (c *Compiled) WindowEnd(t time.Time) (end time.Time, ok bool) {
	end, in := c.cover(t)
	return end, in && !end.IsZero()
}

// Deadline is the latest instant a run started at t may last: the earlier of
// WindowEnd and the next blackout. ok is false when t is not permitted or nothing
// bounds the run.
func (c *Compiled) Deadline(t time.Time) (time.Time, bool) {
	if !c.Permitted(t) {
		return time.Time{}, false
	}
	_, end, ok := c.span(t, t)
	return end, ok && !end.IsZero()
}

// Next returns the first permitted start strictly after after, or the zero time
// if none exists within 366 days. rng drives chaos-monkey mode only; a nil rng
// there draws from the runtime's random source.
func (c *Compiled) Next(after time.Time, rng *rand.Rand) time.Time {
	if c.cron != nil {
		return c.nextCron(after)
	}
	return c.nextMonkey(after, rng)
}

// NextN returns up to n starts, honouring MaxRunsPerDay among them.
func (c *Compiled) NextN(after time.Time, n int, rng *rand.Rand) []time.Time {
	var out []time.Time
	for len(out) < n {
		t := c.nextCapped(after, rng, out)
		if t.IsZero() {
			break
		}
		out = append(out, t)
		after = t
	}
	return out
}

// CapReached reports whether starts already hold MaxRunsPerDay runs on t's
// calendar day in the schedule's zone.
func (c *Compiled) CapReached(starts []time.Time, t time.Time) bool {
	if c.spec.MaxRunsPerDay <= 0 {
		return false
	}
	y, m, d := t.In(c.loc).Date()
	n := 0
	for _, s := range starts {
		if sy, sm, sd := s.In(c.loc).Date(); sy == y && sm == m && sd == d {
			n++
		}
	}
	return n >= c.spec.MaxRunsPerDay
}

func (c *Compiled) nextCapped(after time.Time, rng *rand.Rand, starts []time.Time) time.Time {
	for range 400 { // one step per capped day
		t := c.Next(after, rng)
		if t.IsZero() || !c.CapReached(starts, t) {
			return t
		}
		y, m, d := t.In(c.loc).Date()
		after = resolve(y, m, d+1, 0, c.loc).Add(-time.Nanosecond)
	}
	return time.Time{}
}

func (c *Compiled) nextCron(after time.Time) time.Time {
	limit := after.Add(searchHorizon)
	t := after
	for range maxSteps {
		cand := c.cron.Next(t)
		if cand.IsZero() || cand.After(limit) {
			return time.Time{}
		}
		// Like Vixie cron: "30 2 * * *" runs once on the night clocks fall back.
		if c.fixedHour && secondOccurrence(cand.In(c.loc)) {
			t = cand
			continue
		}
		open, _, ok := c.span(cand, limit)
		switch {
		case !ok:
			return time.Time{}
		case open.Equal(cand):
			return cand.In(c.loc)
		case c.every: // an interval has no wall-clock phase to keep: start when permitted
			return open.In(c.loc)
		}
		t = open.Add(-time.Nanosecond) // cron.Next(open-1ns) is the first match at or after open
	}
	return time.Time{}
}

// nextMonkey draws the gap in permitted time as MinGap plus an exponential with
// mean MeanTimeBetweenRuns-MinGap: its mean is exactly MeanTimeBetweenRuns, and
// since permitted time never runs faster than the wall clock the real gap is at
// least MinGap too.
func (c *Compiled) nextMonkey(after time.Time, rng *rand.Rand) time.Time {
	e := rand.ExpFloat64()
	if rng != nil {
		e = rng.ExpFloat64()
	}
	g := c.minGap + time.Duration(math.Min(e*float64(c.mean-c.minGap), float64(100*searchHorizon)))
	g = max(g, time.Second) // a zero draw would return after itself, which is not strictly after
	p := after
	for range maxSteps {
		open, end, ok := c.span(p, p.Add(searchHorizon))
		if !ok {
			return time.Time{}
		}
		if end.IsZero() || end.Sub(open) > g {
			start := open.Add(g)
			// Whole seconds read better in "schedule --next" and logs.
			if up := start.Truncate(time.Second); !up.Equal(start) {
				if up = up.Add(time.Second); end.IsZero() || up.Before(end) {
					start = up
				}
			}
			return start.In(c.loc)
		}
		g -= end.Sub(open)
		p = end
	}
	return time.Time{}
}

// span returns the permitted interval [open, end) that contains p or is the
// first after it, opening no later than limit; a zero end means it never closes.
func (c *Compiled) span(p, limit time.Time) (open, end time.Time, ok bool) {
	for range maxSteps {
		if p.After(limit) {
			return time.Time{}, time.Time{}, false
		}
		if e, black := c.blackoutEnd(p); black {
			p = e
			continue
		}
		end, in := c.cover(p)
		if !in {
			next, found := c.nextOpen(p)
			if !found { // windows swallowed by DST all week: look further
				next = p.Add(7 * 24 * time.Hour)
			}
			p = next
			continue
		}
		if b, ok := c.nextBlackout(p); ok && (end.IsZero() || b.Before(end)) {
			end = b
		}
		return p, end, true
	}
	return time.Time{}, time.Time{}, false
}

// cover reports whether t is inside the windows and when the contiguous run of
// windows holding it ends; a zero end means they never close.
func (c *Compiled) cover(t time.Time) (time.Time, bool) {
	if len(c.windows) == 0 {
		return time.Time{}, true
	}
	end, in := c.windowsEnd(t)
	if !in {
		return time.Time{}, false
	}
	horizon := t.Add(8 * 24 * time.Hour) // windows repeat weekly: covering 8 days covers all time
	for range maxSteps {
		next, ok := c.windowsEnd(end)
		if !ok {
			return end, true
		}
		if end = next; end.After(horizon) {
			return time.Time{}, true
		}
	}
	return end, true
}

// windowsEnd returns the latest end among window occurrences containing t.
func (c *Compiled) windowsEnd(t time.Time) (time.Time, bool) {
	var end time.Time
	for i := range c.windows {
		if e, ok := c.windows[i].contains(t); ok && e.After(end) {
			end = e
		}
	}
	return end, !end.IsZero()
}

// nextOpen returns the earliest window opening at or after t.
func (c *Compiled) nextOpen(t time.Time) (time.Time, bool) {
	var first time.Time
	for i := range c.windows {
		if o, ok := c.windows[i].nextOpen(t); ok && (first.IsZero() || o.Before(first)) {
			first = o
		}
	}
	return first, !first.IsZero()
}
