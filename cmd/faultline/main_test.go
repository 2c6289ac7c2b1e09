package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/faultline-dev/faultline/experiments"
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
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build faultline: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// outcome is one faultline invocation's outcome.
type outcome struct {
	code           int
	stdout, stderr string
}

// result decodes the JSON result document from stdout.
func (c outcome) result(t *testing.T) experiments.Result {
	t.Helper()
	var r experiments.Result
	if err := json.Unmarshal([]byte(c.stdout), &r); err != nil {
		t.Fatalf("decode result: %v\nstdout:\n%s\nstderr:\n%s", err, c.stdout, c.stderr)
	}
	return r
}

// faultline runs the binary to completion with a deadline.
func faultline(t *testing.T, stateDir string, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"--state-dir", stateDir}, args...)...)
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
	stdout, stderr *bytes.Buffer
	done           chan struct{}
}

func startFaultline(t *testing.T, env []string, stateDir string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"--state-dir", stateDir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	s := &started{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, done: make(chan struct{})}
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

// wait waits for the process to exit and returns its outcome.
func (s *started) wait(t *testing.T, d time.Duration) outcome {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		t.Fatalf("faultline did not exit within %s\nstderr:\n%s", d, s.stderr)
	}
	return outcome{code: s.cmd.ProcessState.ExitCode(), stdout: s.stdout.String(), stderr: s.stderr.String()}
}

// victim is a real child process for faults to act on. Its executable is a copy of sleep with a
// unique name, so that selecting by exe can never hit a process this test did not start.
type victim struct {
	cmd     *exec.Cmd
	pidFile string
	exe     string
}

func startVictims(t *testing.T, n int) []*victim {
	t.Helper()
	dir := t.TempDir()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	exe := fmt.Sprintf("flv%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	path := filepath.Join(dir, exe)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var vs []*victim
	for i := 0; i < n; i++ {
		cmd := exec.Command(path, "300")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start victim: %v", err)
		}
		v := &victim{cmd: cmd, exe: exe, pidFile: filepath.Join(dir, fmt.Sprintf("victim-%d.pid", i))}
		if err := os.WriteFile(v.pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		vs = append(vs, v)
	}
	return vs
}

func (v *victim) pid() int { return v.cmd.Process.Pid }

// state reads the process state letter from /proc (T = stopped).
func (v *victim) state(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", v.pid()))
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return s[i+2 : i+3]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// health is a real HTTP server whose health the test switches.
type health struct {
	url     string
	healthy atomic.Bool
	hits    atomic.Int64
}

func startHealth(t *testing.T) *health {
	t.Helper()
	h := &health{}
	h.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.hits.Add(1)
		if h.healthy.Load() {
			_, _ = io.WriteString(w, "ok")
			return
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.url = "http://" + ln.Addr().String() + "/healthz"
	return h
}

// runbook renders a runbook template into a temp file.
func runbook(t *testing.T, text string, data any) string {
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
