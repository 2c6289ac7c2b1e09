package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/experiments"
)

// A --result-file that cannot be written fails the run with the reason, even when it passed.
func TestUnwritableResultFileFailsTheRun(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	rb := runbook(t, pauseRunbook, pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "200ms"})
	path := filepath.Join(t.TempDir(), "no-such-dir", "result.json")
	out := faultline(t, t.TempDir(), "run", "--result-file", path, rb)
	if out.code != 5 {
		t.Fatalf("exit code = %d, want 5\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
	}
	if !strings.Contains(out.stderr, "write --result-file "+path) || !strings.Contains(out.stderr, "verdict passed") {
		t.Fatalf("stderr does not give the reason:\n%s", out.stderr)
	}
}

// An invalid runbook still yields a result document on stdout (-o json) and in --result-file.
func TestInvalidRunbookEmitsInvalidResult(t *testing.T) {
	rb := runbook(t, "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: bad}\nenvironment: {name: t, type: local}\nexperiments: []\n", nil)
	path := filepath.Join(t.TempDir(), "result.json")
	out := faultline(t, t.TempDir(), "run", "-o", "json", "--result-file", path, rb)
	if out.code != 4 {
		t.Fatalf("exit code = %d, want 4\nstderr:\n%s", out.code, out.stderr)
	}
	r := out.result(t)
	if r.Verdict != experiments.Invalid || r.ExitCode != 4 || !strings.Contains(r.Reason, "runbook.yaml:5:1: experiments: at least one experiment is required") {
		t.Fatalf("result = %+v, want verdict invalid with the loader's position", r)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("result file: %v", err)
	}
	var fr experiments.Result
	if err := json.Unmarshal(b, &fr); err != nil || fr.Verdict != experiments.Invalid {
		t.Fatalf("result file %s (err %v), want verdict invalid", b, err)
	}
}
