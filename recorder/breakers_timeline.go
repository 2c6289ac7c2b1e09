package recorder

import (
	"sort"
	"time"
)

// The reconstruction of one breaker's timeline from what Prometheus kept: the level (its state
// at each scrape), the edge (a counter of opens or of transitions per target state) and the
// transition-time gauge. It is a pure function of the samples so that it can be tested against
// hand-made sample sequences as well as against real scrapes.

// stateSample is the breaker's state as one scrape saw it.
type stateSample struct {
	t     time.Time
	state string
}

// edgeEvent is a counter that grew by n between two scrapes at a and b: n transitions into to
// (n opens for an opens counter). evidence marks a counter that proves an open without counting
// them (rejected calls).
type edgeEvent struct {
	a, b     time.Time
	to       string
	n        int
	evidence bool
}

// stampSample is a transition-time gauge read at scrape time t. It says the last transition
// lay in [c, c+width] for some c in [lo, hi]. A Unix-time gauge gives lo = hi = the time and no
// width. A gauge of whole seconds since the change, counted on the exporter's own clock (whose
// second boundaries are not the scraper's), gives c in (t-v-1, t-v] and a width of one second:
// one sample alone bounds the change to two seconds, but every further sample of the same change
// narrows c, so a change known for several scrapes is bounded to one second.
type stampSample struct {
	t, lo, hi time.Time
	width     time.Duration
}

// stampSlack covers the time between a scrape's timestamp and the exporter computing the value.
const stampSlack = 50 * time.Millisecond

// bound intersects the stamps read in [from, until] (until zero: no end) into the interval the
// transition lies in; ok is false when there are none or they contradict each other.
func bound(stamps []stampSample, from, until time.Time) (lo, hi time.Time, ok bool) {
	var width time.Duration
	for _, s := range stamps {
		if s.t.Before(from) || (!until.IsZero() && s.t.After(until)) {
			continue
		}
		if !ok {
			lo, hi, width, ok = s.lo, s.hi, s.width, true
			continue
		}
		lo, hi = later(lo, s.lo), earlier(hi, s.hi)
	}
	if !ok || hi.Before(lo) {
		return time.Time{}, time.Time{}, false
	}
	return lo.Add(-stampSlack), hi.Add(width + stampSlack), true
}

// transition is one reconstructed state change, at At ± unc seconds.
type transition struct {
	at     time.Time
	unc    float64
	from   string
	to     string
	source string
}

// Where a transition's time comes from.
const (
	sourceLevel    = "level"
	sourceNarrowed = "level, narrowed by the transition-time gauge"
	sourceEdge     = "edge counter (between two scrapes)"
)

// track is one breaker's reconstructed timeline.
type track struct {
	initial     string
	transitions []transition
	// shortOpens counts opens only the edge counter saw (shorter than the scrape gap).
	shortOpens int
	// maxGap is the longest gap between two level samples (or edge samples without a level).
	maxGap time.Duration
}

func mid(a, b time.Time) (time.Time, float64) {
	h := b.Sub(a) / 2
	return a.Add(h), h.Seconds()
}

// reconstruct builds the timeline from start on. Level samples before start give the state at
// start; transitions are placed at the middle of the scrape gap they happened in, then narrowed
// by the stamps where one covers them, and opens the level missed are added from the edge.
func reconstruct(level []stateSample, edges []edgeEvent, stamps []stampSample, start time.Time) track {
	sort.SliceStable(level, func(i, j int) bool { return level[i].t.Before(level[j].t) })
	sort.SliceStable(edges, func(i, j int) bool { return edges[i].b.Before(edges[j].b) })
	if len(level) == 0 {
		return fromEdges(edges, start)
	}
	tr := track{initial: level[0].state}
	type gap struct {
		a, b     time.Time
		from, to string
		claimed  bool
	}
	var gaps []gap
	for i := 1; i < len(level); i++ {
		if d := level[i].t.Sub(level[i-1].t); d > tr.maxGap {
			tr.maxGap = d
		}
		prev, cur := level[i-1], level[i]
		if !cur.t.After(start) {
			tr.initial = cur.state
			continue
		}
		if cur.state != prev.state {
			gaps = append(gaps, gap{a: prev.t, b: cur.t, from: prev.state, to: cur.state})
		}
	}
	var out []transition
	for i, g := range gaps {
		at, unc := mid(g.a, g.b)
		src := sourceLevel
		// The stamps read from the scrape that saw the change until the one before the next
		// change all describe this transition; together they bound it.
		var next time.Time
		if i+1 < len(gaps) {
			next = gaps[i+1].a
		}
		if lo, hi, ok := bound(stamps, g.b, next); ok {
			lo, hi = later(g.a, lo), earlier(g.b, hi)
			if !hi.Before(lo) {
				at, unc = mid(lo, hi)
				src = sourceNarrowed
			}
		}
		out = append(out, transition{at: at, unc: unc, from: g.from, to: g.to, source: src})
	}
	// Opens the level did not see: an edge that grew by more than the level transitions into
	// open that overlap its gap.
	for _, e := range edges {
		if e.to != stateOpen || e.n <= 0 || !e.b.After(start) {
			continue
		}
		claimed := 0
		for i := range gaps {
			if gaps[i].claimed || gaps[i].to != stateOpen || !gaps[i].a.Before(e.b) || !gaps[i].b.After(e.a) {
				continue
			}
			if claimed < e.n {
				gaps[i].claimed = true
				claimed++
			}
		}
		extra := e.n - claimed
		if e.evidence {
			extra = 0
			if claimed == 0 {
				extra = 1
			}
		}
		if extra <= 0 {
			continue
		}
		before := stateAt(level, e.a)
		at, unc := mid(e.a, e.b)
		for k := 0; k < extra; k++ {
			if before == stateOpen {
				// Re-opened from half-open within the gap.
				out = append(out, transition{at: at, unc: unc, from: stateOpen, to: stateHalfOpen, source: sourceEdge},
					transition{at: at, unc: unc, from: stateHalfOpen, to: stateOpen, source: sourceEdge})
			} else {
				out = append(out, transition{at: at, unc: unc, from: before, to: stateOpen, source: sourceEdge},
					transition{at: at, unc: unc, from: stateOpen, to: before, source: sourceEdge})
			}
			tr.shortOpens++
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	tr.transitions = out
	return tr
}

// stateAt is the state of the last level sample at or before t.
func stateAt(level []stateSample, t time.Time) string {
	s := level[0].state
	for _, l := range level {
		if l.t.After(t) {
			break
		}
		s = l.state
	}
	return s
}

// fromEdges builds a timeline from transition counters alone (Polly): the breaker is taken as
// closed before its first transition, and the transitions within one scrape gap are ordered by
// the breaker's cycle (closed → open → half-open → closed or open).
func fromEdges(edges []edgeEvent, start time.Time) track {
	tr := track{initial: stateClosed}
	cur := stateClosed
	for i := 0; i < len(edges); {
		a, b := edges[i].a, edges[i].b
		if d := b.Sub(a); d > tr.maxGap {
			tr.maxGap = d
		}
		counts := map[string]int{}
		for ; i < len(edges) && edges[i].a.Equal(a) && edges[i].b.Equal(b); i++ {
			if edges[i].to != "" {
				counts[edges[i].to] += edges[i].n
			}
		}
		at, unc := mid(a, b)
		for {
			next := successor(cur, counts)
			if next == "" {
				break
			}
			counts[next]--
			if b.After(start) {
				tr.transitions = append(tr.transitions, transition{at: at, unc: unc, from: cur, to: next, source: sourceEdge})
			} else {
				tr.initial = next
			}
			cur = next
		}
	}
	return tr
}

func successor(cur string, counts map[string]int) string {
	prefer := map[string][]string{
		stateClosed:   {stateOpen, stateHalfOpen, stateClosed},
		stateOpen:     {stateHalfOpen, stateClosed, stateOpen},
		stateHalfOpen: {stateClosed, stateOpen, stateHalfOpen},
	}[cur]
	for _, s := range prefer {
		if counts[s] > 0 {
			return s
		}
	}
	return ""
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
