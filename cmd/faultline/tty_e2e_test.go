package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// On a terminal the live status line is cleared before the summary: the screen a person sees
// (read back from tmux) has the summary's first line at the start of a line, and no status line
// left over. It used to read "[after] pause 0s/5s (5s left) · api okrun 6d19… · runbook …".
func TestTerminalSummaryStartsOnACleanLine(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is missing; scripts/testenv installs it")
		}
		t.Skip("tmux is not installed (scripts/testenv installs it)")
	}
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "2s"})
	sock := fmt.Sprintf("faultline-test-%d", os.Getpid())
	tm := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	state := filepath.Join(t.TempDir(), "state")
	shell := fmt.Sprintf("%s --state-dir %s run %s; echo EXIT=$?; sleep 60", binPath, state, rb)
	tm("new-session", "-d", "-s", "run", "-x", "200", "-y", "50", shell)
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", sock, "kill-server").Run() })
	var screen string
	waitFor(t, 60*time.Second, "the run to finish on the terminal", func() bool {
		screen = tm("capture-pane", "-p", "-t", "run")
		return strings.Contains(screen, "EXIT=")
	})
	if !strings.Contains(screen, "EXIT=0") {
		t.Fatalf("the run did not pass:\n%s", screen)
	}
	var sawSummary bool
	for _, line := range strings.Split(screen, "\n") {
		if strings.HasPrefix(line, "run ") && strings.Contains(line, "· runbook e2e-pause") {
			sawSummary = true
		}
		for _, phase := range []string{"[preflight]", "[steady-state]", "[inject]", "[observe]", "[revert]", "[after]", "[load]"} {
			if strings.Contains(line, phase) {
				t.Fatalf("a status line was left on the screen:\n%s", screen)
			}
		}
	}
	if !sawSummary {
		t.Fatalf("the summary's first line does not start a line of its own:\n%s", screen)
	}
}
