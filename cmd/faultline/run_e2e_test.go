package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/safety/ledger"
)

func openEntries(t testing.TB, stateDir string) []*ledger.Entry {
	t.Helper()
	l, err := ledger.OpenFile(filepath.Join(stateDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	open, err := ledger.OpenEntries(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	return open
}

// A real HTTP server turns unhealthy mid-run: the guardrail halts the run, exit 2, and the paused
// process is running again.
func TestRunHaltsOnUnhealthyServerAndResumesProcess(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	state := t.TempDir()
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
	run := startFaultline(t, nil, state, "run", "--output", "json", rb)

	waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
	flipped := time.Now()
	h.Healthy.Store(false)
	out := run.wait(t, 20*time.Second)

	if out.code != 2 {
		t.Fatalf("exit code = %d, want 2 (halted)\nstderr:\n%s", out.code, out.stderr)
	}
	if st := v.State(); st != "S" && st != "R" {
		t.Fatalf("victim state after halt = %q, want running (S or R)", st)
	}
	r := out.result(t)
	if r.Verdict != experiments.Halted || r.Halt == nil || r.Halt.Guardrail != "api" || r.Halt.Source != "guardrail" {
		t.Fatalf("result = verdict %s, halt %+v; want halted by guardrail api", r.Verdict, r.Halt)
	}
	f := r.Experiments[0].Faults[0]
	if f.AppliedAt == nil || f.RevertedAt == nil || f.RevertedAt.Before(flipped) {
		t.Fatalf("fault times: applied %v reverted %v (flipped at %v)", f.AppliedAt, f.RevertedAt, flipped)
	}
	// One 250 ms interval plus request time; generous for a shared machine, but far below the 60 s window.
	if lat := r.Halt.LastRevertedAt.Sub(flipped); lat > 2*time.Second {
		t.Fatalf("halt latency %s, want well under 2s", lat)
	}
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries still open after a halted run", n)
	}
}

// The steady state does not hold: exit 3, and the process is never stopped.
func TestSteadyStateFailureInjectsNothing(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	h.Healthy.Store(false)
	state := t.TempDir()
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "5s"})

	stop := make(chan struct{})
	stopped := make(chan bool, 1)
	go func() { // sample the victim's state for the whole run: it must never be T
		seen := false
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				stopped <- seen
				return
			case <-tick.C:
				seen = seen || v.State() == "T"
			}
		}
	}()
	out := faultline(t, state, "run", "--output", "json", rb)
	close(stop)

	if out.code != 3 {
		t.Fatalf("exit code = %d, want 3 (not started)\nstderr:\n%s", out.code, out.stderr)
	}
	if <-stopped {
		t.Fatal("the victim was stopped although the steady state did not hold")
	}
	r := out.result(t)
	if r.Experiments[0].Faults[0].RecordedAt != nil {
		t.Fatalf("a fault was recorded in the ledger: %+v", r.Experiments[0].Faults[0])
	}
	if !strings.Contains(r.Reason, "steady state did not hold") || !strings.Contains(r.Reason, "status 503") {
		t.Fatalf("reason = %q, want it to name the failing guardrail", r.Reason)
	}
	entries, err := mustLedger(t, state).Entries(context.Background(), nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("ledger has %d entries (err %v), want none", len(entries), err)
	}
}

func mustLedger(t testing.TB, state string) *ledger.FileLedger {
	t.Helper()
	l, err := ledger.OpenFile(filepath.Join(state, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Refusals happen before anything is touched and exit 4 with a message naming the rule.
func TestRefusalsExit4AndInjectNothing(t *testing.T) {
	vs := startVictims(t, 3)
	h := startHealth(t)
	host, _ := os.Hostname()
	cases := []struct {
		name, runbook, want string
	}{
		{"invalid runbook", `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: bad}
environment: {name: test, type: local}
experiments:
  - name: x
    duration: 5 seconds
    faults: [{processPause: {exe: "{{.Exe}}"}}]
`, "runbook.yaml:7:15: experiments[0].duration: invalid duration"},
		{"blast radius", `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: blast}
environment: {name: test, type: local}
policy: {maxTargets: 2}
experiments:
  - name: x
    duration: 5s
    faults: [{processPause: {exe: "{{.Exe}}"}}]
`, "refused by policy.maxTargets: the fault would touch 3 processes, the limit is 2"},
		{"wrong host", `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: host}
environment: {name: test, type: local, hosts: ["golden-copy-*"]}
experiments:
  - name: x
    duration: 5s
    faults: [{processPause: {exe: "{{.Exe}}"}}]
`, "refused by environment.hosts: this host \"" + host + "\" is not one of the environment's hosts"},
		{"production", `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: prod}
environment: {name: prod-eu, type: production}
experiments:
  - name: x
    duration: 5s
    faults: [{processPause: {exe: "{{.Exe}}"}}]
`, "environment.type: \"production\" is not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			rb := runbook(t, c.runbook, map[string]string{"Exe": vs[0].Exe, "URL": h.URL})
			out := faultline(t, state, "run", rb)
			if out.code != 4 {
				t.Fatalf("exit code = %d, want 4\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
			}
			if !strings.Contains(out.stdout+out.stderr, c.want) {
				t.Fatalf("output does not say %q\nstdout:\n%s\nstderr:\n%s", c.want, out.stdout, out.stderr)
			}
			for _, v := range vs {
				if st := v.State(); st == "T" {
					t.Fatalf("victim %d was stopped", v.PID())
				}
			}
			if _, err := os.Stat(filepath.Join(state, "ledger.db")); err == nil {
				if n := len(openEntries(t, state)); n != 0 {
					t.Fatalf("%d ledger entries after a refusal", n)
				}
			}
		})
	}
}

// A ledger that cannot be written means nothing is injected.
func TestUnwritableLedgerInjectsNothing(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	state := t.TempDir()
	// A directory where the ledger file should be: bbolt cannot open it, even as root.
	if err := os.Mkdir(filepath.Join(state, "ledger.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "5s"})
	out := faultline(t, state, "run", rb)
	if out.code != 5 {
		t.Fatalf("exit code = %d, want 5\nstderr:\n%s", out.code, out.stderr)
	}
	if !strings.Contains(out.stderr, "fault ledger") || !strings.Contains(out.stderr, "nothing was injected") {
		t.Fatalf("stderr does not explain the ledger failure:\n%s", out.stderr)
	}
	if st := v.State(); st == "T" {
		t.Fatal("victim was stopped without a ledger")
	}
}

// SIGINT and `faultline halt` both revert everything and exit 2, naming who asked.
func TestSignalAndHaltCommandRevert(t *testing.T) {
	for _, how := range []string{"SIGINT", "SIGTERM", "halt"} {
		t.Run(how, func(t *testing.T) {
			v := startVictims(t, 1)[0]
			h := startHealth(t)
			state := t.TempDir()
			rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
			run := startFaultline(t, nil, state, "run", "--output", "json", rb)
			waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
			switch how {
			case "SIGINT":
				_ = run.cmd.Process.Signal(syscall.SIGINT)
			case "SIGTERM":
				_ = run.cmd.Process.Signal(syscall.SIGTERM)
			case "halt":
				if out := faultline(t, state, "halt", "--reason", "game day over"); out.code != 0 {
					t.Fatalf("halt exit %d: %s%s", out.code, out.stdout, out.stderr)
				}
			}
			out := run.wait(t, 20*time.Second)
			if out.code != 2 {
				t.Fatalf("exit code = %d, want 2\nstderr:\n%s", out.code, out.stderr)
			}
			if st := v.State(); st == "T" {
				t.Fatal("victim still stopped after halt")
			}
			r := out.result(t)
			wantSource := map[string]string{"SIGINT": "signal", "SIGTERM": "signal", "halt": "operator"}[how]
			if r.Halt == nil || r.Halt.Source != wantSource {
				t.Fatalf("halt = %+v, want source %s", r.Halt, wantSource)
			}
			if how == "halt" && !strings.Contains(r.Halt.Reason, "game day over") {
				t.Fatalf("halt reason %q does not carry the operator's reason", r.Halt.Reason)
			}
		})
	}
}

// process-kill with an interval keeps killing during the window, as chaos monkey does.
func TestProcessKillRepeats(t *testing.T) {
	vs := startVictims(t, 4)
	state := t.TempDir()
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: monkey}
environment: {name: test, type: local}
experiments:
  - name: monkey
    duration: 1100ms
    faults:
      - name: kill
        processKill: {exe: "{{.Exe}}", count: 1, interval: 500ms}
`, map[string]string{"Exe": vs[0].Exe})
	out := faultline(t, state, "run", "--output", "json", rb)
	if out.code != 0 {
		t.Fatalf("exit %d\n%s", out.code, out.stderr)
	}
	// Reap the killed children so their state reads as gone rather than zombie.
	dead := 0
	for _, v := range vs {
		if v.State() == "Z" || v.State() == "gone" {
			dead++
		}
	}
	f := out.result(t).Experiments[0].Faults[0]
	if dead != 1+len(f.Events) || len(f.Events) != 2 {
		t.Fatalf("%d victims dead, %d repeat events (%+v); want 1 initial kill + 2 repeats", dead, len(f.Events), f.Events)
	}
}
