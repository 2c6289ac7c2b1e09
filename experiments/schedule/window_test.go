package schedule

import "testing"

func TestInWindow(t *testing.T) {
	workday := func(zone string) Schedule {
		return Schedule{Cron: "@hourly", TimeZone: zone, Windows: []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}}}
	}
	everyDay := func(zone, start, end string) Schedule {
		return Schedule{Cron: "@hourly", TimeZone: zone, Windows: []Window{{Start: start, End: end}}}
	}
	tests := []struct {
		name string
		s    Schedule
		at   string
		want bool
	}{
		// Europe/Berlin springs forward on Sun 2026-03-29 and falls back on Sun 2026-10-25:
		// 09:00 local is 08:00Z before, 07:00Z between, 08:00Z after.
		{"berlin fri before spring, 08:59 CET", workday("Europe/Berlin"), "2026-03-27T07:59:00Z", false},
		{"berlin fri before spring, 09:00 CET", workday("Europe/Berlin"), "2026-03-27T08:00:00Z", true},
		{"berlin fri before spring, 16:59 CET", workday("Europe/Berlin"), "2026-03-27T15:59:00Z", true},
		{"berlin fri before spring, 17:00 CET", workday("Europe/Berlin"), "2026-03-27T16:00:00Z", false},
		{"berlin saturday", workday("Europe/Berlin"), "2026-03-28T10:00:00Z", false},
		{"berlin mon after spring, 08:59 CEST", workday("Europe/Berlin"), "2026-03-30T06:59:00Z", false},
		{"berlin mon after spring, 09:00 CEST", workday("Europe/Berlin"), "2026-03-30T07:00:00Z", true},
		{"berlin mon after spring, 17:00 CEST", workday("Europe/Berlin"), "2026-03-30T15:00:00Z", false},
		{"berlin fri before fall, 09:00 CEST", workday("Europe/Berlin"), "2026-10-23T07:00:00Z", true},
		{"berlin mon after fall, 08:00 CET", workday("Europe/Berlin"), "2026-10-26T07:00:00Z", false},
		{"berlin mon after fall, 09:00 CET", workday("Europe/Berlin"), "2026-10-26T08:00:00Z", true},
		{"berlin mon after fall, 16:30 CET", workday("Europe/Berlin"), "2026-10-26T15:30:00Z", true},
		// America/New_York: 2026-03-08 and 2026-11-01.
		{"new york fri 09:00 EST", workday("America/New_York"), "2026-03-06T14:00:00Z", true},
		{"new york fri 08:59 EST", workday("America/New_York"), "2026-03-06T13:59:00Z", false},
		{"new york mon 09:00 EDT", workday("America/New_York"), "2026-03-09T13:00:00Z", true},
		{"new york mon 08:59 EDT", workday("America/New_York"), "2026-03-09T12:59:00Z", false},
		{"new york fri 16:59 EDT", workday("America/New_York"), "2026-10-30T20:59:00Z", true},
		{"new york mon 08:00 EST", workday("America/New_York"), "2026-11-02T13:00:00Z", false},
		{"new york mon 16:59 EST", workday("America/New_York"), "2026-11-02T21:59:00Z", true},
		// A 01:00-04:00 window lasts 2h when clocks spring forward and 4h when they fall back.
		{"spring night 01:00 CET", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-03-29T00:00:00Z", true},
		{"spring night 03:59 CEST", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-03-29T01:59:00Z", true},
		{"spring night 04:00 CEST", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-03-29T02:00:00Z", false},
		{"fall night 01:00 CEST", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-10-24T23:00:00Z", true},
		{"fall night 03:59 CET", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-10-25T02:59:00Z", true},
		{"fall night 04:00 CET", everyDay("Europe/Berlin", "01:00", "04:00"), "2026-10-25T03:00:00Z", false},
		// 02:00-02:30 does not exist on the spring-forward day and exists once on the fall-back day.
		{"gap window, 01:59 CET", everyDay("Europe/Berlin", "02:00", "02:30"), "2026-03-29T00:59:00Z", false},
		{"gap window, 03:00 CEST", everyDay("Europe/Berlin", "02:00", "02:30"), "2026-03-29T01:00:00Z", false},
		{"gap window, next day 02:10 CEST", everyDay("Europe/Berlin", "02:00", "02:30"), "2026-03-30T00:10:00Z", true},
		{"overlap window, first 02:10 CEST", everyDay("Europe/Berlin", "02:00", "02:30"), "2026-10-25T00:10:00Z", true},
		{"overlap window, repeated 02:10 CET", everyDay("Europe/Berlin", "02:00", "02:30"), "2026-10-25T01:10:00Z", false},
		// Window in its own zone, schedule in UTC.
		{"own zone", Schedule{Cron: "@hourly", Windows: []Window{{Start: "09:00", End: "10:00", TimeZone: "Asia/Kolkata"}}}, "2026-01-05T03:45:00Z", true},
		{"own zone, outside", Schedule{Cron: "@hourly", Windows: []Window{{Start: "09:00", End: "10:00", TimeZone: "Asia/Kolkata"}}}, "2026-01-05T09:00:00Z", false},
		{"no windows", Schedule{Cron: "@hourly"}, "2026-01-04T03:00:00Z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.s)
			if got := c.InWindow(ts(tt.at)); got != tt.want {
				t.Errorf("InWindow(%s = %s) = %v, want %v", tt.at, ts(tt.at).In(c.Location()), got, tt.want)
			}
		})
	}
}

func TestWindowCrossingMidnight(t *testing.T) {
	// Friday night only: the window belongs to the day it opens.
	c := mustCompile(t, Schedule{Cron: "@hourly", TimeZone: "Europe/Berlin",
		Windows: []Window{{Days: []string{"fri"}, Start: "22:00", End: "02:00"}}})
	tests := []struct {
		local string // Europe/Berlin wall clock in winter (+01:00)
		want  bool
	}{
		{"2026-01-08T23:00:00+01:00", false}, // Thursday night
		{"2026-01-09T00:30:00+01:00", false}, // early Friday belongs to Thursday's window
		{"2026-01-09T21:59:00+01:00", false},
		{"2026-01-09T22:00:00+01:00", true},
		{"2026-01-09T23:59:59+01:00", true},
		{"2026-01-10T00:00:00+01:00", true},
		{"2026-01-10T01:59:59+01:00", true},
		{"2026-01-10T02:00:00+01:00", false},
		{"2026-01-10T22:30:00+01:00", false}, // Saturday night
	}
	for _, tt := range tests {
		if got := c.InWindow(ts(tt.local)); got != tt.want {
			t.Errorf("InWindow(%s) = %v, want %v", tt.local, got, tt.want)
		}
	}
}

func TestWindowEnd(t *testing.T) {
	tests := []struct {
		name string
		s    Schedule
		at   string
		want string // "" means ok == false
	}{
		{"berlin workday in winter", Schedule{TimeZone: "Europe/Berlin", Windows: []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}}},
			"2026-03-27T10:00:00Z", "2026-03-27T16:00:00Z"},
		{"berlin workday in summer", Schedule{TimeZone: "Europe/Berlin", Windows: []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}}},
			"2026-03-30T10:00:00Z", "2026-03-30T15:00:00Z"},
		{"crossing midnight", Schedule{Windows: []Window{{Days: []string{"fri"}, Start: "22:00", End: "02:00"}}},
			"2026-01-09T23:00:00Z", "2026-01-10T02:00:00Z"},
		{"crossing midnight, after midnight", Schedule{Windows: []Window{{Days: []string{"fri"}, Start: "22:00", End: "02:00"}}},
			"2026-01-10T01:00:00Z", "2026-01-10T02:00:00Z"},
		{"touching windows merge", Schedule{Windows: []Window{{Start: "09:00", End: "12:00"}, {Start: "12:00", End: "17:00"}}},
			"2026-01-09T10:00:00Z", "2026-01-09T17:00:00Z"},
		{"overlapping windows in two zones merge", Schedule{Windows: []Window{{Start: "09:00", End: "12:00"}, {Start: "11:00", End: "14:00", TimeZone: "Europe/Berlin"}}},
			"2026-01-09T10:00:00Z", "2026-01-09T13:00:00Z"},
		{"end inside the spring-forward gap is the transition", Schedule{TimeZone: "Europe/Berlin", Windows: []Window{{Start: "01:00", End: "02:30"}}},
			"2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"},
		{"end inside the fall-back overlap is its first occurrence", Schedule{TimeZone: "Europe/Berlin", Windows: []Window{{Start: "00:00", End: "02:30"}}},
			"2026-10-24T23:00:00Z", "2026-10-25T00:30:00Z"},
		{"outside", Schedule{Windows: []Window{{Start: "09:00", End: "17:00"}}}, "2026-01-09T08:00:00Z", ""},
		{"no windows never end", Schedule{}, "2026-01-09T08:00:00Z", ""},
		{"windows covering the week never end", Schedule{Windows: []Window{{Start: "00:00", End: "12:00"}, {Start: "12:00", End: "24:00"}}}, "2026-01-09T08:00:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.Cron = "@hourly"
			c := mustCompile(t, tt.s)
			end, ok := c.WindowEnd(ts(tt.at))
			if tt.want == "" {
				if ok {
					t.Errorf("WindowEnd = %s, true; want false", end)
				}
				return
			}
			if !ok || !end.Equal(ts(tt.want)) {
				t.Errorf("WindowEnd = %s, %v; want %s", end.UTC(), ok, tt.want)
			}
		})
	}
}

func TestInBlackoutAndDeadline(t *testing.T) {
	c := mustCompile(t, Schedule{Cron: "@hourly", TimeZone: "Europe/Berlin",
		Windows: []Window{{Start: "09:00", End: "17:00"}},
		Blackouts: []Blackout{
			{Name: "xmas", From: "2026-12-24", To: "2026-12-26"},
			{Name: "deploy", From: "2026-05-05T11:00:00+02:00", To: "2026-05-05T13:30:00+02:00"},
		}})
	tests := []struct {
		at   string
		want string // blackout name, "" for none
	}{
		{"2026-12-23T22:59:59Z", ""}, // 23:59:59 CET on the 23rd
		{"2026-12-23T23:00:00Z", "xmas"},
		{"2026-12-26T22:59:59Z", "xmas"}, // the whole of the 26th
		{"2026-12-26T23:00:00Z", ""},
		{"2026-05-05T08:59:59Z", ""},
		{"2026-05-05T09:00:00Z", "deploy"},
		{"2026-05-05T11:29:59Z", "deploy"},
		{"2026-05-05T11:30:00Z", ""}, // ends exclusively
	}
	for _, tt := range tests {
		b, ok := c.InBlackout(ts(tt.at))
		if ok != (tt.want != "") || b.Name != tt.want {
			t.Errorf("InBlackout(%s) = %q, %v; want %q", tt.at, b.Name, ok, tt.want)
		}
	}
	// A run started in the morning must stop when the deploy freeze begins, not at 17:00.
	if d, ok := c.Deadline(ts("2026-05-05T08:00:00Z")); !ok || !d.Equal(ts("2026-05-05T09:00:00Z")) {
		t.Errorf("Deadline before freeze = %s, %v; want 09:00Z", d, ok)
	}
	if d, ok := c.Deadline(ts("2026-05-05T12:00:00Z")); !ok || !d.Equal(ts("2026-05-05T15:00:00Z")) {
		t.Errorf("Deadline after freeze = %s, %v; want 15:00Z (17:00 CEST)", d, ok)
	}
	if _, ok := c.Deadline(ts("2026-05-05T10:00:00Z")); ok {
		t.Errorf("Deadline inside the freeze reported ok")
	}
}
