package schedule

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // hermetic zones: the tests must not depend on the host's tzdata

	"gopkg.in/yaml.v3"
)

// ts parses an RFC 3339 literal of a test table.
func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustCompile(t *testing.T, s Schedule) *Compiled {
	t.Helper()
	if s.Name == "" {
		s.Name = "test"
	}
	if s.Runbook == "" {
		s.Runbook = "pod-kill"
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

const (
	msgDay     = `is not a day; use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri`
	msgZone    = `is not a known IANA time zone; use a name like Europe/Berlin, America/New_York or UTC`
	msgCronUse = `use five fields "minute hour day-of-month month day-of-week", e.g. "*/30 9-17 * * mon-fri", or @hourly, @daily, @weekly, @every 2h`
)

func TestCompileReportsEveryProblem(t *testing.T) {
	base := func(mod func(*Schedule)) Schedule {
		s := Schedule{Name: "n", Runbook: "r", Cron: "0 10 * * mon-fri"}
		mod(&s)
		return s
	}
	tests := []struct {
		name string
		s    Schedule
		want []Problem
	}{
		{
			name: "everything wrong at once",
			s: Schedule{
				TimeZone: "Europe/Berln",
				Windows: []Window{
					{Days: []string{"mnday", "fri-"}, Start: "9am", End: "24:00"},
					{Start: "10:00", End: "10:00", TimeZone: "Local"},
					{Start: "24:00", End: ""},
				},
				Blackouts:     []Blackout{{From: "2026-12-24", To: "2026-12-01"}, {From: "24.12.2026"}},
				Concurrency:   "allow",
				MaxRunsPerDay: -1,
			},
			want: []Problem{
				{"name", `required; it names the schedule in logs, history and "faultline schedule"`},
				{"runbook", "required; the runbook this schedule starts"},
				{"timeZone", `"Europe/Berln" ` + msgZone},
				{"cron", `required unless chaosMonkey is set; e.g. "0 10 * * mon-fri", or chaosMonkey: {meanTimeBetweenRuns: 4h}`},
				{"windows[0].days", `"mnday" ` + msgDay},
				{"windows[0].days", `"fri-" ` + msgDay},
				{"windows[0].start", `"9am" is not a time of day; use 24-hour HH:MM, e.g. "09:00"`},
				{"windows[1].end", `equals start ("10:00"); a window needs a length, and a whole day is start "00:00", end "24:00"`},
				{"windows[1].timeZone", `"Local" depends on the host; name the zone, e.g. Europe/Berlin or UTC`},
				{"windows[2].start", `"24:00" can only end a window; start at "00:00"`},
				{"windows[2].end", `required; use 24-hour HH:MM, e.g. "09:00"`},
				{"blackouts[0].to", `"2026-12-01" is not after from ("2026-12-24"); a blackout must end after it starts`},
				{"blackouts[1].from", `"24.12.2026" is not a date or time; use YYYY-MM-DD for whole days in the schedule's time zone, or RFC 3339, e.g. 2026-12-24T18:00:00+01:00`},
				{"blackouts[1].to", `required; use a date (2026-12-24, the whole day in the schedule's time zone) or an RFC 3339 time (2026-12-24T18:00:00+01:00)`},
				{"concurrency", `"allow" is not a policy; use forbid (skip a start while the target's previous run is active; the default) or queue (wait for it)`},
				{"maxRunsPerDay", "-1 is negative; use 0 for no cap or the most runs per calendar day"},
			},
		},
		{
			name: "cron and chaosMonkey together",
			s:    base(func(s *Schedule) { s.ChaosMonkey = &ChaosMonkey{MeanTimeBetweenRuns: "4h"} }),
			want: []Problem{{"cron", "set either cron or chaosMonkey, not both"}},
		},
		{
			name: "six cron fields",
			s:    base(func(s *Schedule) { s.Cron = "0 0 10 * * *" }),
			want: []Problem{{"cron", `"0 0 10 * * *" is not a cron expression (expected exactly 5 fields, found 6: [0 0 10 * * *]); ` + msgCronUse}},
		},
		{
			name: "cron that never matches",
			s:    base(func(s *Schedule) { s.Cron = "0 10 30 2 *" }),
			want: []Problem{{"cron", `"0 10 30 2 *" never matches a date (e.g. 30 February); check day-of-month and month`}},
		},
		{
			name: "every faster than a minute",
			s:    base(func(s *Schedule) { s.Cron = "@every 30s" }),
			want: []Problem{{"cron", `"@every 30s" starts more often than once a minute; use at least @every 1m`}},
		},
		{
			name: "CRON_TZ disagrees with timeZone",
			s:    base(func(s *Schedule) { s.Cron = "CRON_TZ=Asia/Tokyo 0 10 * * *"; s.TimeZone = "Europe/Berlin" }),
			want: []Problem{{"cron", `CRON_TZ=Asia/Tokyo disagrees with timeZone "Europe/Berlin"; set the zone in one place`}},
		},
		{
			name: "CRON_TZ unknown and no schedule",
			s:    base(func(s *Schedule) { s.Cron = "CRON_TZ=Mars/Olympus" }),
			want: []Problem{
				{"cron", `CRON_TZ: "Mars/Olympus" ` + msgZone},
				{"cron", `"CRON_TZ=Mars/Olympus" is not a cron expression (empty spec string); ` + msgCronUse},
			},
		},
		{
			name: "chaos monkey durations",
			s: base(func(s *Schedule) {
				s.Cron = ""
				s.ChaosMonkey = &ChaosMonkey{MeanTimeBetweenRuns: "1d", MinGap: "-5m"}
			}),
			want: []Problem{
				{"chaosMonkey.meanTimeBetweenRuns", `"1d" is not a duration; use h, m and s, e.g. "4h" or "90m" (a day is "24h")`},
				{"chaosMonkey.minGap", `"-5m" is negative; use 0 or a positive duration`},
			},
		},
		{
			name: "chaos monkey mean too short",
			s: base(func(s *Schedule) {
				s.Cron = ""
				s.ChaosMonkey = &ChaosMonkey{MeanTimeBetweenRuns: "4s"}
			}),
			want: []Problem{{"chaosMonkey.meanTimeBetweenRuns", `"4s" is shorter than the minimum 1m; it counts only time inside windows, so hours are typical (e.g. "4h")`}},
		},
		{
			name: "chaos monkey gap not below mean",
			s: base(func(s *Schedule) {
				s.Cron = ""
				s.ChaosMonkey = &ChaosMonkey{MeanTimeBetweenRuns: "4h", MinGap: "4h"}
			}),
			want: []Problem{{"chaosMonkey.minGap", `"4h" must be shorter than meanTimeBetweenRuns ("4h"), which includes it`}},
		},
		{
			name: "chaos monkey without mean",
			s:    base(func(s *Schedule) { s.Cron = ""; s.ChaosMonkey = &ChaosMonkey{} }),
			want: []Problem{{"chaosMonkey.meanTimeBetweenRuns", `required; a duration such as "4h" or "90m"`}},
		},
		{
			name: "RFC 3339 blackout ending at its start",
			s: base(func(s *Schedule) {
				s.Blackouts = []Blackout{{From: "2026-05-05T11:00:00+02:00", To: "2026-05-05T09:00:00Z"}}
			}),
			want: []Problem{{"blackouts[0].to", `"2026-05-05T09:00:00Z" is not after from ("2026-05-05T11:00:00+02:00"); a blackout must end after it starts`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.s)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Compile = %v, %v; want *ValidationError", c, err)
			}
			if !slices.Equal(ve.Problems, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", ve.Problems, tt.want)
			}
		})
	}
}

func TestCompileAcceptsValidSchedules(t *testing.T) {
	tests := []struct {
		name      string
		s         Schedule
		wantZone  string
		wantConc  string
		wantTargt string
	}{
		{"defaults", Schedule{Name: "a", Runbook: "rb", Cron: "@hourly"}, "UTC", "forbid", "rb"},
		{"CRON_TZ sets the zone", Schedule{Name: "a", Runbook: "rb", Cron: "CRON_TZ=Asia/Tokyo 0 9 * * *"}, "Asia/Tokyo", "forbid", "rb"},
		{"TZ= agrees with timeZone", Schedule{Name: "a", Runbook: "rb", Cron: "TZ=Europe/Berlin 0 9 * * *", TimeZone: "Europe/Berlin"}, "Europe/Berlin", "forbid", "rb"},
		{"explicit queue and target", Schedule{Name: "a", Runbook: "rb", Cron: "@daily", Concurrency: "queue", Target: "payments"}, "UTC", "queue", "payments"},
		{"whole-day window, wrapping days", Schedule{Name: "a", Runbook: "rb", ChaosMonkey: &ChaosMonkey{MeanTimeBetweenRuns: "4h"},
			Windows: []Window{{Days: []string{"Fri-Mon"}, Start: "00:00", End: "24:00"}, {Start: "9:00", End: "17:00"}}}, "UTC", "forbid", "rb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Schedule()
			if c.Location().String() != tt.wantZone || got.Concurrency != tt.wantConc || c.Target() != tt.wantTargt || got.Target != tt.wantTargt {
				t.Errorf("zone %s, concurrency %q, target %q; want %s, %q, %q", c.Location(), got.Concurrency, c.Target(), tt.wantZone, tt.wantConc, tt.wantTargt)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	_, err := Compile(Schedule{Name: "nightly", Runbook: "r", Cron: "0 10 * * *", Concurrency: "parallel", MaxRunsPerDay: -2})
	want := `schedule "nightly" is invalid:
  concurrency: "parallel" is not a policy; use forbid (skip a start while the target's previous run is active; the default) or queue (wait for it)
  maxRunsPerDay: -2 is negative; use 0 for no cap or the most runs per calendar day`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestParseDays(t *testing.T) {
	tests := []struct {
		in   []string
		want []time.Weekday
		bad  []string
	}{
		{nil, []time.Weekday{0, 1, 2, 3, 4, 5, 6}, nil},
		{[]string{"mon-fri"}, []time.Weekday{1, 2, 3, 4, 5}, nil},
		{[]string{"fri-mon"}, []time.Weekday{0, 1, 5, 6}, nil},
		{[]string{"SAT", " sun "}, []time.Weekday{0, 6}, nil},
		{[]string{"wed", "monday", "x-y"}, []time.Weekday{3}, []string{"monday", "x-y"}},
	}
	for _, tt := range tests {
		days, bad := parseDays(tt.in)
		var got []time.Weekday
		for d, on := range days {
			if on {
				got = append(got, time.Weekday(d))
			}
		}
		if !slices.Equal(got, tt.want) || !slices.Equal(bad, tt.bad) {
			t.Errorf("parseDays(%q) = %v, bad %q; want %v, bad %q", tt.in, got, bad, tt.want, tt.bad)
		}
	}
}

func TestScheduleDecodesStrictlyFromYAML(t *testing.T) {
	const doc = `
name: payments-pod-kill
runbook: runbooks/pod-kill.yaml
timeZone: Europe/Berlin
chaosMonkey: {meanTimeBetweenRuns: 4h, minGap: 30m}
windows:
  - {days: [mon-fri], start: "09:00", end: "17:00"}
  - {days: [sat], start: "22:00", end: "02:00", timeZone: America/New_York}
blackouts:
  - {name: xmas, from: 2026-12-24, to: 2026-12-26, reason: code freeze}
concurrency: queue
target: payments
maxRunsPerDay: 3
`
	var s Schedule
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Schedule(); got.ChaosMonkey.MinGap != "30m" || got.Windows[1].TimeZone != "America/New_York" ||
		got.Blackouts[0].Reason != "code freeze" || got.MaxRunsPerDay != 3 || c.Target() != "payments" {
		t.Errorf("decoded %+v", got)
	}
	dec = yaml.NewDecoder(strings.NewReader("name: x\ntimezone: UTC\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err == nil || !strings.Contains(err.Error(), "field timezone not found") {
		t.Errorf("strict decode of a miscased key = %v", err)
	}
}

// FuzzCompile checks that no input panics and that a schedule which compiles
// only ever proposes permitted starts.
func FuzzCompile(f *testing.F) {
	f.Add("*/15 9-17 * * mon-fri", "Europe/Berlin", "mon-fri", "09:00", "17:00", "2026-03-29", "2026-03-30")
	f.Add("CRON_TZ=America/New_York 30 2 * * *", "", "fri-mon", "22:00", "02:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00")
	f.Add("@every 1h", "Asia/Kolkata", "sun", "00:00", "24:00", "2026-01-01", "2026-01-01")
	f.Add("CRON_TZ=", "Local", "mon-", "9", "24:01", "", "x")
	f.Fuzz(func(t *testing.T, cronSpec, zone, days, start, end, from, to string) {
		s := Schedule{Name: "f", Runbook: "r", Cron: cronSpec, TimeZone: zone,
			Windows: []Window{{Days: []string{days}, Start: start, End: end}}}
		if from != "" || to != "" {
			s.Blackouts = []Blackout{{From: from, To: to}}
		}
		c, err := Compile(s)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Compile error %v is not a ValidationError with problems", err)
			}
			return
		}
		after := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for _, st := range c.NextN(after, 5, nil) {
			if !st.After(after) || !c.Permitted(st) {
				t.Fatalf("start %s after %s is not permitted", st, after)
			}
			after = st
		}
	})
}
