package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
)

func (m *Main) statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a running daemon: leader, paused, ready, schedules with their next start, active runs",
		Description: `Asks the daemon's API (--server or $FAULTLINE_SERVER) with a read-only or admin token
(--token-file or $FAULTLINE_TOKEN).

Exit codes: 0 answered, 4 refused (no or wrong token), 5 the daemon could not be reached.`,
		Flags: append(apiFlags(), outputFlag("text (tables for people) or json (the API's status document)")),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return exitWith(exitInvalid, fmt.Errorf("status takes no arguments, got %q", c.Args().Slice()))
			}
			output, err := checkOutput(c)
			if err != nil {
				return err
			}
			a, err := newAPIClient(c)
			if err != nil {
				return err
			}
			var st api.StatusResponse
			if err := a.do(c.Context, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
				return apiExit(err)
			}
			if output == "json" {
				if err := printJSON(m.Stdout, st); err != nil {
					return exitWith(exitAborted, err)
				}
				return nil
			}
			printStatus(m.Stdout, a.base, &st)
			return nil
		},
	}
}

func printStatus(w io.Writer, server string, st *api.StatusResponse) {
	role := "standby (another replica schedules)"
	if st.Leader {
		role = "leader"
	} else if st.LeaderIdentity != "" {
		role = "standby (" + st.LeaderIdentity + " schedules; halt, pause and resume sent here reach it)"
	}
	sched := "scheduling"
	if st.Paused {
		sched = "PAUSED (no new runs start; POST /api/v1/resume starts them again)"
	}
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY (startup recovery has not finished)"
	}
	fmt.Fprintf(w, "daemon %s: %s, %s, %s\n", server, role, ready, sched)
	if st.Recovery != "" {
		fmt.Fprintf(w, "RECOVERY FAILING, nothing is scheduled until it succeeds: %s\n", st.Recovery)
	}

	fmt.Fprintf(w, "\nSCHEDULES (%d)\n", len(st.Schedules))
	if len(st.Schedules) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tMODE\tSPEC\tNEXT START\tWINDOW\tTODAY\tRUNBOOK")
		for _, s := range st.Schedules {
			next := "-"
			switch {
			case s.NextStart != nil:
				next = until(*s.NextStart, st.Now)
			case st.Paused:
				next = "paused"
			case st.Leader && slices.ContainsFunc(st.Active, func(r daemon.RunSummary) bool { return r.Schedule == s.Name }):
				next = "after the active run"
			case !st.Leader:
				next = "(on the leader)"
			}
			window := "closed"
			if s.InWindow {
				window = "open"
			}
			if s.Blackout != "" {
				window = "BLACKOUT " + s.Blackout
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Mode, s.Spec, next, window, s.RunsToday, s.Runbook)
		}
		_ = tw.Flush()
	}

	fmt.Fprintf(w, "\nACTIVE RUNS (%d)\n", len(st.Active))
	if len(st.Active) > 0 {
		printRunTable(w, st.Active, nil, st.Now)
	}
	printUnstored(w, st.Unstored)
}

// printRunTable prints active runs (verdict "running") and then finished ones.
func printRunTable(w io.Writer, active, finished []daemon.RunSummary, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN ID\tSTARTED\tDURATION\tVERDICT\tSCHEDULE\tRUNBOOK\tTRIGGER\tREASON")
	row := func(r daemon.RunSummary, verdict, dur string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, ago(r.StartedAt, now), dur, verdict,
			dash(r.Schedule), r.Runbook, dash(r.Trigger), oneLine(r.Reason, 60))
	}
	for _, r := range active {
		row(r, "running", roughly(now.Sub(r.StartedAt)))
	}
	for _, r := range finished {
		dur := "-"
		if r.EndedAt != nil {
			dur = roughly(r.EndedAt.Sub(r.StartedAt))
		}
		row(r, string(r.Verdict), dur)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table cell on one line and at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printUnstored says which run records history refused: the daemon keeps them (in its state
// directory) and writes them when history takes writes again.
func printUnstored(w io.Writer, runs []daemon.UnstoredRun) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nRUNS NOT YET WRITTEN TO HISTORY (%d): kept by the daemon and retried\n", len(runs))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN ID\tVERDICT\tRUNBOOK\tSTORE ERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.RunID, r.Verdict, r.Runbook, oneLine(r.StoreError, 80))
	}
	_ = tw.Flush()
}
