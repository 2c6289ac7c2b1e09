package schedule

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func utcTimes(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Format(time.RFC3339)
	}
	return out
}

func TestNextCron(t *testing.T) {
	tests := []struct {
		name  string
		s     Schedule
		after string
		want  []string // UTC
	}{
		{
			name:  "cron, window and zone across the New York spring change",
			s:     Schedule{Cron: "0,30 * * * *", TimeZone: "America/New_York", Windows: []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "10:00"}}},
			after: "2026-03-06T14:30:00Z", // Fri 09:30 EST, itself a start: strictly after
			want:  []string{"2026-03-09T13:00:00Z", "2026-03-09T13:30:00Z", "2026-03-10T13:00:00Z"},
		},
		{
			name:  "cron, window and zone across the Berlin fall change",
			s:     Schedule{Cron: "0 9 * * *", TimeZone: "Europe/Berlin", Windows: []Window{{Days: []string{"fri-mon"}, Start: "08:00", End: "18:00"}}},
			after: "2026-10-22T12:00:00Z",
			want:  []string{"2026-10-23T07:00:00Z", "2026-10-24T07:00:00Z", "2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z", "2026-10-30T08:00:00Z"},
		},
		{
			name:  "CRON_TZ prefix",
			s:     Schedule{Cron: "CRON_TZ=Asia/Tokyo 0 9 * * *"},
			after: "2026-01-01T00:00:00Z",
			want:  []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"},
		},
		{
			name:  "fixed time runs once when clocks fall back",
			s:     Schedule{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"},
			after: "2026-10-23T12:00:00Z",
			want:  []string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		},
		{
			name:  "hourly runs every real hour when clocks fall back",
			s:     Schedule{Cron: "0 * * * *", TimeZone: "Europe/Berlin"},
			after: "2026-10-24T23:30:00Z",
			want:  []string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"},
		},
		{
			name:  "fixed time inside the spring-forward gap is skipped that day",
			s:     Schedule{Cron: "30 2 * * *", TimeZone: "Europe/Berlin"},
			after: "2026-03-27T12:00:00Z",
			want:  []string{"2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"},
		},
		{
			name:  "window in its own zone",
			s:     Schedule{Cron: "0 * * * *", Windows: []Window{{Start: "09:00", End: "11:00", TimeZone: "America/New_York"}}},
			after: "2026-01-05T00:00:00Z",
			want:  []string{"2026-01-05T14:00:00Z", "2026-01-05T15:00:00Z", "2026-01-06T14:00:00Z"},
		},
		{
			name:  "@every starts when the window opens",
			s:     Schedule{Cron: "@every 90m", Windows: []Window{{Start: "09:00", End: "10:00"}}},
			after: "2026-01-05T08:00:00Z",
			want:  []string{"2026-01-05T09:30:00Z", "2026-01-06T09:00:00Z", "2026-01-07T09:00:00Z"},
		},
		{
			name:  "window crossing midnight",
			s:     Schedule{Cron: "0 */2 * * *", Windows: []Window{{Days: []string{"sat"}, Start: "23:00", End: "03:00"}}},
			after: "2026-01-09T00:00:00Z",
			want:  []string{"2026-01-11T00:00:00Z", "2026-01-11T02:00:00Z", "2026-01-18T00:00:00Z"},
		},
		{
			name:  "cron never inside the windows gives up",
			s:     Schedule{Cron: "0 3 * * *", Windows: []Window{{Start: "09:00", End: "17:00"}}},
			after: "2026-01-05T00:00:00Z",
			want:  nil,
		},
		{
			name:  "blackout longer than the horizon gives up",
			s:     Schedule{Cron: "@hourly", Blackouts: []Blackout{{From: "2026-01-01", To: "2027-12-31"}}},
			after: "2026-01-05T00:00:00Z",
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.s)
			n := max(len(tt.want), 1)
			got := utcTimes(c.NextN(ts(tt.after), n, nil))
			if !slices.Equal(got, tt.want) {
				t.Errorf("NextN:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestNextNeverInBlackout checks many cron and chaos-monkey starts against
// blackout intervals written out by hand, and that the starts resume right at
// the end of a blackout (so the check is not passing by excluding too much).
func TestNextNeverInBlackout(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	blackouts := []Blackout{
		{Name: "freeze", From: "2026-03-27", To: "2026-03-31"},
		{Name: "deploy", From: "2026-04-08T11:00:00+02:00", To: "2026-04-08T13:30:00+02:00"},
		{Name: "audit", From: "2026-04-20T15:00:00Z", To: "2026-04-21"},
	}
	forbidden := [][2]time.Time{
		{time.Date(2026, 3, 27, 0, 0, 0, 0, berlin), time.Date(2026, 4, 1, 0, 0, 0, 0, berlin)},
		{ts("2026-04-08T09:00:00Z"), ts("2026-04-08T11:30:00Z")},
		{ts("2026-04-20T15:00:00Z"), time.Date(2026, 4, 22, 0, 0, 0, 0, berlin)},
	}
	window := []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}}
	schedules := map[string]Schedule{
		"cron":         {Cron: "*/10 * * * *", TimeZone: "Europe/Berlin", Windows: window, Blackouts: blackouts},
		"chaos monkey": {ChaosMonkey: &ChaosMonkey{MeanTimeBetweenRuns: "20m"}, TimeZone: "Europe/Berlin", Windows: window, Blackouts: blackouts},
	}
	for name, s := range schedules {
		t.Run(name, func(t *testing.T) {
			c := mustCompile(t, s)
			starts := c.NextN(ts("2026-03-20T00:00:00Z"), 3000, rand.New(rand.NewPCG(7, 7)))
			if last := starts[len(starts)-1]; last.Before(ts("2026-05-01T00:00:00Z")) {
				t.Fatalf("simulation ends at %s, before the last blackout", last)
			}
			for _, st := range starts {
				for _, f := range forbidden {
					if !st.Before(f[0]) && st.Before(f[1]) {
						t.Errorf("start %s inside blackout [%s, %s)", st, f[0], f[1])
					}
				}
				if l := st.In(berlin); l.Weekday() == time.Saturday || l.Weekday() == time.Sunday || l.Hour() < 9 || l.Hour() >= 17 {
					t.Errorf("start %s outside the window", l)
				}
			}
			if name == "cron" {
				for _, resume := range []time.Time{forbidden[1][1], ts("2026-04-01T07:00:00Z"), ts("2026-04-22T07:00:00Z")} {
					if !slices.ContainsFunc(starts, resume.Equal) {
						t.Errorf("no start at %s, when the blackout ends", resume)
					}
				}
			}
		})
	}
}

// TestNextChaosMonkeySpacing simulates a year of kube-monkey-style starts and
// checks the gaps measured in window time with an independent oracle.
func TestNextChaosMonkeySpacing(t *testing.T) {
	const (
		mean   = 4 * time.Hour
		minGap = time.Hour
	)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	c := mustCompile(t, Schedule{
		ChaosMonkey: &ChaosMonkey{MeanTimeBetweenRuns: mean.String(), MinGap: minGap.String()},
		TimeZone:    "Europe/Berlin",
		Windows:     []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}},
		Blackouts: []Blackout{
			{From: "2026-12-21", To: "2027-01-01"},
			{From: "2026-06-10T12:00:00+02:00", To: "2026-06-10T15:00:00+02:00"},
		},
	})
	holiday := func(d time.Time) bool { // the date-only blackout, whole days
		return !d.Before(time.Date(2026, 12, 21, 0, 0, 0, 0, berlin)) && d.Before(time.Date(2027, 1, 2, 0, 0, 0, 0, berlin))
	}
	freeze := [2]time.Time{time.Date(2026, 6, 10, 12, 0, 0, 0, berlin), time.Date(2026, 6, 10, 15, 0, 0, 0, berlin)}
	// clip is the length of [lo, hi) intersected with every interval.
	clip := func(lo, hi time.Time, ivs ...[2]time.Time) time.Duration {
		for _, iv := range ivs {
			lo = later(lo, iv[0])
			if iv[1].Before(hi) {
				hi = iv[1]
			}
		}
		return max(hi.Sub(lo), 0)
	}
	// windowTime sums 09:00-17:00 on working days in [a, b), minus blackouts.
	windowTime := func(a, b time.Time) time.Duration {
		var sum time.Duration
		la := a.In(berlin)
		for d := time.Date(la.Year(), la.Month(), la.Day(), 0, 0, 0, 0, berlin); d.Before(b); d = d.AddDate(0, 0, 1) {
			if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday || holiday(d) {
				continue
			}
			w := [2]time.Time{time.Date(d.Year(), d.Month(), d.Day(), 9, 0, 0, 0, berlin), time.Date(d.Year(), d.Month(), d.Day(), 17, 0, 0, 0, berlin)}
			sum += clip(a, b, w) - clip(a, b, w, freeze)
		}
		return sum
	}

	rng := rand.New(rand.NewPCG(2026, 1))
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, berlin)
	until := from.AddDate(1, 0, 0)
	var gaps []float64 // hours of window time
	for prev := from; ; {
		next := c.Next(prev, rng)
		if next.IsZero() {
			t.Fatalf("Next(%s) gave up", prev)
		}
		if next.After(until) {
			break
		}
		l := next.In(berlin)
		if l.Weekday() == time.Saturday || l.Weekday() == time.Sunday || l.Hour() < 9 || l.Hour() >= 17 || holiday(l) ||
			(!next.Before(freeze[0]) && next.Before(freeze[1])) {
			t.Errorf("start %s is not permitted", l)
		}
		wt := windowTime(prev, next)
		if wt < minGap || next.Sub(prev) < minGap {
			t.Errorf("gap %s -> %s is %s (%s in window time), below minGap %s", prev, l, next.Sub(prev), wt, minGap)
		}
		gaps = append(gaps, wt.Hours())
		prev = next
	}
	n := float64(len(gaps))
	if n < 100 {
		t.Fatalf("only %v starts in a year", n)
	}
	var sum float64
	for _, g := range gaps {
		sum += g
	}
	avg := sum / n
	// The gap is minGap plus an exponential with mean mean-minGap, whose standard
	// deviation is also mean-minGap.
	se := (mean - minGap).Hours() / math.Sqrt(n)
	if math.Abs(avg-mean.Hours()) > 3*se {
		t.Errorf("mean gap %.3fh in window time over %v starts; want %.1fh ± %.3fh (3 standard errors)", avg, n, mean.Hours(), 3*se)
	}
	// Shape, not only the mean: half the gaps fall below the distribution's median.
	median := minGap.Hours() + (mean-minGap).Hours()*math.Ln2
	below := 0.0
	for _, g := range gaps {
		if g < median {
			below++
		}
	}
	if frac, se := below/n, 0.5/math.Sqrt(n); math.Abs(frac-0.5) > 3*se {
		t.Errorf("%.3f of gaps below the median %.2fh; want 0.5 ± %.3f", frac, median, 3*se)
	}
	t.Logf("%v starts, mean gap %.3fh in window time (SE %.3fh)", n, avg, se)
}

func TestNextDeterministicPerSeed(t *testing.T) {
	c := mustCompile(t, Schedule{ChaosMonkey: &ChaosMonkey{MeanTimeBetweenRuns: "4h", MinGap: "30m"},
		Windows: []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}}})
	after := ts("2026-02-02T00:00:00Z")
	a := c.NextN(after, 20, rand.New(rand.NewPCG(1, 2)))
	b := c.NextN(after, 20, rand.New(rand.NewPCG(1, 2)))
	d := c.NextN(after, 20, rand.New(rand.NewPCG(3, 4)))
	if len(a) != 20 || !slices.EqualFunc(a, b, time.Time.Equal) {
		t.Errorf("same seed, different starts:\n%v\n%v", a, b)
	}
	if slices.EqualFunc(a, d, time.Time.Equal) {
		t.Errorf("different seeds, same starts: %v", a)
	}
	for i, s := range a {
		if !s.Truncate(time.Second).Equal(s) {
			t.Errorf("start %d = %s is not a whole second", i, s)
		}
	}
}

func TestCapReached(t *testing.T) {
	c := mustCompile(t, Schedule{Cron: "@hourly", TimeZone: "Europe/Berlin", MaxRunsPerDay: 2})
	// 23:30Z on the 9th is already the 10th in Berlin.
	starts := []time.Time{ts("2026-01-09T23:30:00Z"), ts("2026-01-10T08:00:00Z"), ts("2026-01-09T10:00:00Z")}
	tests := []struct {
		at   string
		want bool
	}{
		{"2026-01-10T12:00:00Z", true},
		{"2026-01-09T22:59:00Z", false}, // the 9th in Berlin holds one start
		{"2026-01-10T23:00:00Z", false}, // the 11th
	}
	for _, tt := range tests {
		if got := c.CapReached(starts, ts(tt.at)); got != tt.want {
			t.Errorf("CapReached(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
	if uncapped := mustCompile(t, Schedule{Cron: "@hourly"}); uncapped.CapReached(starts, ts("2026-01-10T12:00:00Z")) {
		t.Error("CapReached without MaxRunsPerDay = true")
	}
	got := utcTimes(c.NextN(ts("2026-01-09T20:30:00Z"), 5, nil))
	want := []string{"2026-01-09T21:00:00Z", "2026-01-09T22:00:00Z", "2026-01-09T23:00:00Z", "2026-01-10T00:00:00Z", "2026-01-10T23:00:00Z"}
	if !slices.Equal(got, want) {
		t.Errorf("NextN with cap 2/day:\n got %v\nwant %v", got, want)
	}
}
