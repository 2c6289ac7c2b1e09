package schedule

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// benchSchedules is a daemon-sized config: cron and chaos-monkey schedules in
// several zones, with working-hours and night windows and blackouts.
func benchSchedules(b *testing.B) []*Compiled {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"}
	crons := []string{"*/15 * * * *", "0 10 * * mon-fri", "30 2 * * *", "0 */2 * * *"}
	var out []*Compiled
	for i := range 100 {
		s := Schedule{
			Name:     fmt.Sprintf("s%d", i),
			Runbook:  "rb",
			TimeZone: zones[i%len(zones)],
			Windows:  []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "17:00"}},
			Blackouts: []Blackout{
				{From: "2026-12-21", To: "2027-01-01"},
				{From: "2026-06-10T12:00:00+02:00", To: "2026-06-10T15:00:00+02:00"},
			},
		}
		if i%2 == 0 {
			s.Cron = crons[(i/2)%len(crons)]
			if s.Cron == "30 2 * * *" {
				s.Windows = []Window{{Start: "22:00", End: "04:00"}}
			}
		} else {
			s.ChaosMonkey = &ChaosMonkey{MeanTimeBetweenRuns: "4h", MinGap: "30m"}
		}
		c, err := Compile(s)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// BenchmarkNext reports one op = one Next call on each of 100 schedules, which
// is what the daemon does when all of them have just started a run. The
// baseline is robfig/cron alone on 100 bare specs, measured in the same run.
func BenchmarkNext(b *testing.B) {
	after := time.Date(2026, 3, 27, 18, 0, 0, 0, time.UTC) // Friday evening: most searches cross a weekend
	b.Run("baseline-robfig-cron-100", func(b *testing.B) {
		p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
		var specs []cron.Schedule
		for i := range 100 {
			s, err := p.Parse([]string{"*/15 * * * *", "0 10 * * mon-fri", "30 2 * * *", "0 */2 * * *"}[i%4])
			if err != nil {
				b.Fatal(err)
			}
			specs = append(specs, s)
		}
		for b.Loop() {
			for _, s := range specs {
				_ = s.Next(after)
			}
		}
	})
	b.Run("schedules-100", func(b *testing.B) {
		cs := benchSchedules(b)
		rng := rand.New(rand.NewPCG(1, 1))
		for b.Loop() {
			for _, c := range cs {
				if c.Next(after, rng).IsZero() {
					b.Fatal("no next start")
				}
			}
		}
	})
}
