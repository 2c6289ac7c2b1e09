package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/daemon"
)

func (m *Main) scheduleCommand() *cli.Command {
	return &cli.Command{
		Name:  "schedule",
		Usage: "print the next start times of a daemon config's schedules",
		Description: `Loads and validates a daemon config (every runbook it names too) and prints the next
start times of each schedule, after windows, blackouts and daily caps are applied, in the
schedule's time zone. Check a calendar with this before trusting it to the daemon.

Chaos-monkey schedules are random: --seed makes the listing repeatable, and the daemon
draws its own times. (This seed draws start times only; 'run --seed' seeds the pick of targets.)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Required: true, Usage: "daemon config file"},
			&cli.IntFlag{Name: "next", Aliases: []string{"n"}, Value: 5, Usage: "how many start times per schedule"},
			&cli.TimestampFlag{Name: "from", Layout: time.RFC3339, Usage: "list starts after this time (RFC 3339) instead of now"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed for chaos-monkey start times (not targets: see run --seed)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
		},
		Action: func(c *cli.Context) error {
			lc, err := daemon.LoadConfig(c.String("config"))
			if err != nil {
				fmt.Fprintln(m.Stderr, err)
				return exitWith(exitInvalid, errors.New("the daemon config is not valid"))
			}
			from := time.Now()
			if t := c.Timestamp("from"); t != nil {
				from = *t
			}
			type entry struct {
				Schedule string      `json:"schedule"`
				TimeZone string      `json:"timeZone"`
				Starts   []time.Time `json:"starts"`
			}
			var out []entry
			for _, s := range lc.Schedules {
				comp := lc.Compiled[s.Name]
				rng := rand.New(rand.NewPCG(c.Uint64("seed"), 0))
				starts := comp.NextN(from, c.Int("next"), rng)
				for i := range starts {
					starts[i] = starts[i].In(comp.Location())
				}
				out = append(out, entry{Schedule: s.Name, TimeZone: comp.Location().String(), Starts: starts})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Schedule < out[j].Schedule })
			if c.String("output") == "json" {
				return printJSON(m.Stdout, out)
			}
			for _, e := range out {
				fmt.Fprintf(m.Stdout, "%s (%s):\n", e.Schedule, e.TimeZone)
				if len(e.Starts) == 0 {
					fmt.Fprintln(m.Stdout, "  no permitted start within a year: check the windows and blackouts")
				}
				for _, t := range e.Starts {
					fmt.Fprintf(m.Stdout, "  %s\n", t.Format("Mon 2006-01-02 15:04:05 MST"))
				}
			}
			return nil
		},
	}
}
