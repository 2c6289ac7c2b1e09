package schedule

import (
	"fmt"
	"time"
)

// blackout is a compiled Blackout: the half-open interval [from, to).
type blackout struct {
	Blackout
	from, to time.Time
}

// parseBound reads an RFC 3339 time or a date; a date is the start of that day,
// or of the next day when it ends a blackout, so "to: 2026-12-26" includes the 26th.
func parseBound(s string, loc *time.Location, isEnd bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation(time.DateOnly, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %q: %w", s, err)
	}
	day := d.Day()
	if isEnd {
		day++
	}
	return resolve(d.Year(), d.Month(), day, 0, loc), nil
}

// InBlackout returns the blackout covering t, the earliest-starting one if several do.
func (c *Compiled) InBlackout(t time.Time) (Blackout, bool) {
	for _, b := range c.blackouts {
		if !t.Before(b.from) && t.Before(b.to) {
			return b.Blackout, true
		}
	}
	return Blackout{}, false
}

// blackoutEnd returns when every blackout covering t is over.
func (c *Compiled) blackoutEnd(t time.Time) (time.Time, bool) {
	var end time.Time
	for _, b := range c.blackouts {
		if !t.Before(b.from) && t.Before(b.to) && b.to.After(end) {
			end = b.to
		}
	}
	return end, !end.IsZero()
}

// nextBlackout returns the first blackout start after t; blackouts are sorted by from.
func (c *Compiled) nextBlackout(t time.Time) (time.Time, bool) {
	for _, b := range c.blackouts {
		if b.from.After(t) {
			return b.from, true
		}
	}
	return time.Time{}, false
}
