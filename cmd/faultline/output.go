package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/faultline-dev/faultline/experiments"
)

func printResult(w io.Writer, r *experiments.Result) {
	fmt.Fprintf(w, "run %s · runbook %s · environment %s\n", r.RunID, r.Runbook, r.Environment)
	if r.Verdict == experiments.DryRun {
		for _, p := range r.Plan {
			fmt.Fprintf(w, "\nexperiment %s (for %s)\n", p.Name, p.Duration)
			for _, f := range p.Faults {
				fmt.Fprintf(w, "  fault %s (%s) would touch:\n", f.Name, f.Kind)
				for _, t := range f.Targets {
					fmt.Fprintf(w, "    - %s\n", t)
				}
				if f.Random != "" && r.Seed != nil {
					fmt.Fprintf(w, "    %s; seed %d — run with --seed %d to touch these same targets\n", f.Random, *r.Seed, *r.Seed)
				}
			}
			for _, g := range p.Guardrails {
				fmt.Fprintf(w, "  guardrail %s: %s, every %s, breach after %s\n", g.Name, g.Describe, g.Interval, g.For)
			}
			for _, g := range p.Hypothesis {
				fmt.Fprintf(w, "  hypothesis %s: %s, every %s\n", g.Name, g.Describe, g.Interval)
			}
		}
		fmt.Fprintln(w, "\ndry run: nothing was touched")
		return
	}
	for _, x := range r.Experiments {
		fmt.Fprintf(w, "\nexperiment %s: %s", x.Name, x.Verdict)
		if x.Reason != "" {
			fmt.Fprintf(w, " — %s", x.Reason)
		}
		fmt.Fprintln(w)
		for _, f := range x.Faults {
			kind := f.Kind
			if f.Mechanism != "" {
				kind += " via " + f.Mechanism
			}
			fmt.Fprintf(w, "  fault %s (%s): %s\n", f.Name, kind, strings.Join(f.Targets, ", "))
			if f.AppliedAt != nil {
				fmt.Fprintf(w, "    applied %s", f.AppliedAt.Format("15:04:05.000"))
				if f.RevertedAt != nil {
					fmt.Fprintf(w, ", reverted %s (after %s)", f.RevertedAt.Format("15:04:05.000"), f.RevertedAt.Sub(*f.AppliedAt).Round(time.Millisecond))
				}
				fmt.Fprintln(w)
			}
			if f.Random != "" && r.Seed != nil {
				fmt.Fprintf(w, "    %s; seed %d\n", f.Random, *r.Seed)
			}
			for _, a := range f.Applied {
				fmt.Fprintf(w, "    %s\n", a)
			}
			if len(f.Events) > 0 {
				fmt.Fprintf(w, "    %d further action(s) during the window\n", len(f.Events))
			}
			if f.Error != "" {
				fmt.Fprintf(w, "    error: %s\n", f.Error)
			}
		}
		for _, g := range append(append([]experiments.GuardrailResult{}, x.Guardrails...), x.Hypothesis...) {
			failed := 0
			for _, o := range g.Observations {
				if !o.Pass {
					failed++
				}
			}
			state := "held"
			if g.Breached {
				state = "BREACHED"
			}
			fmt.Fprintf(w, "  guardrail %s: %s (%d evaluations, %d failing)", g.Name, state, len(g.Observations), failed)
			if g.Blind {
				fmt.Fprint(w, " — could not see its source at times")
			}
			fmt.Fprintln(w)
		}
		printLoad(w, x.Load)
		printRecovery(w, x)
	}
	if r.Load != nil {
		fmt.Fprintln(w, "\nthe whole run:")
		printLoad(w, r.Load)
	}
	if r.Halt != nil && r.Halt.LastRevertedAt != nil {
		fmt.Fprintf(w, "\nhalted at %s (%s); last fault reverted %s later\n", r.Halt.At.Format("15:04:05.000"), r.Halt.Source, r.Halt.LastRevertedAt.Sub(r.Halt.At).Round(10*time.Microsecond))
	}
	fmt.Fprintf(w, "\nverdict: %s (exit %d)", r.Verdict, r.ExitCode)
	if r.Reason != "" && len(r.Experiments) == 0 {
		fmt.Fprintf(w, " — %s", r.Reason)
	}
	fmt.Fprintln(w)
}

// statusLine redraws one line on a terminal with the phase, the time left and guardrail health.
type statusLine struct {
	w          io.Writer
	mu         sync.Mutex
	phase, exp string
	since      time.Time
	length     time.Duration
	guards     map[string]string
	order      []string
	lastDraw   time.Time
	closed     bool
	extra      string // appended by the demo: p95, breaker states, replicas
}

func newStatusLine(w io.Writer) *statusLine {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &statusLine{w: w, guards: map[string]string{}}
}

func (s *statusLine) update(p experiments.Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if p.Guardrail != "" && p.Obs != nil {
		if _, ok := s.guards[p.Guardrail]; !ok {
			s.order = append(s.order, p.Guardrail)
		}
		mark := "ok"
		if !p.Obs.Pass {
			mark = "FAIL"
		}
		s.guards[p.Guardrail] = mark
	} else {
		s.phase, s.exp, s.since, s.length = p.Phase, p.Experiment, p.Since, p.Duration
	}
	// Throttle: a 250 ms guardrail must not turn the terminal into a strobe light.
	if time.Since(s.lastDraw) < 100*time.Millisecond && p.Guardrail != "" {
		return
	}
	s.lastDraw = time.Now()
	line := fmt.Sprintf("[%s] %s", s.phase, s.exp)
	if !s.since.IsZero() {
		el := time.Since(s.since).Round(time.Second)
		line += fmt.Sprintf(" %s", el)
		if s.length > 0 {
			line += fmt.Sprintf("/%s (%s left)", s.length, max(0, s.length-el).Round(time.Second))
		}
	}
	for _, g := range s.order {
		line += fmt.Sprintf(" · %s %s", g, s.guards[g])
	}
	if s.extra != "" {
		line += " · " + s.extra
	}
	fmt.Fprintf(s.w, "\r\033[K%s", line)
}

// setExtra shows more live figures at the end of the line, from the next redraw on.
func (s *statusLine) setExtra(extra string) {
	s.mu.Lock()
	s.extra = extra
	s.mu.Unlock()
}

// done clears the line for good. The summary is printed right after it, so it must be called
// when the run returns (not deferred to the end of the command), or the summary starts in the
// middle of the last status line. Safe to call twice; later updates draw nothing.
func (s *statusLine) done() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		fmt.Fprint(s.w, "\r\033[K")
	}
	s.closed = true
}
