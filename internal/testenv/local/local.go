// Package local provides real local parts for tests: victim processes to fault and an HTTP
// server whose health a test switches. No fakes: they are real processes and real sockets.
package local

import (
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
	"time"
)

// Victim is a real child process for faults to act on. Its executable is a copy of sleep with a
// unique name, so that selecting by exe can never hit a process the test did not start.
type Victim struct {
	Cmd     *exec.Cmd
	PidFile string
	Exe     string
}

// StartVictims starts n victims sharing one uniquely named executable; they are killed at cleanup.
func StartVictims(t testing.TB, n int) []*Victim {
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
	vs := make([]*Victim, 0, n)
	for i := 0; i < n; i++ {
		cmd := exec.Command(path, "600")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start victim: %v", err)
		}
		v := &Victim{Cmd: cmd, Exe: exe, PidFile: filepath.Join(dir, fmt.Sprintf("victim-%d.pid", i))}
		if err := os.WriteFile(v.PidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
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

// PID is the victim's process ID.
func (v *Victim) PID() int { return v.Cmd.Process.Pid }

// State is the process state letter from /proc (T = stopped, Z = zombie), or "gone".
func (v *Victim) State() string { return State(v.PID()) }

// State reads a process's state letter from /proc/PID/stat, or "gone".
func State(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return "gone"
	}
	return s[i+2 : i+3]
}

// WaitFor polls cond every few milliseconds until it holds, failing the test at the deadline.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// Health is a real HTTP server on loopback whose health the test switches.
type Health struct {
	URL     string
	Healthy atomic.Bool
	Hits    atomic.Int64
}

// StartHealth starts a healthy server; it answers 503 while Healthy is false.
func StartHealth(t testing.TB) *Health {
	t.Helper()
	h := &Health{}
	h.Healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.Hits.Add(1)
		if h.Healthy.Load() {
			_, _ = io.WriteString(w, "ok")
			return
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.URL = "http://" + ln.Addr().String() + "/healthz"
	return h
}
