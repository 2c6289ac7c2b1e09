//go:build linux

package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/dashboard"
	"github.com/faultline-dev/faultline/internal/testenv/local"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/faultline-dev/faultline/internal/auth"
	"github.com/faultline-dev/faultline/runbooks"
)

func echoServer(t testing.TB) string { return local.EchoServer(t) }

type fixture struct {
	srv    *Server
	api    *httptest.Server
	client *Client
	proxy  map[string]string // name → address the proxy listens on
	reg    *prometheus.Registry
}

// newFixture serves one proxy per name in front of its own echo server, with the API on an
// httptest server (tokens nil: no authentication).
func newFixture(t testing.TB, tokens *auth.Source, names ...string) *fixture {
	t.Helper()
	var specs []ProxySpec
	for _, n := range names {
		specs = append(specs, ProxySpec{Name: n, Listen: "127.0.0.1:0", Upstream: echoServer(t)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := Open(ctx, specs, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	reg := prometheus.NewRegistry()
	if err := srv.Register(reg); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler(tokens, reg, nil))
	t.Cleanup(api.Close)
	c, err := NewClient(api.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, api: api, client: c, proxy: map[string]string{}, reg: reg}
	for _, ps := range srv.Status() {
		f.proxy[ps.Name] = ps.Listen
	}
	return f
}

func dialTCP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rtt is one 32-byte round trip through c.
func rtt(t testing.TB, c net.Conn) time.Duration {
	t.Helper()
	msg, buf := make([]byte, 32), make([]byte, 32)
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// medianRTT of n round trips, which rides out a scheduling hiccup on a busy machine.
func medianRTT(t testing.TB, c net.Conn, n int) time.Duration {
	t.Helper()
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = rtt(t, c)
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[n/2]
}

func latencyToxic(name string, delay time.Duration, stream string) runbooks.ProxyToxic {
	return runbooks.ProxyToxic{Name: name, Stream: stream, Latency: &runbooks.ToxicLatency{Delay: runbooks.Duration(delay)}}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// An open connection gets the toxic the moment it is set and loses it the moment it is deleted;
// between experiments the proxy adds nothing measurable.
func TestToxicsSwitchOnAndOffOnAnOpenConnection(t *testing.T) {
	f := newFixture(t, nil, "db")
	c := dialTCP(t, f.proxy["db"])
	if d := medianRTT(t, c, 9); d > 10*time.Millisecond {
		t.Fatalf("no toxic: median round trip %s, want well under 10ms", d)
	}
	const delay = 60 * time.Millisecond
	resp, err := f.client.SetToxics(ctxT(t), "db", "run1.slow", []runbooks.ProxyToxic{latencyToxic("slow", delay, "upstream")}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Description) != 1 || !strings.Contains(resp.Description[0], "latency 60ms") {
		t.Errorf("description %q, want the latency toxic described", resp.Description)
	}
	if until := time.Until(resp.ExpiresAt); until < 8*time.Second || until > 11*time.Second {
		t.Errorf("expires in %s, want about the 10s lease", until)
	}
	if d := medianRTT(t, c, 5); d < delay || d > delay+30*time.Millisecond {
		t.Fatalf("with a %s toxic: median round trip %s", delay, d)
	}
	if err := f.client.DeleteToxics(ctxT(t), "db", "run1.slow"); err != nil {
		t.Fatal(err)
	}
	if d := medianRTT(t, c, 9); d > 10*time.Millisecond {
		t.Fatalf("toxic deleted: median round trip %s, want the delay gone", d)
	}
	// Deleting again is not an error: a revert may run twice.
	if err := f.client.DeleteToxics(ctxT(t), "db", "run1.slow"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if got := testutil.ToFloat64(f.srv.met.changes.WithLabelValues("db", "set")); got != 1 {
		t.Errorf("set changes = %g, want 1", got)
	}
}

// Two runs' toxics add up, oldest first; removing one leaves the other.
func TestOwnersToxicsCompose(t *testing.T) {
	f := newFixture(t, nil, "db")
	c := dialTCP(t, f.proxy["db"])
	if _, err := f.client.SetToxics(ctxT(t), "db", "a", []runbooks.ProxyToxic{latencyToxic("l", 40*time.Millisecond, "upstream")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.SetToxics(ctxT(t), "db", "b", []runbooks.ProxyToxic{latencyToxic("l", 30*time.Millisecond, "downstream")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := medianRTT(t, c, 5); d < 70*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("two owners' toxics: median round trip %s, want 40ms + 30ms", d)
	}
	ps, err := f.client.Proxy(ctxT(t), "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Toxics) != 2 || ps.Toxics[0].Owner != "a" || ps.Toxics[1].Owner != "b" {
		t.Fatalf("status toxics = %+v, want a then b", ps.Toxics)
	}
	if err := f.client.DeleteToxics(ctxT(t), "db", "a"); err != nil {
		t.Fatal(err)
	}
	if d := medianRTT(t, c, 5); d < 30*time.Millisecond || d > 55*time.Millisecond {
		t.Fatalf("owner a removed: median round trip %s, want b's 30ms alone", d)
	}
}

// When the owner stops renewing, the server removes the toxics by itself at the end of the lease.
func TestLeaseExpiryRemovesToxics(t *testing.T) {
	f := newFixture(t, nil, "db")
	c := dialTCP(t, f.proxy["db"])
	set := time.Now()
	if _, err := f.client.SetToxics(ctxT(t), "db", "dead-run.f", []runbooks.ProxyToxic{latencyToxic("l", 50*time.Millisecond, "upstream")}, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := rtt(t, c); d < 50*time.Millisecond {
		t.Fatalf("toxic not in force: round trip %s", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps, err := f.srv.Proxy("db")
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.Toxics) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("toxics still held %s after a 1s lease", time.Since(set))
		}
		waitTick(t, 20*time.Millisecond)
	}
	if gone := time.Since(set); gone < time.Second {
		t.Fatalf("toxics gone after %s, before the 1s lease ran out", gone)
	}
	if d := medianRTT(t, c, 9); d > 10*time.Millisecond {
		t.Fatalf("after expiry: median round trip %s", d)
	}
	if got := testutil.ToFloat64(f.srv.met.changes.WithLabelValues("db", "expire")); got != 1 {
		t.Errorf("expire changes = %g, want 1", got)
	}
}

// waitTick waits d on a timer: a polling interval, not a wait for a condition.
func waitTick(t testing.TB, d time.Duration) {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	<-tm.C
}

// A renewal (the same toxics again) must not re-draw which connections a partial toxicity picks:
// an open connection that was spared stays spared, one that was hit stays hit.
func TestRenewalKeepsEachConnectionsDraw(t *testing.T) {
	f := newFixture(t, nil, "db")
	const n = 24
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dialTCP(t, f.proxy["db"])
	}
	half := 0.5
	tox := []runbooks.ProxyToxic{{Name: "half", Stream: "upstream", Toxicity: &half, Latency: &runbooks.ToxicLatency{Delay: runbooks.Duration(40 * time.Millisecond)}}}
	if _, err := f.client.SetToxics(ctxT(t), "db", "r.f", tox, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	hit := func() []bool {
		out := make([]bool, n)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = rtt(t, c) >= 40*time.Millisecond
			}()
		}
		wg.Wait()
		return out
	}
	// SetToxics returns once every open connection has drawn: the first round already sees it.
	before := hit()
	count := 0
	for _, h := range before {
		if h {
			count++
		}
	}
	if count == 0 || count == n {
		t.Fatalf("%d of %d connections delayed: toxicity 0.5 should split them", count, n)
	}
	for range 3 {
		if _, err := f.client.SetToxics(ctxT(t), "db", "r.f", tox, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	after := hit()
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("connection %d: delayed=%v before the renewals, %v after", i, before[i], after[i])
		}
	}
	if got := testutil.ToFloat64(f.srv.met.changes.WithLabelValues("db", "renew")); got != 3 {
		t.Errorf("renew changes = %g, want 3", got)
	}
}

func TestResetRemovesEveryToxic(t *testing.T) {
	f := newFixture(t, nil, "db", "cache")
	for _, p := range []string{"db", "cache"} {
		if _, err := f.client.SetToxics(ctxT(t), p, "run.f", []runbooks.ProxyToxic{latencyToxic("l", 50*time.Millisecond, "upstream")}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.client.Reset(ctxT(t))
	if err != nil || n != 2 {
		t.Fatalf("reset = %d, %v; want 2 sets removed", n, err)
	}
	for _, p := range []string{"db", "cache"} {
		if d := medianRTT(t, dialTCP(t, f.proxy[p]), 5); d > 10*time.Millisecond {
			t.Errorf("%s after reset: median round trip %s", p, d)
		}
	}
}

func TestAPIRefusesBadRequestsAndChangesNothing(t *testing.T) {
	f := newFixture(t, nil, "db")
	ctx := ctxT(t)
	good := []runbooks.ProxyToxic{latencyToxic("l", 10*time.Millisecond, "")}
	if _, err := f.client.SetToxics(ctx, "nope", "o", good, 10*time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown proxy: %v, want not found", err)
	}
	for _, c := range []struct {
		name   string
		toxics []runbooks.ProxyToxic
		lease  time.Duration
		owner  string
		want   string
	}{
		{"zero delay", []runbooks.ProxyToxic{latencyToxic("l", 0, "")}, 10 * time.Second, "o", "toxics[0].latency.delay: is required"},
		{"no kind", []runbooks.ProxyToxic{{Name: "x"}}, 10 * time.Second, "o", "toxic 0: set exactly one"},
		{"bad stream", []runbooks.ProxyToxic{latencyToxic("l", time.Millisecond, "sideways")}, 10 * time.Second, "o", "toxics[0].stream: must be upstream"},
		{"lease too long", good, time.Hour, "o", "lease 1h0m0s must be between"},
		{"lease too short", good, 100 * time.Millisecond, "o", "must be between"},
		{"no toxics", nil, 10 * time.Second, "o", "no toxics"},
		{"bad owner", good, 10 * time.Second, "a b", "owner"},
	} {
		_, err := f.client.SetToxics(ctx, "db", c.owner, c.toxics, c.lease)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a 400 saying %q", c.name, err, c.want)
		}
	}
	// Strict bodies: an unknown field is refused, not ignored.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, f.api.URL+"/v1/proxies/db/toxics/o",
		strings.NewReader(`{"toxics":[{"latency":{"delay":"10ms"}}],"leese":"10s"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "leese") {
		t.Errorf("unknown field: %d %s", resp.StatusCode, body)
	}
	ps, err := f.client.Proxy(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Toxics) != 0 {
		t.Fatalf("refused requests left toxics: %+v", ps.Toxics)
	}
}

func TestAPITokens(t *testing.T) {
	dir := t.TempDir()
	admin, reader := "admin-token-0123456789", "reader-token-0123456789"
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte(admin+" admin ops\n"+reader+" read-only grafana\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := auth.NewSource(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, src, "db")
	ctx := ctxT(t)
	toxics := []runbooks.ProxyToxic{latencyToxic("l", time.Millisecond, "")}
	for _, c := range []struct {
		token    string
		wantList int // HTTP status of GET, 0 = success
		wantSet  int
	}{
		{"", 401, 401},
		{"wrong-token-0123456789", 401, 401},
		{reader, 0, 403},
		{admin, 0, 0},
	} {
		cl, err := NewClient(f.api.URL, c.token, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, lerr := cl.Proxies(ctx)
		_, serr := cl.SetToxics(ctx, "db", "o", toxics, 10*time.Second)
		for _, got := range []struct {
			err  error
			want int
			what string
		}{{lerr, c.wantList, "list"}, {serr, c.wantSet, "set"}} {
			var ae *APIError
			switch {
			case got.want == 0 && got.err != nil:
				t.Errorf("token %q %s: %v", c.token, got.what, got.err)
			case got.want != 0 && (!errors.As(got.err, &ae) || ae.Code != got.want):
				t.Errorf("token %q %s: %v, want HTTP %d", c.token, got.what, got.err, got.want)
			}
		}
	}
	// /healthz and /metrics answer without a token.
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(f.api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" {
			for _, m := range []string{"faultline_proxy_toxic_sets{proxy=\"db\"} 1", "faultline_proxy_connections_open{proxy=\"db\"}", "faultline_proxy_toxic_changes_total"} {
				if !strings.Contains(string(body), m) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
}

func TestOpenRefusesBadProxies(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	up := echoServer(t)
	for _, c := range []struct {
		name  string
		specs []ProxySpec
		want  string
	}{
		{"address in use", []ProxySpec{{Name: "a", Listen: "127.0.0.1:0", Upstream: up}, {Name: "b", Listen: busy.Addr().String(), Upstream: up}}, "proxy b: listen"},
		{"duplicate", []ProxySpec{{Name: "a", Listen: "127.0.0.1:0", Upstream: up}, {Name: "a", Listen: "127.0.0.1:0", Upstream: up}}, `proxy "a" is given twice`},
		{"bad name", []ProxySpec{{Name: "a b", Listen: "127.0.0.1:0", Upstream: up}}, "proxy name"},
		{"bad upstream", []ProxySpec{{Name: "a", Listen: "127.0.0.1:0", Upstream: "nowhere"}}, "is not host:port"},
		{"none", nil, "no proxies"},
	} {
		s, err := Open(ctxT(t), c.specs, 0, nil)
		if err == nil {
			_ = s.Close(ctxT(t))
			t.Errorf("%s: opened", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// The first proxy of the failed set must not keep listening: a retry can take its address.
	probe, err := net.Listen("tcp", busy.Addr().String())
	if err == nil {
		probe.Close()
		t.Fatal("the busy address became free: the test's own listener closed early")
	}
	_ = fmt.Sprint(probe)
}

// Every metric the shipped proxy dashboard queries exists in what the server exports, with the
// proxy label the dashboard filters on.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	refs := dashboard.Refs(t, "../../deploy/grafana/faultline-proxies-dashboard.json")
	f := newFixture(t, nil, "db")
	if _, err := f.client.SetToxics(ctxT(t), "db", "o", []runbooks.ProxyToxic{latencyToxic("l", time.Millisecond, "")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "proxy" {
					have[fam.GetName()] = true
				}
			}
		}
	}
	checked := 0
	for _, r := range refs {
		if !have[r.Metric] {
			t.Errorf("panel %q queries %s, which the proxy server does not export with a proxy label", r.Panel, r.Metric)
		}
		checked++
	}
	if checked < 8 {
		t.Fatalf("only %d metric references found: the test is not reading the dashboard", checked)
	}
}

// A lease timer that fires just as a renewal takes the lock (too late for Stop) must not remove
// the renewed set.
func TestStaleLeaseTimerLeavesARenewedSetAlone(t *testing.T) {
	f := newFixture(t, nil, "db")
	tox := []runbooks.ProxyToxic{latencyToxic("l", time.Millisecond, "")}
	if _, err := f.srv.SetToxics("db", "o", tox, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.srv.mu.Lock()
	set := f.srv.proxies["db"].sets["o"]
	stale := set.gen
	f.srv.mu.Unlock()
	if _, err := f.srv.SetToxics("db", "o", tox, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.srv.expire("db", "o", set, stale) // what the first timer would do had it fired late
	if ps, _ := f.srv.Proxy("db"); len(ps.Toxics) != 1 {
		t.Fatalf("a stale lease timer removed the renewed set: %+v", ps.Toxics)
	}
	f.srv.expire("db", "o", set, set.gen) // the current timer firing does remove it
	if ps, _ := f.srv.Proxy("db"); len(ps.Toxics) != 0 {
		t.Fatalf("the current lease timer did not remove the set: %+v", ps.Toxics)
	}
}
