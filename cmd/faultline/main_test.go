package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// The end-to-end tests run the real binary, as users and CI do. It is built once per test run.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faultline-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "faultline")
	out, err := exec.Command("go", "build", "-tags", testHooksTag, "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build faultline: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	kubeCluster.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// outcome is one faultline invocation's outcome.
type outcome struct {
	code           int
	stdout, stderr string
}

// result decodes the JSON result document from stdout.
func (c outcome) result(t testing.TB) experiments.Result {
	t.Helper()
	var r experiments.Result
	if err := json.Unmarshal([]byte(c.stdout), &r); err != nil {
		t.Fatalf("decode result: %v\nstdout:\n%s\nstderr:\n%s", err, c.stdout, c.stderr)
	}
	return r
}

// faultline runs the binary to completion with a deadline.
func faultline(t testing.TB, stateDir string, args ...string) outcome {
	t.Helper()
	return faultlineIn(t, "", stateDir, args...)
}

// command is the binary with args, run in the named network namespace ("" is the test's own).
func command(ctx context.Context, netns, stateDir string, args ...string) *exec.Cmd {
	args = append([]string{"--state-dir", stateDir}, args...)
	if netns != "" {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, binPath}, args...)...)
	}
	return exec.CommandContext(ctx, binPath, args...)
}

// faultlineIn runs the binary to completion in a network namespace, with a deadline.
func faultlineIn(t testing.TB, netns, stateDir string, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := command(ctx, netns, stateDir, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := outcome{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run faultline %v: %v", args, err)
	}
	return res
}

// started is a faultline process running in the background.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
}

// lockedBuffer is written by os/exec's copying goroutine while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startFaultline(t testing.TB, env []string, stateDir string, args ...string) *started {
	t.Helper()
	return startFaultlineIn(t, "", env, stateDir, args...)
}

// startFaultlineIn starts the binary in the background in a network namespace. `ip netns exec`
// execs the binary in its own process, so the pid and signals are faultline's.
func startFaultlineIn(t testing.TB, netns string, env []string, stateDir string, args ...string) *started {
	t.Helper()
	cmd := command(context.Background(), netns, stateDir, args...)
	cmd.Env = append(os.Environ(), env...)
	s := &started{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start faultline: %v", err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// waitFor polls cond until it holds, like the package's waitFor, but fails at once, with the
// process's output, if the process exits first, and shows its output on a timeout: a run that
// stopped early or is stuck says why.
func (s *started) waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-s.done:
			if cond() {
				return
			}
			t.Fatalf("faultline exited (%s) while the test waited for %s\nstdout:\n%s\nstderr:\n%s", s.cmd.ProcessState, what, s.stdout, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s\nfaultline stdout so far:\n%s\nstderr so far:\n%s", d, what, s.stdout, s.stderr)
		}
		<-tick.C
	}
}

// stderrText is what the process wrote to stderr so far.
func (s *started) stderrText() string { return s.stderr.String() }

// wait waits for the process to exit and returns its outcome.
func (s *started) wait(t testing.TB, d time.Duration) outcome {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		t.Fatalf("faultline did not exit within %s\nstderr:\n%s", d, s.stderr)
	}
	return outcome{code: s.cmd.ProcessState.ExitCode(), stdout: s.stdout.String(), stderr: s.stderr.String()}
}

// Aliases keep the end-to-end tests short; the parts themselves live in internal/testenv/local.
type (
	victim = local.Victim
	health = local.Health
)

func startVictims(t testing.TB, n int) []*victim { return local.StartVictims(t, n) }

func startHealth(t testing.TB) *health { return local.StartHealth(t) }

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	local.WaitFor(t, d, what, cond)
}

// runbook renders a runbook template into a temp file.
func runbook(t testing.TB, text string, data any) string {
	t.Helper()
	tpl := template.Must(template.New("rb").Parse(text))
	var b bytes.Buffer
	if err := tpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "runbook.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pauseRunbook pauses one victim for Duration with an HTTP guardrail at 250 ms.
const pauseRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-pause}
environment: {name: test, type: local}
guardrails:
  - name: api
    interval: 250ms
    http: {url: "{{.URL}}", timeout: 1s}
experiments:
  - name: pause
    duration: {{.Duration}}
    faults:
      - name: freeze
        processPause: {pidFile: "{{.PidFile}}"}
    recovery: {within: 5s}
`

type pauseData struct{ URL, PidFile, Duration string }
