package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

const (
	adminToken = "admin-token-0123456789"
	readToken  = "read-token-0123456789ab"
)

// daemonEnv is a config directory with one schedule per victim, each pausing it for a minute.
type daemonEnv struct {
	dir, config, state string
	victims            []*victim
}

func newDaemonEnv(t testing.TB, n int, extra string) *daemonEnv {
	t.Helper()
	e := &daemonEnv{dir: t.TempDir(), state: t.TempDir(), victims: startVictims(t, n)}
	h := startHealth(t)
	var sched strings.Builder
	for i, v := range e.victims {
		rb := filepath.Join(e.dir, fmt.Sprintf("pause-%d.yaml", i))
		if err := os.WriteFile(rb, []byte(fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: pause-%d}
environment: {name: test, type: local}
guardrails:
  - {name: api, interval: 250ms, http: {url: %q}}
experiments:
  - name: pause
    duration: 60s
    faults: [{processPause: {pidFile: %q}}]
`, i, h.URL, v.PidFile)), 0o644); err != nil {
			t.Fatal(err)
		}
		// A schedule far in the future: these tests trigger runs through the API.
		fmt.Fprintf(&sched, "  - {name: s%d, runbook: pause-%d.yaml, cron: \"0 3 1 1 *\"}\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "tokens"), []byte(adminToken+" admin alice\n"+readToken+" read-only bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.config = filepath.Join(e.dir, "faultline.yaml")
	cfg := fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: DaemonConfig
api: {address: "127.0.0.1:0", tokensFile: tokens}
%sschedules:
%s`, extra, sched.String())
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// setCron rewrites every schedule's cron expression.
func (e *daemonEnv) setCron(t testing.TB, expr string) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.ReplaceAll(string(b), `cron: "0 3 1 1 *"`, fmt.Sprintf("cron: %q", expr))), 0o644); err != nil {
		t.Fatal(err)
	}
}

var interruptSignal = os.Interrupt

// runningDaemon is a `faultline daemon` process and its API address.
type runningDaemon struct {
	*started
	url string
}

var listenRE = regexp.MustCompile(`API listening on (\S+)`)

func startDaemon(t testing.TB, e *daemonEnv, env []string, args ...string) *runningDaemon {
	t.Helper()
	return startDaemonIn(t, e, e.state, env, args...)
}

// startDaemonIn starts a daemon with its own state directory (its history), as each replica of a
// highly available daemon has in its own pod.
func startDaemonIn(t testing.TB, e *daemonEnv, state string, env []string, args ...string) *runningDaemon {
	t.Helper()
	d := startDaemonUnready(t, e, state, env, args...)
	waitFor(t, 20*time.Second, "the daemon to be ready", func() bool {
		resp, err := http.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return d
}

// startDaemonUnready starts a daemon and waits only for its API address.
func startDaemonUnready(t testing.TB, e *daemonEnv, state string, env []string, args ...string) *runningDaemon {
	t.Helper()
	s := startFaultline(t, env, state, append([]string{"daemon", "--config", e.config}, args...)...)
	d := &runningDaemon{started: s}
	waitFor(t, 20*time.Second, "the daemon's API address", func() bool {
		select {
		case <-s.done:
			t.Fatalf("the daemon exited: %v\n%s", s.cmd.ProcessState, s.stderrText())
		default:
		}
		m := listenRE.FindStringSubmatch(s.stderrText())
		if m != nil {
			d.url = "http://" + m[1]
		}
		return m != nil
	})
	return d
}

func (d *runningDaemon) call(t testing.TB, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, d.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (d *runningDaemon) trigger(t testing.TB, schedule string) string {
	t.Helper()
	code, b := d.call(t, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": schedule})
	if code != http.StatusAccepted {
		t.Fatalf("trigger %s: %d %s", schedule, code, b)
	}
	var r struct{ RunID string }
	if err := json.Unmarshal(b, &r); err != nil || r.RunID == "" {
		t.Fatalf("trigger response %s: %v", b, err)
	}
	return r.RunID
}

// The kill switch: one API call halts every run, and when it returns every fault is reverted.
func TestDaemonKillSwitchRevertsEveryRun(t *testing.T) {
	e := newDaemonEnv(t, 3, "")
	d := startDaemon(t, e, nil)
	var ids []string
	for i := range e.victims {
		ids = append(ids, d.trigger(t, fmt.Sprintf("s%d", i)))
	}
	waitFor(t, 15*time.Second, "every victim to be stopped", func() bool {
		for _, v := range e.victims {
			if v.State() != "T" {
				return false
			}
		}
		return true
	})
	if code, b := d.call(t, "POST", "/api/v1/halt", readToken, map[string]string{"reason": "nope"}); code != http.StatusForbidden {
		t.Fatalf("kill switch with a read-only token: %d %s, want 403", code, b)
	}
	if code, _ := d.call(t, "POST", "/api/v1/halt", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("kill switch without a token: %d, want 401", code)
	}
	code, b := d.call(t, "POST", "/api/v1/halt", adminToken, map[string]string{"reason": "game day over"})
	if code != http.StatusOK {
		t.Fatalf("kill switch: %d %s", code, b)
	}
	for i, v := range e.victims {
		if v.State() == "T" {
			t.Fatalf("victim %d still stopped when the kill switch returned", i)
		}
	}
	// The kill switch answers once nothing is applied; the results reach history just after.
	for _, id := range ids {
		var last []byte
		waitFor(t, 10*time.Second, "run "+id+" in history", func() bool {
			code, b := d.call(t, "GET", "/api/v1/runs/"+id, readToken, nil)
			last = b
			return code == http.StatusOK && strings.Contains(string(b), `"state": "finished"`)
		})
		if !strings.Contains(string(last), `"halted"`) || !strings.Contains(string(last), "game day over") {
			t.Fatalf("run %s in history: %s", id, last)
		}
	}
	audit, err := os.ReadFile(filepath.Join(e.state, "audit.log"))
	if err != nil || !strings.Contains(string(audit), "alice") || !strings.Contains(string(audit), "bob") {
		t.Fatalf("audit log should record alice's halt and bob's denied attempt (err %v):\n%s", err, audit)
	}
	if n := len(openEntries(t, e.state)); n != 0 {
		t.Fatalf("%d ledger entries open after the kill switch", n)
	}
}

// Results survive a restart of the daemon; a daemon that starts finds and reverts what a crashed
// `faultline run` left in the same ledger before it is ready.
func TestDaemonHistorySurvivesRestartAndStartupRecovers(t *testing.T) {
	e := newDaemonEnv(t, 1, "")
	d := startDaemon(t, e, nil)
	id := d.trigger(t, "s0")
	waitFor(t, 15*time.Second, "the victim to be stopped", func() bool { return e.victims[0].State() == "T" })
	if code, b := d.call(t, "POST", "/api/v1/runs/"+id+"/halt", adminToken, map[string]string{"reason": "enough"}); code != http.StatusOK {
		t.Fatalf("halt: %d %s", code, b)
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	if out := d.wait(t, 30*time.Second); out.code != 0 {
		t.Fatalf("daemon exit %d on SIGINT\n%s", out.code, out.stderr)
	}

	// A crashed run leaves the victim stopped in the daemon's ledger.
	rb := filepath.Join(e.dir, "pause-0.yaml")
	run := startFaultline(t, nil, e.state, "run", rb)
	waitFor(t, 15*time.Second, "the victim to be stopped by faultline run", func() bool { return e.victims[0].State() == "T" })
	_ = run.cmd.Process.Kill()
	<-run.done
	if e.victims[0].State() != "T" {
		t.Fatal("victim should still be stopped after the crash")
	}

	d2 := startDaemon(t, e, nil)
	if e.victims[0].State() == "T" {
		t.Fatal("the daemon became ready without reverting the crashed run's fault")
	}
	code, b := d2.call(t, "GET", "/api/v1/runs/"+id, readToken, nil)
	if code != http.StatusOK {
		t.Fatalf("run %s after restart: %d %s", id, code, b)
	}
	var rec struct {
		Result *experiments.Result `json:"result"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Result == nil || rec.Result.Verdict != experiments.Halted {
		t.Fatalf("stored result after restart: %s (%v)", b, err)
	}
}
