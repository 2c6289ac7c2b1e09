package schedule

import (
	"strconv"
	"strings"
	"time"
)

const minutesPerDay = 24 * 60

// window is a compiled Window. Membership is by occurrence: the window that opens
// on a civil date is one interval of instants, so DST days are neither doubled nor
// split (see resolve).
type window struct {
	days       [7]bool // indexed by time.Weekday
	start, end int     // minutes after midnight; end may be minutesPerDay
	loc        *time.Location
}

func (w *window) crossesMidnight() bool { return w.end <= w.start }

// occurrence returns the interval of the window opening on the civil date y-m-d
// (d may overflow; time.Date normalises it). It is empty when DST swallows it.
func (w *window) occurrence(y int, m time.Month, d int) (from, to time.Time) {
	from = resolve(y, m, d, w.start, w.loc)
	endDay := d
	if w.crossesMidnight() {
		endDay++
	}
	return from, resolve(y, m, endDay, w.end, w.loc)
}

// contains returns the end of the occurrence holding t.
func (w *window) contains(t time.Time) (time.Time, bool) {
	y, m, d := t.In(w.loc).Date()
	first := 0
	if w.crossesMidnight() {
		first = -1 // last night's window may still be open
	}
	for k := first; k <= 0; k++ {
		if !w.days[civilWeekday(y, m, d+k)] {
			continue
		}
		from, to := w.occurrence(y, m, d+k)
		if !t.Before(from) && t.Before(to) {
			return to, true
		}
	}
	return time.Time{}, false
}

// nextOpen returns the first non-empty occurrence opening at or after t, looking
// one week ahead because windows repeat weekly.
func (w *window) nextOpen(t time.Time) (time.Time, bool) {
	y, m, d := t.In(w.loc).Date()
	for k := 0; k <= 7; k++ {
		if !w.days[civilWeekday(y, m, d+k)] {
			continue
		}
		from, to := w.occurrence(y, m, d+k)
		if !from.Before(t) && to.After(from) {
			return from, true
		}
	}
	return time.Time{}, false
}

func civilWeekday(y int, m time.Month, d int) time.Weekday {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Weekday()
}

// resolve maps a wall-clock time to the first instant whose wall clock reaches it:
// in a spring-forward gap that is the transition itself, and in a fall-back
// overlap it is the first occurrence. time.Date alone picks either side depending
// on the zone, which would make windows differ between Berlin and New York.
func resolve(y int, m time.Month, d, minutes int, loc *time.Location) time.Time {
	h, mi := minutes/60, minutes%60
	t := time.Date(y, m, d, h, mi, 0, 0, loc)
	want := time.Date(y, m, d, h, mi, 0, 0, time.UTC)
	got := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
	if !got.Equal(want) { // in a gap: t was pushed to one side of the transition
		start, end := t.ZoneBounds()
		if got.After(want) {
			return start
		}
		return end
	}
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, off := t.Zone()
	_, prev := start.Add(-time.Nanosecond).Zone()
	if back := time.Duration(prev-off) * time.Second; back > 0 {
		if earlier := t.Add(-back); earlier.Before(start) {
			return earlier
		}
	}
	return t
}

// secondOccurrence reports whether t's wall clock already happened once in the
// hour before a fall-back transition.
func secondOccurrence(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, off := t.Zone()
	_, prev := start.Add(-time.Nanosecond).Zone()
	back := time.Duration(prev-off) * time.Second
	return back > 0 && t.Sub(start) < back
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseDays accepts days and ranges ("fri-mon" wraps over the weekend) and returns
// the entries it could not read.
func parseDays(list []string) (days [7]bool, bad []string) {
	if len(list) == 0 {
		for i := range days {
			days[i] = true
		}
		return days, nil
	}
	for _, raw := range list {
		tok := strings.ToLower(strings.TrimSpace(raw))
		a, b, isRange := strings.Cut(tok, "-")
		if !isRange {
			b = a
		}
		from, ok1 := dayNames[strings.TrimSpace(a)]
		to, ok2 := dayNames[strings.TrimSpace(b)]
		if !ok1 || !ok2 {
			bad = append(bad, raw)
			continue
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
	}
	return days, bad
}

// parseClock reads H:MM or HH:MM; "24:00" is allowed so a window can end at midnight.
func parseClock(s string) (int, bool) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok || len(hs) < 1 || len(hs) > 2 || len(ms) != 2 || !digits(hs) || !digits(ms) {
		return 0, false
	}
	h, _ := strconv.Atoi(hs)
	m, _ := strconv.Atoi(ms)
	if h == 24 && m == 0 {
		return minutesPerDay, true
	}
	if h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
