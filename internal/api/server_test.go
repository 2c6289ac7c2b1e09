package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/metrics"
)

// fakeControl stands in for the daemon so that routing, auth, audit and error mapping can be
// exercised exhaustively; the daemon's own end-to-end tests drive the real one.
type fakeControl struct {
	mu       sync.Mutex
	active   []daemon.RunSummary
	paused   bool
	ready    bool
	next     int
	calls    []string
	block    chan struct{} // when set, Trigger waits for it to close
	entered  chan struct{} // closed by a blocking Trigger when it starts waiting
	enterOne sync.Once
	unstored []daemon.UnstoredRun
	// coordErr, when set, is what the safety calls fail with (a standby that reached no leader).
	coordErr error
}

func (f *fakeControl) Schedules() []daemon.ScheduleStatus {
	next := time.Date(2025, 3, 5, 2, 0, 0, 0, time.UTC)
	return []daemon.ScheduleStatus{{Name: "nightly", Runbook: "checkout.yaml", Mode: "cron", Spec: "0 2 * * *", NextStart: &next}}
}

func (f *fakeControl) Active() []daemon.RunSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.active)
}

func (f *fakeControl) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeControl) Trigger(ctx context.Context, runbook, who string) (string, error) {
	if f.block != nil {
		f.enterOne.Do(func() { close(f.entered) })
		select {
		case <-f.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch runbook {
	case "in-blackout":
		return "", fmt.Errorf("schedule nightly is in blackout freeze: %w", daemon.ErrConflict)
	case "kube-system":
		return "", fmt.Errorf("namespace kube-system is denied: %w", daemon.ErrForbidden)
	case "unknown":
		return "", fmt.Errorf("no schedule or runbook %q: %w", runbook, daemon.ErrNotFound)
	case "broken":
		return "", errors.New("disk on fire")
	}
	f.next++
	id := fmt.Sprintf("run%d", f.next)
	f.active = append(f.active, daemon.RunSummary{RunID: id, Runbook: runbook, Trigger: "api", StartedAt: time.Now().UTC()})
	f.record("trigger %s by %s", runbook, who)
	return id, nil
}

func (f *fakeControl) Halt(_ context.Context, runID, reason, who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.active, func(r daemon.RunSummary) bool { return r.RunID == runID })
	if i < 0 {
		return fmt.Errorf("no active run %q: %w", runID, daemon.ErrNotFound)
	}
	f.active = slices.Delete(f.active, i, i+1)
	f.record("halt %s (%s) by %s", runID, reason, who)
	return nil
}

func (f *fakeControl) HaltAll(_ context.Context, reason, who string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, r := range f.active {
		ids = append(ids, r.RunID)
	}
	f.active = nil
	f.record("halt-all %v (%s) by %s", ids, reason, who)
	return ids, f.coordErr
}

func (f *fakeControl) Pause(_ context.Context, who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.coordErr != nil {
		return f.coordErr
	}
	f.paused = true
	f.record("pause by %s", who)
	return nil
}

func (f *fakeControl) Resume(_ context.Context, who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = false
	f.record("resume by %s", who)
	return nil
}

func (f *fakeControl) Reload(_ context.Context, who string) (daemon.ReloadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reload by %s", who)
	return daemon.ReloadResult{Source: who}, nil
}

func (f *fakeControl) Paused() bool           { f.mu.Lock(); defer f.mu.Unlock(); return f.paused }
func (f *fakeControl) Leader() bool           { return true }
func (f *fakeControl) LeaderIdentity() string { return "fake" }
func (f *fakeControl) Recovery() string       { return "" }
func (f *fakeControl) Ready() bool            { f.mu.Lock(); defer f.mu.Unlock(); return f.ready }

func (f *fakeControl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

const (
	adminToken  = "admin-token-0123456789"
	readerToken = "reader-token-0123456789"
)

func tokenFileText() string {
	return "# test tokens\n" + adminToken + " admin alice\n\n" + readerToken + " read-only grafana\n"
}

// env is a running API server on a loopback port with a real history file.
type env struct {
	t       *testing.T
	url     string
	control *fakeControl
	hist    *history.Store
	srv     *Server
	reg     *prometheus.Registry
	dir     string
	client  *http.Client
}

type envOpt func(*Config)

func start(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{TokenFile: filepath.Join(dir, "tokens"), AuditLog: filepath.Join(dir, "audit.jsonl")}
	if err := os.WriteFile(cfg.TokenFile, []byte(tokenFileText()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(&cfg)
	}
	hist, err := history.Open(context.Background(), filepath.Join(dir, "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() })
	e := &env{t: t, control: &fakeControl{ready: true}, hist: hist, reg: metrics.New().Registry, dir: dir, client: &http.Client{Timeout: 10 * time.Second}}
	e.srv, err = New(cfg, e.control, hist, e.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.serve(t, cfg)
	return e
}

func (e *env) serve(t *testing.T, cfg Config) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	e.url = scheme + "://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := e.srv.Close(); err != nil {
			t.Error(err)
		}
	})
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorText(t *testing.T) string {
	t.Helper()
	var er ErrorResponse
	r.decode(t, &er)
	if er.Error == "" {
		t.Fatalf("error body without error: %s", r.body)
	}
	return er.Error
}

// do sends a request; auth is the whole Authorization header ("" for none).
func (e *env) do(method, path, auth, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) audit() []AuditEntry {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.dir, "audit.jsonl"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a AuditEntry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			e.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, a)
	}
	return out
}

const (
	bearerAdmin  = "Bearer " + adminToken
	bearerReader = "Bearer " + readerToken
)

// call is one route with a request that succeeds for an admin.
type call struct {
	method, path, body string
	admin              bool // state-changing
	want               int  // for an admin
}

// calls covers every route behind a token. The order matters: halt needs run1 to exist.
var calls = []call{
	{"GET", "/api/v1/status", "", false, 200},
	{"GET", "/api/v1/schedules", "", false, 200},
	{"GET", "/api/v1/runs", "", false, 200},
	{"POST", "/api/v1/runs", `{"runbook":"checkout.yaml"}`, true, 202},
	{"GET", "/api/v1/runs/run1", "", false, 200},
	{"POST", "/api/v1/runs/run1/halt", `{"reason":"looks wrong"}`, true, 200},
	{"POST", "/api/v1/halt", `{"reason":"kill switch"}`, true, 200},
	{"POST", "/api/v1/pause", "", true, 200},
	{"POST", "/api/v1/resume", `{"reason":"back to work"}`, true, 200},
}

func TestAuthOnEveryRoute(t *testing.T) {
	e := start(t)
	badAuth := map[string]string{
		"none":            "",
		"wrong token":     "Bearer not-the-token-at-all-123",
		"wrong scheme":    "Basic " + adminToken,
		"no token":        "Bearer",
		"empty token":     "Bearer   ",
		"two words":       "Bearer " + adminToken + " extra",
		"token as scheme": adminToken,
		"prefix of token": "Bearer " + adminToken[:len(adminToken)-1],
	}
	for _, c := range calls {
		for name, auth := range badAuth {
			r := e.do(c.method, c.path, auth, c.body)
			if r.code != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d, want 401", c.method, c.path, name, r.code)
			}
			if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
				t.Errorf("%s %s with %s: WWW-Authenticate %q", c.method, c.path, name, h)
			}
			r.errorText(t)
		}
		r := e.do(c.method, c.path, bearerReader, c.body)
		switch {
		case c.admin && r.code != http.StatusForbidden:
			t.Errorf("%s %s read-only: %d, want 403", c.method, c.path, r.code)
		case c.admin && !strings.Contains(r.errorText(t), "read-only"):
			t.Errorf("%s %s read-only: error %q does not say why", c.method, c.path, r.body)
		case !c.admin && r.code != http.StatusOK:
			t.Errorf("%s %s read-only: %d, want 200: %s", c.method, c.path, r.code, r.body)
		}
		// The scheme is case-insensitive (RFC 6750 / 9110).
		if r := e.do(c.method, c.path, "bearer "+adminToken, c.body); r.code != c.want {
			t.Errorf("%s %s admin: %d, want %d: %s", c.method, c.path, r.code, c.want, r.body)
		}
	}
	if got, want := e.control.Calls(), []string{
		"trigger checkout.yaml by alice",
		"halt run1 (looks wrong) by alice",
		"halt-all [] (kill switch) by alice",
		"pause by alice",
		"resume by alice",
	}; !slices.Equal(got, want) {
		t.Errorf("control saw\n%q\nwant\n%q", got, want)
	}
	// Open routes need no token.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := e.do("GET", p, "", ""); r.code != http.StatusOK {
			t.Errorf("GET %s without a token: %d", p, r.code)
		}
	}
}

func TestAuditRecordsAllowedAndDenied(t *testing.T) {
	e := start(t)
	e.do("GET", "/api/v1/status", bearerAdmin, "")                               // reads are not audited
	e.do("POST", "/api/v1/halt", "", `{"reason":"x"}`)                           // 401
	e.do("POST", "/api/v1/halt", "Bearer nope-nope-nope-nope", "")               // 401
	e.do("POST", "/api/v1/runs/run9/halt", bearerReader, `{"reason":"not me"}`)  // 403
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"checkout.yaml"}`)     // 202 run1
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"in-blackout"}`)       // 409
	e.do("POST", "/api/v1/runs/run1/halt", bearerAdmin, `{"reason":"too slow"}`) // 202
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"a"}`)                 // 202 run2
	e.do("POST", "/api/v1/halt", bearerAdmin, `{"reason":"game over"}`)          // 202 [run2]
	e.do("POST", "/api/v1/pause", bearerAdmin, "")                               // 200
	e.do("POST", "/api/v1/runs/nope/halt", bearerAdmin, "")                      // 404
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"x","extra":1}`)       // 400
	got := e.audit()
	type line struct {
		who, role, route, runID, runbook, reason, outcome string
		code                                              int
		halted                                            string
	}
	want := []line{
		{"", "", "POST /api/v1/halt", "", "", "", OutcomeDenied, 401, ""},
		{"", "", "POST /api/v1/halt", "", "", "", OutcomeDenied, 401, ""},
		{"grafana", "read-only", "POST /api/v1/runs/{id}/halt", "run9", "", "", OutcomeDenied, 403, ""},
		{"alice", "admin", "POST /api/v1/runs", "run1", "checkout.yaml", "", OutcomeOK, 202, ""},
		{"alice", "admin", "POST /api/v1/runs", "", "in-blackout", "", OutcomeFailed, 409, ""},
		{"alice", "admin", "POST /api/v1/runs/{id}/halt", "run1", "", "too slow", OutcomeOK, 200, "run1"},
		{"alice", "admin", "POST /api/v1/runs", "run2", "a", "", OutcomeOK, 202, ""},
		{"alice", "admin", "POST /api/v1/halt", "", "", "game over", OutcomeOK, 200, "run2"},
		{"alice", "admin", "POST /api/v1/pause", "", "", "", OutcomeOK, 200, ""},
		{"alice", "admin", "POST /api/v1/runs/{id}/halt", "nope", "", "halted by operator", OutcomeFailed, 404, ""},
		{"alice", "admin", "POST /api/v1/runs", "", "", "", OutcomeFailed, 400, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit lines, want %d: %+v", len(got), len(want), got)
	}
	for i, a := range got {
		l := line{a.Who, a.Role, a.Route, a.RunID, a.Runbook, a.Reason, a.Outcome, a.Code, strings.Join(a.Halted, ",")}
		if l != want[i] {
			t.Errorf("audit line %d = %+v\nwant %+v", i, l, want[i])
		}
		if a.Time.IsZero() || !strings.HasPrefix(a.Remote, "127.0.0.1:") || a.Method != "POST" || a.Path == "" {
			t.Errorf("audit line %d lacks when/where: %+v", i, a)
		}
		if (a.Outcome != OutcomeOK) != (a.Error != "") {
			t.Errorf("audit line %d: outcome %s with error %q", i, a.Outcome, a.Error)
		}
		raw, _ := json.Marshal(a)
		if strings.Contains(string(raw), "token-0123456789") {
			t.Errorf("audit line %d contains a token: %s", i, raw)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	e := start(t)
	for _, c := range []struct {
		method, path, body string
		want               int
		says               string
	}{
		{"POST", "/api/v1/runs", `{"runbook":"in-blackout"}`, 409, "blackout"},
		{"POST", "/api/v1/runs", `{"runbook":"kube-system"}`, 403, "denied"},
		{"POST", "/api/v1/runs", `{"runbook":"unknown"}`, 404, "no schedule or runbook"},
		{"POST", "/api/v1/runs", `{"runbook":"broken"}`, 500, "disk on fire"},
		{"POST", "/api/v1/runs", `{"runbook":""}`, 400, "runbook is required"},
		{"POST", "/api/v1/runs", ``, 400, "want a JSON object"},
		{"POST", "/api/v1/runs", `{"runbook":1}`, 400, "request body"},
		{"POST", "/api/v1/runs", `{"runbook":"a"}{"runbook":"b"}`, 400, "more than one"},
		{"POST", "/api/v1/runs", `{"runbook":"a","dryRun":true}`, 400, "unknown field"},
		{"POST", "/api/v1/runs", `{"runbook":"` + strings.Repeat("x", maxBody) + `"}`, 413, "too large"},
		{"POST", "/api/v1/runs/ghost/halt", ``, 404, "no active run"},
		{"POST", "/api/v1/halt", `{"reason":"` + strings.Repeat("x", maxReasonLen+1) + `"}`, 400, "reason longer"},
		{"POST", "/api/v1/pause", `[]`, 400, "request body"},
		{"GET", "/api/v1/runs/ghost", ``, 404, "neither running nor in history"},
		{"GET", "/api/v1/runs?verdict=great", ``, 400, "verdict"},
		{"GET", "/api/v1/runs?limit=0", ``, 400, "limit"},
		{"GET", "/api/v1/runs?limit=5000", ``, 400, "limit"},
		{"GET", "/api/v1/runs?since=yesterday", ``, 400, "since"},
		{"GET", "/api/v1/runs?verdicts=passed", ``, 400, "unknown query parameter"},
		{"GET", "/api/v1/runs?schedule=a&schedule=b", ``, 400, "2 times"},
	} {
		r := e.do(c.method, c.path, bearerAdmin, c.body)
		if r.code != c.want {
			t.Errorf("%s %s %.40s: %d, want %d: %s", c.method, c.path, c.body, r.code, c.want, r.body)
			continue
		}
		if msg := r.errorText(t); !strings.Contains(msg, c.says) {
			t.Errorf("%s %s %.40s: error %q, want it to say %q", c.method, c.path, c.body, msg, c.says)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, ct)
		}
	}
	// A method the route does not have is the mux's 405, not a handler.
	if r := e.do("DELETE", "/api/v1/runs/x", bearerAdmin, ""); r.code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE a run: %d, want 405", r.code)
	}
}

func TestRunsFromHistoryAndLive(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	base := time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)
	for i, v := range []experiments.Verdict{experiments.Passed, experiments.Halted, experiments.Passed} {
		res := &experiments.Result{RunID: fmt.Sprintf("old%d", i), Runbook: "checkout", Verdict: v, ExitCode: v.ExitCode(),
			StartedAt: base.Add(time.Duration(i) * time.Hour), EndedAt: base.Add(time.Duration(i)*time.Hour + time.Minute),
			Experiments: []experiments.ExperimentResult{{Name: "kill", Verdict: v}}}
		if err := e.hist.Put(ctx, history.SummaryOf(res, "nightly", "schedule"), res); err != nil {
			t.Fatal(err)
		}
	}
	// run1 is live; old2 is also still listed as active, as in the moment between the daemon
	// storing it and dropping it from its live runs: it must appear once, as finished.
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"search"}`)
	e.control.mu.Lock()
	e.control.active = append(e.control.active, daemon.RunSummary{RunID: "old2", Schedule: "nightly", Runbook: "checkout", StartedAt: base.Add(2 * time.Hour)})
	e.control.mu.Unlock()

	var runs RunsResponse
	e.do("GET", "/api/v1/runs", bearerReader, "").decode(t, &runs)
	if ids := summaryIDs(runs.Active); ids != "run1" {
		t.Errorf("active = %s, want run1", ids)
	}
	if ids := summaryIDs(runs.Finished); ids != "old2,old1,old0" {
		t.Errorf("finished = %s, want old2,old1,old0", ids)
	}
	for q, want := range map[string][2]string{
		"?verdict=passed":             {"", "old2,old0"},
		"?schedule=nightly":           {"", "old2,old1,old0"},
		"?runbook=search":             {"run1", ""},
		"?limit=1":                    {"run1", "old2"},
		"?since=2025-03-04T02:30:00Z": {"run1", "old2,old1"},
		"?since=1h":                   {"run1", ""},
	} {
		var got RunsResponse
		r := e.do("GET", "/api/v1/runs"+q, bearerReader, "")
		r.decode(t, &got)
		if a, f := summaryIDs(got.Active), summaryIDs(got.Finished); a != want[0] || f != want[1] {
			t.Errorf("runs%s = active %q finished %q, want %q %q", q, a, f, want[0], want[1])
		}
	}

	var run RunResponse
	e.do("GET", "/api/v1/runs/old1", bearerReader, "").decode(t, &run)
	if run.State != RunFinished || run.Summary.Verdict != experiments.Halted || run.Summary.Schedule != "nightly" ||
		run.Result == nil || run.Result.Experiments[0].Name != "kill" {
		t.Errorf("finished run = %+v", run)
	}
	run = RunResponse{}
	e.do("GET", "/api/v1/runs/run1", bearerReader, "").decode(t, &run)
	if run.State != RunRunning || run.Summary.Runbook != "search" || run.Result != nil {
		t.Errorf("running run = %+v", run)
	}

	var st StatusResponse
	e.do("GET", "/api/v1/status", bearerReader, "").decode(t, &st)
	if !st.Leader || st.Paused || !st.Ready || len(st.Schedules) != 1 || st.Schedules[0].NextStart == nil || len(st.Active) != 2 {
		t.Errorf("status = %+v", st)
	}
	var sc SchedulesResponse
	e.do("GET", "/api/v1/schedules", bearerReader, "").decode(t, &sc)
	if len(sc.Schedules) != 1 || sc.Schedules[0].Name != "nightly" {
		t.Errorf("schedules = %+v", sc)
	}
}

func summaryIDs(s []daemon.RunSummary) string {
	var ids []string
	for _, r := range s {
		ids = append(ids, r.RunID)
	}
	return strings.Join(ids, ",")
}

func TestTriggerAnswersWithLocation(t *testing.T) {
	e := start(t)
	r := e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"checkout.yaml"}`)
	var tr TriggerResponse
	r.decode(t, &tr)
	if r.code != 202 || tr.RunID != "run1" || tr.Location != "/api/v1/runs/run1" || r.header.Get("Location") != tr.Location {
		t.Fatalf("trigger: %d %+v Location %q", r.code, tr, r.header.Get("Location"))
	}
	var p PauseResponse
	e.do("POST", "/api/v1/pause", bearerAdmin, `{"reason":"freeze"}`).decode(t, &p)
	if !p.Paused {
		t.Error("pause answered paused=false")
	}
	e.do("POST", "/api/v1/resume", bearerAdmin, "").decode(t, &p)
	if p.Paused {
		t.Error("resume answered paused=true")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := start(t)
	if r := e.do("GET", "/healthz", "", ""); r.code != 200 {
		t.Errorf("healthz %d", r.code)
	}
	e.control.mu.Lock()
	e.control.ready = false
	e.control.mu.Unlock()
	var rr ReadyResponse
	r := e.do("GET", "/readyz", "", "")
	r.decode(t, &rr)
	if r.code != http.StatusServiceUnavailable || rr.Ready {
		t.Errorf("readyz while recovering: %d %+v", r.code, rr)
	}
	e.control.mu.Lock()
	e.control.ready = true
	e.control.mu.Unlock()
	if r := e.do("GET", "/readyz", "", ""); r.code != 200 {
		t.Errorf("readyz when ready: %d", r.code)
	}
}

func TestMetrics(t *testing.T) {
	e := start(t)
	e.do("POST", "/api/v1/runs", bearerAdmin, `{"runbook":"checkout.yaml"}`)
	e.do("POST", "/api/v1/runs", "", `{"runbook":"checkout.yaml"}`)
	e.do("GET", "/api/v1/runs/run1", bearerAdmin, "")
	e.do("GET", "/nowhere", "", "")
	r := e.do("GET", "/metrics", "", "")
	for _, want := range []string{
		`faultline_api_requests_total{code="202",route="POST /api/v1/runs"} 1`,
		`faultline_api_requests_total{code="401",route="POST /api/v1/runs"} 1`,
		`faultline_api_requests_total{code="200",route="GET /api/v1/runs/{id}"} 1`,
		`faultline_api_requests_total{code="404",route="unmatched"} 1`,
		`faultline_experiments_total`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	e = start(t, func(c *Config) { c.MetricsAuth = true })
	if r := e.do("GET", "/metrics", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("/metrics with MetricsAuth and no token: %d", r.code)
	}
	if r := e.do("GET", "/metrics", bearerReader, ""); r.code != http.StatusOK {
		t.Errorf("/metrics with MetricsAuth and a read-only token: %d", r.code)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// Write-then-rename, as config management and Kubernetes do: the reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFileReload(t *testing.T) {
	e := start(t)
	path := filepath.Join(e.dir, "tokens")
	const newToken = "fresh-token-abcdefghijkl"
	digest := sha256.Sum256([]byte(newToken))

	// alice's token is revoked, bob's added as a digest: the next request sees the change.
	writeFile(t, path, "sha256:"+hex.EncodeToString(digest[:])+" admin bob\n"+readerToken+" read-only grafana\n")
	if r := e.do("POST", "/api/v1/pause", bearerAdmin, ""); r.code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", r.code)
	}
	if r := e.do("POST", "/api/v1/pause", "Bearer "+newToken, ""); r.code != http.StatusOK {
		t.Errorf("new token: %d, want 200", r.code)
	}
	if got := e.control.Calls(); !slices.Equal(got, []string{"pause by bob"}) {
		t.Errorf("calls = %q", got)
	}

	// A broken file keeps the last good tokens in force, and ReloadTokens (SIGHUP) says why.
	writeFile(t, path, newToken+" superuser bob\n")
	if r := e.do("POST", "/api/v1/resume", "Bearer "+newToken, ""); r.code != http.StatusOK {
		t.Errorf("after a broken rewrite, the last good token: %d, want 200", r.code)
	}
	if err := e.srv.ReloadTokens(); err == nil || !strings.Contains(err.Error(), `role "superuser"`) {
		t.Errorf("ReloadTokens on a broken file = %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/v1/status", bearerReader, ""); r.code != http.StatusOK {
		t.Errorf("after the file vanished, the last good token: %d, want 200", r.code)
	}

	// Fixed again: in force without a signal.
	writeFile(t, path, tokenFileText())
	if r := e.do("GET", "/api/v1/status", "Bearer "+newToken, ""); r.code != http.StatusUnauthorized {
		t.Errorf("bob after the fix: %d, want 401", r.code)
	}
	if r := e.do("GET", "/api/v1/status", bearerAdmin, ""); r.code != http.StatusOK {
		t.Errorf("alice after the fix: %d, want 200", r.code)
	}
	if err := e.srv.ReloadTokens(); err != nil {
		t.Errorf("ReloadTokens: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(tokenFileText()), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hist, err := history.Open(context.Background(), filepath.Join(dir, "h.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	fc := &fakeControl{}
	for name, c := range map[string]struct {
		cfg  Config
		ctrl daemon.Control
		says string
	}{
		"missing token file": {Config{TokenFile: filepath.Join(dir, "nope")}, fc, "no such file"},
		"no tokens":          {Config{TokenFile: empty}, fc, "no tokens"},
		"half TLS":           {Config{TokenFile: tokens, TLSCertFile: "c.pem"}, fc, "both a certificate and a key"},
		"missing TLS files":  {Config{TokenFile: tokens, TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, fc, "TLS"},
		"audit log dir gone": {Config{TokenFile: tokens, AuditLog: filepath.Join(dir, "no", "audit")}, fc, "audit log"},
		"no control":         {Config{TokenFile: tokens}, nil, "control and history are required"},
	} {
		_, err := New(c.cfg, c.ctrl, hist, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: New = %v, want an error saying %q", name, err, c.says)
		}
	}
}

func TestGracefulShutdownFinishesRequests(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{TokenFile: filepath.Join(dir, "tokens")}
	if err := os.WriteFile(cfg.TokenFile, []byte(tokenFileText()), 0o600); err != nil {
		t.Fatal(err)
	}
	hist, err := history.Open(context.Background(), filepath.Join(dir, "h.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	fc := &fakeControl{block: make(chan struct{}), entered: make(chan struct{})}
	srv, err := New(cfg, fc, hist, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	type result struct {
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/api/v1/runs", strings.NewReader(`{"runbook":"slow"}`))
		req.Header.Set("Authorization", bearerAdmin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{code: resp.StatusCode}
	}()
	<-fc.entered
	cancel() // shutdown begins with the trigger in flight
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}
	close(fc.block)
	if r := <-got; r.err != nil || r.code != http.StatusAccepted {
		t.Fatalf("in-flight request: %d, %v; want 202", r.code, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestNoTokenFileRefusesAll(t *testing.T) {
	e := start(t, func(c *Config) { c.TokenFile = "" })
	for _, c := range calls {
		r := e.do(c.method, c.path, bearerAdmin, c.body)
		if r.code != http.StatusUnauthorized || !strings.Contains(r.errorText(t), "no API token file") {
			t.Errorf("%s %s without a token file: %d %s", c.method, c.path, r.code, r.body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := e.do("GET", p, "", ""); r.code != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.code)
		}
	}
	if got := e.control.Calls(); len(got) != 0 {
		t.Errorf("control was called: %q", got)
	}
	if a := e.audit(); len(a) != 5 || a[0].Outcome != OutcomeDenied {
		t.Errorf("audit: %+v", a)
	}
	if err := e.srv.ReloadTokens(); err != nil {
		t.Errorf("ReloadTokens without a file: %v", err)
	}
}

// A safety call that could not be confirmed (a standby that reached no leader) is a 503 that says
// so, audited as failed, never a 200.
func TestSafetyCallsUnconfirmedAre503(t *testing.T) {
	e := start(t)
	e.control.mu.Lock()
	e.control.coordErr = errors.New("no leader answered the halt request in time")
	e.control.mu.Unlock()
	for _, path := range []string{"/api/v1/halt", "/api/v1/pause"} {
		r := e.do("POST", path, bearerAdmin, "")
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.errorText(t), "no leader answered") {
			t.Errorf("%s: %d %s, want 503 naming the cause", path, r.code, r.body)
		}
	}
	entries := e.audit()
	if len(entries) != 2 || entries[0].Outcome != OutcomeFailed || entries[1].Outcome != OutcomeFailed {
		t.Fatalf("audit: %+v, want two failed entries", entries)
	}
}
