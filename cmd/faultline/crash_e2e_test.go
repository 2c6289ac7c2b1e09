package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/safety/ledger"
)

// faultline is SIGKILLed at each point of the inject path; recover must leave the victim running
// and the ledger clean, using only what the ledger recorded.
func TestCrashSafetySIGKILLThenRecover(t *testing.T) {
	cases := []struct {
		point string
		// stoppedAtCrash: the victim is stopped when faultline dies.
		stoppedAtCrash bool
		// state of the ledger entry at the crash ("" = no entry yet).
		ledgerState string
	}{
		{"before-record", false, ""},
		{"after-record", false, ledger.StateRecorded},
		{"after-apply", true, ledger.StateRecorded},
		{"observe", true, ledger.StateApplied},
	}
	for _, c := range cases {
		t.Run(c.point, func(t *testing.T) {
			v := startVictims(t, 1)[0]
			h := startHealth(t)
			state := t.TempDir()
			rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
			var env []string
			if c.point != "observe" {
				env = append(env, "FAULTLINE_TEST_HOLD_AT="+c.point)
			}
			run := startFaultline(t, env, state, "run", rb)
			if c.point == "observe" {
				// Mid-window: the fault is applied and the ledger says so (it flips to applied just
				// after the side effect, so the victim's state alone would race the ledger).
				run.waitFor(t, 10*time.Second, "the fault to be applied and ledgered", func() bool {
					open := openEntries(t, state)
					return v.State() == "T" && len(open) == 1 && open[0].State == ledger.StateApplied
				})
			} else {
				run.waitFor(t, 10*time.Second, "faultline to reach "+c.point, func() bool {
					_, err := os.Stat(filepath.Join(state, "held-"+c.point))
					return err == nil
				})
			}
			if err := run.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-run.done

			if c.stoppedAtCrash {
				// SIGSTOP was sent before the hold; on a loaded machine the kernel may not have
				// stopped the victim yet when the test looks.
				waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
			} else if v.State() == "T" {
				t.Fatal("victim stopped after crash, want running")
			}
			open := openEntries(t, state)
			if c.ledgerState == "" {
				if len(open) != 0 {
					t.Fatalf("ledger has %d open entries before anything was recorded", len(open))
				}
			} else if len(open) != 1 || open[0].State != c.ledgerState || open[0].Kind != "process-pause" {
				t.Fatalf("ledger after crash = %+v, want one %s process-pause entry", open, c.ledgerState)
			}

			// A second run on the same target must refuse while the entry is open.
			if c.ledgerState != "" {
				again := faultline(t, state, "run", rb)
				if again.code != 4 || !strings.Contains(again.stdout+again.stderr, "faultline recover") {
					t.Fatalf("second run: exit %d, want 4 telling to run recover\n%s%s", again.code, again.stdout, again.stderr)
				}
			}

			out := faultline(t, state, "recover")
			if out.code != 0 {
				t.Fatalf("recover exit %d\n%s%s", out.code, out.stdout, out.stderr)
			}
			if st := v.State(); st == "T" {
				t.Fatalf("victim still stopped after recover; recover said:\n%s", out.stdout)
			}
			if n := len(openEntries(t, state)); n != 0 {
				t.Fatalf("%d ledger entries open after recover", n)
			}
			if c.ledgerState != "" && !strings.Contains(out.stdout, "reverted ") {
				t.Fatalf("recover did not report the revert:\n%s", out.stdout)
			}
			// And a fresh run on the same target is allowed again.
			short := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "300ms"})
			if again := faultline(t, state, "run", short); again.code != 0 {
				t.Fatalf("run after recover: exit %d\n%s%s", again.code, again.stdout, again.stderr)
			}
		})
	}
}

// recover leaves the faults of a run that is still alive alone unless --force is given.
func TestRecoverSparesLiveRuns(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	state := t.TempDir()
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
	run := startFaultline(t, nil, state, "run", rb)
	waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })

	out := faultline(t, state, "recover")
	if out.code != 6 || !strings.Contains(out.stdout, "still alive") {
		t.Fatalf("recover with a live run: exit %d, want 6 and a skip notice\n%s%s", out.code, out.stdout, out.stderr)
	}
	if v.State() != "T" {
		t.Fatal("recover resumed the victim of a live run")
	}
	out = faultline(t, state, "recover", "--force")
	if out.code != 0 || v.State() == "T" {
		t.Fatalf("recover --force: exit %d, victim state %s\n%s%s", out.code, v.State(), out.stdout, out.stderr)
	}
	_ = run.cmd.Process.Kill()
}
