package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
)

// writeConfig replaces the daemon config with the given schedules (YAML list items).
func (e *daemonEnv) writeConfig(t testing.TB, schedules ...string) {
	t.Helper()
	cfg := "apiVersion: faultline.dev/v1alpha1\nkind: DaemonConfig\napi: {address: \"127.0.0.1:0\", tokensFile: tokens}\nschedules:\n"
	for _, s := range schedules {
		cfg += "  - " + s + "\n"
	}
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setDuration rewrites how long runbook pause-i.yaml pauses its victim.
func (e *daemonEnv) setDuration(t testing.TB, i int, d string) {
	t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("pause-%d.yaml", i))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "duration: 60s", "duration: "+d, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// metric reads one sample of the daemon's /metrics; -1 when absent.
func (d *runningDaemon) sample(t testing.TB, series string) float64 {
	t.Helper()
	code, b := d.call(t, "GET", "/metrics", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	var v float64
	if _, err := fmt.Sscan(string(m[1]), &v); err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

func (d *runningDaemon) schedules(t testing.TB) map[string]daemon.ScheduleStatus {
	t.Helper()
	code, b := d.call(t, "GET", "/api/v1/schedules", readToken, nil)
	var resp api.SchedulesResponse
	if code != http.StatusOK || json.Unmarshal(b, &resp) != nil {
		t.Fatalf("GET /api/v1/schedules: %d %s", code, b)
	}
	out := map[string]daemon.ScheduleStatus{}
	for _, s := range resp.Schedules {
		out[s.Name] = s
	}
	return out
}

// scheduledRuns lists the finished runs of a schedule that the schedule started (not the API).
func (d *runningDaemon) scheduledRuns(t testing.TB, sched string) []daemon.RunSummary {
	t.Helper()
	code, b := d.call(t, "GET", "/api/v1/runs?schedule="+sched, readToken, nil)
	var resp api.RunsResponse
	if code != http.StatusOK || json.Unmarshal(b, &resp) != nil {
		t.Fatalf("GET /api/v1/runs: %d %s", code, b)
	}
	var out []daemon.RunSummary
	for _, r := range resp.Finished {
		if r.Trigger == "schedule" {
			out = append(out, r)
		}
	}
	return out
}

// A live reload, through the real binary: a valid new schedule fires without a restart (SIGHUP);
// an experiment running during the reload is not disturbed, even though the reload removes its
// schedule; an invalid config (POST /api/v1/reload) is refused with its positions and the old
// schedule still fires; the audit log and the metrics record each reload. Schedules fire at
// minute boundaries (the shortest the schedule format permits), so the test takes two minutes.
func TestDaemonReloadSchedulesWithoutRestart(t *testing.T) {
	e := newDaemonEnv(t, 2, "")
	e.setDuration(t, 0, "2s")
	e.setDuration(t, 1, "20s")
	// Only SIGHUP and the API reload here; the file watch has its own test.
	d := startDaemon(t, e, nil, "--config-watch-interval", "0")
	if v := d.sample(t, "faultline_config_last_reload_successful"); v != 1 {
		t.Fatalf("faultline_config_last_reload_successful at start = %v, want 1", v)
	}
	loadedAt := d.sample(t, "faultline_config_last_reload_success_timestamp_seconds")

	// An experiment in progress, on schedule s1 (started through the API).
	running := d.trigger(t, "s1")
	waitFor(t, 15*time.Second, "victim 1 to be stopped", func() bool { return e.victims[1].State() == "T" })

	// The reload makes s0 fire every minute and removes s1, whose run is in progress.
	e.writeConfig(t, `{name: s0, runbook: pause-0.yaml, cron: "* * * * *"}`)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 20*time.Second, "the SIGHUP reload", func() bool {
		return d.sample(t, `faultline_config_reloads_total{result="success"}`) == 1
	})
	sch := d.schedules(t)
	if _, ok := sch["s1"]; ok || sch["s0"].Spec != "* * * * *" || sch["s0"].NextStart == nil {
		t.Fatalf("schedules after the reload: %+v, want s0 every minute with a next start, s1 gone", sch)
	}
	if at := d.sample(t, "faultline_config_last_reload_success_timestamp_seconds"); at <= loadedAt {
		t.Errorf("last reload success time %v not after the start's %v", at, loadedAt)
	}
	if e.victims[1].State() != "T" {
		t.Fatal("the reload disturbed the running experiment: victim 1 is no longer stopped")
	}
	code, b := d.call(t, "GET", "/api/v1/runs/"+running, readToken, nil)
	if code != http.StatusOK || !strings.Contains(string(b), `"state": "running"`) {
		t.Fatalf("run %s after the reload: %d %s, want it still running", running, code, b)
	}

	// The new schedule fires without a restart.
	waitFor(t, 90*time.Second, "a scheduled run of s0", func() bool { return len(d.scheduledRuns(t, "s0")) > 0 })
	// The run whose schedule was removed ran its whole course.
	var last []byte
	waitFor(t, 40*time.Second, "run "+running+" to finish", func() bool {
		code, last = d.call(t, "GET", "/api/v1/runs/"+running, readToken, nil)
		return code == http.StatusOK && strings.Contains(string(last), `"state": "finished"`)
	})
	if !strings.Contains(string(last), `"verdict": "passed"`) {
		t.Fatalf("the run in progress during the reload did not pass undisturbed: %s", last)
	}

	// An invalid config is refused with its positions; nothing changes.
	e.writeConfig(t, `{name: s0, runbook: pause-0.yaml, cron: "* * * * *"}`,
		`{name: s2, runbook: pause-1.yaml, cron: "every tuesday"}`,
		`{name: s3, runbook: missing.yaml, cron: "0 3 * * *"}`)
	refusedAt := time.Now()
	code, b = d.call(t, "POST", "/api/v1/reload", adminToken, map[string]string{"reason": "add s2"})
	var rerr api.ReloadErrorResponse
	if code != http.StatusBadRequest || json.Unmarshal(b, &rerr) != nil || len(rerr.Problems) == 0 {
		t.Fatalf("invalid reload: %d %s, want 400 with problems", code, b)
	}
	var fields []string
	for _, p := range rerr.Problems {
		if p.Pos.Line == 0 || !strings.HasSuffix(p.File, "faultline.yaml") {
			t.Errorf("problem without a position in the config file: %+v", p)
		}
		fields = append(fields, p.Path)
	}
	for _, want := range []string{"schedules[1].cron", "schedules[2].runbook"} {
		if !strings.Contains(strings.Join(fields, " "), want) {
			t.Errorf("problems %v do not name %s:\n%s", fields, want, b)
		}
	}
	if v := d.sample(t, "faultline_config_last_reload_successful"); v != 0 {
		t.Errorf("faultline_config_last_reload_successful after a refused reload = %v, want 0", v)
	}
	if code, _ := d.call(t, "POST", "/api/v1/reload", readToken, nil); code != http.StatusForbidden {
		t.Errorf("reload with a read-only token: %d, want 403", code)
	}
	if sch := d.schedules(t); len(sch) != 1 || sch["s0"].Spec != "* * * * *" {
		t.Fatalf("schedules after a refused reload: %+v, want s0 alone as before", sch)
	}

	// The old schedule still fires.
	waitFor(t, 90*time.Second, "a scheduled run of s0 after the refused reload", func() bool {
		for _, r := range d.scheduledRuns(t, "s0") {
			if r.StartedAt.After(refusedAt) {
				return true
			}
		}
		return false
	})

	audit, err := os.ReadFile(filepath.Join(e.state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var signal, refused bool
	for _, line := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var a api.AuditEntry
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		signal = signal || (a.Route == "reload" && a.Who == "signal" && a.Outcome == api.OutcomeOK && strings.Contains(a.Detail, "removed: s1"))
		refused = refused || (a.Route == "POST /api/v1/reload" && a.Who == "alice" && a.Code == 400 && a.Outcome == api.OutcomeFailed && a.Reason == "add s2")
	}
	if !signal || !refused {
		t.Fatalf("audit log lacks the SIGHUP reload (%v) or the refused API reload (%v):\n%s", signal, refused, audit)
	}
}

// A config mounted from a ConfigMap changes by a symlink swap of the directory's ..data; the
// daemon notices it without a signal and reloads, once per change.
func TestDaemonReloadsAChangedConfigMapMount(t *testing.T) {
	e := newDaemonEnv(t, 1, "")
	// Lay out the config directory as the kubelet does: faultline.yaml -> ..data/faultline.yaml,
	// ..data -> ..<timestamp>, the files in the timestamped directory.
	orig, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	mount := t.TempDir()
	rb, _ := filepath.Abs(filepath.Join(e.dir, "pause-0.yaml"))
	tokens, _ := filepath.Abs(filepath.Join(e.dir, "tokens"))
	swap := func(gen int, cfg string) {
		t.Helper()
		dir := filepath.Join(mount, fmt.Sprintf("..2026_12_06_%d", gen))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "faultline.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(filepath.Base(dir), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := strings.NewReplacer("runbook: pause-0.yaml", "runbook: "+rb, "tokensFile: tokens", "tokensFile: "+tokens).Replace(string(orig))
	swap(1, cfg)
	e.config = filepath.Join(mount, "faultline.yaml")
	if err := os.Symlink("..data/faultline.yaml", e.config); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e, nil, "--config-watch-interval", "100ms")

	swap(2, strings.Replace(cfg, `cron: "0 3 1 1 *"`, `cron: "0 4 1 1 *"`, 1))
	d.waitFor(t, 20*time.Second, "the changed mount to be reloaded", func() bool { return d.schedules(t)["s0"].Spec == "0 4 1 1 *" })
	// The runbook is watched too: a change to it alone is a reload, reported as such.
	b, err := os.ReadFile(rb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rb, []byte(strings.Replace(string(b), "duration: 60s", "duration: 30s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 20*time.Second, "the changed runbook to be reloaded", func() bool {
		return d.sample(t, `faultline_config_reloads_total{result="success"}`) == 2
	})
	audit, err := os.ReadFile(filepath.Join(e.state, "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"who":"file-watch"`) || !strings.Contains(string(audit), "runbooks changed: s0") {
		t.Fatalf("the audit log lacks the file watch's reload of the changed runbook (%v):\n%s", err, audit)
	}
	// Each change is reloaded once: over ten checks of the watch, the count stays at two.
	hold := time.Now().Add(time.Second)
	for tick := time.NewTicker(100 * time.Millisecond); time.Now().Before(hold); <-tick.C {
		if n := d.sample(t, `faultline_config_reloads_total{result="success"}`); n != 2 {
			t.Fatalf("%v successful reloads, want 2 (one per change)", n)
		}
	}
}
