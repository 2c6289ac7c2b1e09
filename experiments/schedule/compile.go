package schedule

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// minInterval keeps a typo ("4s" for "4h", "@every 30s") from hammering production.
const minInterval = time.Minute

// cronStarBit is robfig/cron's marker for a field written as "*" (unexported there).
const cronStarBit = 1 << 63

// Compiled is a validated Schedule, ready to be evaluated many times. It is
// immutable and safe for concurrent use.
type Compiled struct {
	spec         Schedule
	loc          *time.Location
	cron         cron.Schedule // nil in chaos-monkey mode
	fixedHour    bool          // cron names its hours; such runs are not repeated when clocks fall back
	every        bool          // @every: relative to the previous start, not the wall clock
	mean, minGap time.Duration
	windows      []window
	blackouts    []blackout // sorted by from
}

// Schedule returns the schedule with defaults applied.
func (c *Compiled) Schedule() Schedule {
	s := c.spec
	s.Windows = slices.Clone(s.Windows)
	s.Blackouts = slices.Clone(s.Blackouts)
	if s.ChaosMonkey != nil {
		cm := *s.ChaosMonkey
		s.ChaosMonkey = &cm
	}
	return s
}

// Location is the zone of cron fields, date-only blackouts and the per-day cap.
func (c *Compiled) Location() *time.Location { return c.loc }

// Target is the concurrency key.
func (c *Compiled) Target() string { return c.spec.Target }

type problems []Problem

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Compile validates s and reports every problem at once as a *ValidationError.
func Compile(s Schedule) (*Compiled, error) {
	var ps problems
	c := &Compiled{spec: s, loc: time.UTC}
	c.spec.Windows, c.spec.Blackouts = slices.Clone(s.Windows), slices.Clone(s.Blackouts) // the caller may reuse its slices
	c.spec.Concurrency = cmp.Or(s.Concurrency, ConcurrencyForbid)
	c.spec.Target = cmp.Or(s.Target, s.Runbook)

	if s.Name == "" {
		ps.add("name", `required; it names the schedule in logs, history and "faultline schedule"`)
	}
	if s.Runbook == "" {
		ps.add("runbook", "required; the runbook this schedule starts")
	}
	if s.TimeZone != "" {
		if loc, msg := loadZone(s.TimeZone); msg != "" {
			ps.add("timeZone", "%s", msg)
		} else {
			c.loc = loc
		}
	}
	switch {
	case s.Cron != "" && s.ChaosMonkey != nil:
		ps.add("cron", "set either cron or chaosMonkey, not both")
	case s.Cron != "":
		c.compileCron(s, &ps)
	case s.ChaosMonkey != nil:
		c.compileChaosMonkey(*s.ChaosMonkey, &ps)
	default:
		ps.add("cron", `required unless chaosMonkey is set; e.g. "0 10 * * mon-fri", or chaosMonkey: {meanTimeBetweenRuns: 4h}`)
	}
	c.compileWindows(s.Windows, &ps)
	c.compileBlackouts(s.Blackouts, &ps)
	if c.spec.Concurrency != ConcurrencyForbid && c.spec.Concurrency != ConcurrencyQueue {
		ps.add("concurrency", "%q is not a policy; use forbid (skip a start while the target's previous run is active; the default) or queue (wait for it)", s.Concurrency)
	}
	if s.MaxRunsPerDay < 0 {
		ps.add("maxRunsPerDay", "%d is negative; use 0 for no cap or the most runs per calendar day", s.MaxRunsPerDay)
	}
	if len(ps) > 0 {
		return nil, &ValidationError{Schedule: s.Name, Problems: ps}
	}
	return c, nil
}

func (c *Compiled) compileCron(s Schedule, ps *problems) {
	spec := strings.TrimSpace(s.Cron)
	if fields := strings.Fields(spec); strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		_, tz, _ := strings.Cut(fields[0], "=")
		spec = strings.Join(fields[1:], " ")
		loc, msg := loadZone(tz)
		switch {
		case msg != "":
			ps.add("cron", "CRON_TZ: %s", msg)
		case s.TimeZone != "" && tz != s.TimeZone:
			ps.add("cron", "CRON_TZ=%s disagrees with timeZone %q; set the zone in one place", tz, s.TimeZone)
		case s.TimeZone == "":
			c.loc = loc
		}
	}
	// The zone prefix was handled above: robfig/cron panics on "CRON_TZ=x" without
	// a schedule and would read a missing zone as time.Local.
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	sched, err := parser.Parse(spec)
	if err != nil {
		ps.add("cron", `%q is not a cron expression (%v); use five fields "minute hour day-of-month month day-of-week", e.g. "*/30 9-17 * * mon-fri", or @hourly, @daily, @weekly, @every 2h`, s.Cron, err)
		return
	}
	switch t := sched.(type) {
	case *cron.SpecSchedule:
		t.Location = c.loc
		c.fixedHour = t.Hour&cronStarBit == 0
		if t.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
			ps.add("cron", "%q never matches a date (e.g. 30 February); check day-of-month and month", s.Cron)
			return
		}
	case cron.ConstantDelaySchedule:
		if t.Delay < minInterval {
			ps.add("cron", "%q starts more often than once a minute; use at least @every 1m", s.Cron)
			return
		}
		c.every = true
	}
	c.cron = sched
}

func (c *Compiled) compileChaosMonkey(cm ChaosMonkey, ps *problems) {
	const field = "chaosMonkey.meanTimeBetweenRuns"
	mean, meanOK := parseDuration(ps, field, cm.MeanTimeBetweenRuns, true)
	if meanOK && mean < minInterval {
		ps.add(field, "%q is shorter than the minimum 1m; it counts only time inside windows, so hours are typical (e.g. \"4h\")", cm.MeanTimeBetweenRuns)
		meanOK = false
	}
	gap, gapOK := parseDuration(ps, "chaosMonkey.minGap", cm.MinGap, false)
	switch {
	case gapOK && gap < 0:
		ps.add("chaosMonkey.minGap", "%q is negative; use 0 or a positive duration", cm.MinGap)
	case gapOK && meanOK && gap >= mean:
		ps.add("chaosMonkey.minGap", "%q must be shorter than meanTimeBetweenRuns (%q), which includes it", cm.MinGap, cm.MeanTimeBetweenRuns)
	}
	c.mean, c.minGap = mean, gap
}

func parseDuration(ps *problems, field, s string, required bool) (time.Duration, bool) {
	if s == "" {
		if required {
			ps.add(field, `required; a duration such as "4h" or "90m"`)
			return 0, false
		}
		return 0, true
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ps.add(field, `%q is not a duration; use h, m and s, e.g. "4h" or "90m" (a day is "24h")`, s)
		return 0, false
	}
	return d, true
}

func (c *Compiled) compileWindows(ws []Window, ps *problems) {
	for i, w := range ws {
		f := fmt.Sprintf("windows[%d]", i)
		days, bad := parseDays(w.Days)
		for _, b := range bad {
			ps.add(f+".days", "%q is not a day; use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri", b)
		}
		start, okS := clockField(ps, f+".start", w.Start)
		if okS && start == minutesPerDay {
			ps.add(f+".start", `"24:00" can only end a window; start at "00:00"`)
			okS = false
		}
		end, okE := clockField(ps, f+".end", w.End)
		if okS && okE && start%minutesPerDay == end%minutesPerDay && !(start == 0 && end == minutesPerDay) {
			ps.add(f+".end", `equals start (%q); a window needs a length, and a whole day is start "00:00", end "24:00"`, w.Start)
		}
		loc := c.loc
		if w.TimeZone != "" {
			l, msg := loadZone(w.TimeZone)
			if msg != "" {
				ps.add(f+".timeZone", "%s", msg)
			} else {
				loc = l
			}
		}
		c.windows = append(c.windows, window{days: days, start: start, end: end, loc: loc})
	}
}

func clockField(ps *problems, field, s string) (int, bool) {
	if s == "" {
		ps.add(field, `required; use 24-hour HH:MM, e.g. "09:00"`)
		return 0, false
	}
	m, ok := parseClock(s)
	if !ok {
		ps.add(field, `%q is not a time of day; use 24-hour HH:MM, e.g. "09:00"`, s)
	}
	return m, ok
}

func (c *Compiled) compileBlackouts(bs []Blackout, ps *problems) {
	for i, b := range bs {
		f := fmt.Sprintf("blackouts[%d]", i)
		from, okF := boundField(ps, f+".from", b.From, c.loc, false)
		to, okT := boundField(ps, f+".to", b.To, c.loc, true)
		if okF && okT && !to.After(from) {
			ps.add(f+".to", "%q is not after from (%q); a blackout must end after it starts", b.To, b.From)
		}
		c.blackouts = append(c.blackouts, blackout{Blackout: b, from: from, to: to})
	}
	slices.SortStableFunc(c.blackouts, func(a, b blackout) int { return a.from.Compare(b.from) })
}

func boundField(ps *problems, field, s string, loc *time.Location, isEnd bool) (time.Time, bool) {
	if s == "" {
		ps.add(field, "required; use a date (2026-12-24, the whole day in the schedule's time zone) or an RFC 3339 time (2026-12-24T18:00:00+01:00)")
		return time.Time{}, false
	}
	t, err := parseBound(s, loc, isEnd)
	if err != nil {
		ps.add(field, "%q is not a date or time; use YYYY-MM-DD for whole days in the schedule's time zone, or RFC 3339, e.g. 2026-12-24T18:00:00+01:00", s)
		return time.Time{}, false
	}
	return t, true
}

// loadZone returns a problem message instead of an error because every caller
// reports it under its own field.
func loadZone(name string) (*time.Location, string) {
	if name == "Local" {
		return nil, `"Local" depends on the host; name the zone, e.g. Europe/Berlin or UTC`
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		return loc, ""
	}
	if _, probe := time.LoadLocation("Europe/Berlin"); probe != nil {
		return nil, fmt.Sprintf("cannot load %q (%v): the time zone database is missing; install tzdata or build with -tags timetzdata", name, err)
	}
	return nil, fmt.Sprintf("%q is not a known IANA time zone; use a name like Europe/Berlin, America/New_York or UTC", name)
}
