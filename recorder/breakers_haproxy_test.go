//go:build linux

package recorder_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

// haproxyLab is a real HAProxy in namespace A in front of two real HTTP backends in namespace B,
// with its Prometheus exporter reachable from the host's loopback for the real Prometheus.
type haproxyLab struct {
	link     *netns.Link
	backends [2]string // host:port of s1, s2 in B
	front    string    // host:port of the frontend in A
	prom     *prom.Server

	mu     sync.Mutex
	events []haproxyEvent // ground truth: "Server be_app/sN is DOWN|UP" lines as HAProxy wrote them
	seen   chan struct{}
}

type haproxyEvent struct {
	server, state string
	at            time.Time
}

func startHAProxyLab(t testing.TB, scrape time.Duration) *haproxyLab {
	t.Helper()
	netns.Require(t, "iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy not installed (scripts/testenv installs it)")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab := &haproxyLab{link: netns.NewPair(t), seen: make(chan struct{}, 64)}
	l := lab.link
	for i := range lab.backends {
		ln, err := l.B.ListenTCP(ctx, net.JoinHostPort(l.B4.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		lab.backends[i] = ln.Addr().String()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
	}
	lab.front = net.JoinHostPort(l.A4.String(), "8080")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global
  stats socket %s mode 600 level admin
defaults
  mode http
  timeout connect 300ms
  timeout client 5s
  timeout server 2s
frontend fe
  bind %s
  default_backend be_app
frontend prom
  bind 127.0.0.1:8404
  http-request use-service prometheus-exporter if { path /metrics }
backend be_app
  balance roundrobin
  option httpchk GET /
  default-server inter 200ms fall 2 rise 2 observe layer7 error-limit 3 on-error mark-down
  server s1 %s check
  server s2 %s check
`, filepath.Join(dir, "admin.sock"), lab.front, lab.backends[0], lab.backends[1])
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	// Forked from a thread inside A, HAProxy lives in A.
	if err := l.A.Do(cmd.Start); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go lab.readLog(stderr)

	// The exporter listens on A's loopback; a forwarder on the host's loopback reaches it through
	// a socket made inside A.
	fwd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fwd.Close() })
	go forward(fwd, l.A)
	lab.prom = prom.Start(t, prom.WithScrapeInterval(scrape), prom.WithJob("haproxy", fwd.Addr().String()))
	if _, err := lab.prom.WaitVector(ctx, `haproxy_server_status{proxy="be_app",state="UP"} == 1`, func(v model.Vector) bool { return len(v) == 2 }); err != nil {
		t.Fatalf("wait for both servers UP in Prometheus: %v", err)
	}
	return lab
}

func forward(ln net.Listener, a *netns.NS) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var up net.Conn
			if err := a.Do(func() error {
				var err error
				up, err = net.DialTimeout("tcp", "127.0.0.1:8404", 2*time.Second)
				return err
			}); err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c) }()
			_, _ = io.Copy(c, up)
		}()
	}
}

// readLog timestamps HAProxy's "Server be_app/s2 is DOWN" lines as they arrive.
func (lab *haproxyLab) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		now := time.Now()
		line := sc.Text()
		i := strings.Index(line, "Server be_app/")
		if i < 0 {
			continue
		}
		var server, state string
		if _, err := fmt.Sscanf(line[i:], "Server be_app/%s is %s", &server, &state); err != nil {
			continue
		}
		state = strings.TrimSuffix(state, ",")
		lab.mu.Lock()
		lab.events = append(lab.events, haproxyEvent{server: server, state: state, at: now})
		lab.mu.Unlock()
		select {
		case lab.seen <- struct{}{}:
		default:
		}
	}
}

// waitState waits until HAProxy has logged server going to state n times in all.
func (lab *haproxyLab) waitState(ctx context.Context, server, state string, n int) error {
	for {
		lab.mu.Lock()
		c := 0
		for _, e := range lab.events {
			if e.server == server && e.state == state {
				c++
			}
		}
		lab.mu.Unlock()
		if c >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("haproxy never logged %s %s (#%d): %w", server, state, n, ctx.Err())
		case <-lab.seen:
		}
	}
}

// traffic sends requests through the frontend from inside A until ctx ends (at most 3,000).
func (lab *haproxyLab) traffic(ctx context.Context) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, nw, addr string) (net.Conn, error) {
		var c net.Conn
		err := lab.link.A.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, nw, addr)
			return err
		})
		return c, err
	}}}
	defer client.CloseIdleConnections()
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for i := 0; i < 3000; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lab.front+"/", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// TestBreakersHAProxyMarkDown drives real mark-downs of s2 with a faultline reject fault on its
// port and compares the recorded timeline with HAProxy's own log.
func TestBreakersHAProxyMarkDown(t *testing.T) {
	runHAProxyScenario(t, 4, time.Second)
}

// BenchmarkBreakerAccuracyHAProxy: the same with 15 mark-downs (30 transitions), reporting the
// time error against HAProxy's log.
func BenchmarkBreakerAccuracyHAProxy(b *testing.B) {
	for range b.N {
		errs, uncs := runHAProxyScenario(b, 15, time.Second)
		b.ReportMetric(float64(len(errs)), "transitions")
		b.ReportMetric(quantile(errs, 0.5), "p50-err-s")
		b.ReportMetric(quantile(errs, 0.99), "p99-err-s")
		b.ReportMetric(quantile(uncs, 0.5), "p50-stated-±s")
	}
}

// BenchmarkBreakerAccuracyHAProxySlowScrape: 6 mark-downs at a 5 s scrape, where the
// transition-age gauge narrows each change far below half the scrape gap.
func BenchmarkBreakerAccuracyHAProxySlowScrape(b *testing.B) {
	for range b.N {
		errs, uncs := runHAProxyScenario(b, 6, 5*time.Second)
		b.ReportMetric(float64(len(errs)), "transitions")
		b.ReportMetric(quantile(errs, 0.5), "p50-err-s")
		b.ReportMetric(quantile(errs, 0.99), "p99-err-s")
		b.ReportMetric(quantile(uncs, 0.5), "p50-stated-±s")
	}
}

func runHAProxyScenario(t testing.TB, cycles int, scrape time.Duration) (errs, uncs []float64) {
	lab := startHAProxyLab(t, scrape)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tctx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	go lab.traffic(tctx)

	_, port, _ := net.SplitHostPort(lab.backends[1])
	rb, err := runbooks.Parse("haproxy.yaml", []byte(fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: haproxy-breaker}
environment: {name: lab, type: local}
experiments:
  - name: s2-down
    duration: 2s
    faults:
      - reject: {netns: %s, direction: ingress, protocol: tcp, ports: ["%s"], with: tcp-reset}
    record:
      breakers:
        - preset: haproxy
          address: %s
          selector: proxy="be_app"
          interval: %s
          settle: 30s
          lookback: %s
`, lab.link.B.Name, port, lab.prom.URL, scrape, 10*scrape)))
	if err != nil {
		t.Fatal(err)
	}
	x := &rb.Experiments[0]
	var inj injectors.Injector
	for _, i := range network.Injectors() {
		if i.Kind() == x.Faults[0].Kind() {
			inj = i
		}
	}
	if inj == nil {
		t.Fatalf("no injector for %s", x.Faults[0].Kind())
	}
	env := injectors.Env{RunID: fmt.Sprintf("brk-%d", os.Getpid())}
	sess, err := (&recorder.Breakers{}).Start(ctx, x, env)
	if err != nil {
		t.Fatal(err)
	}
	var revertedAt, firstAt time.Time
	for c := 1; c <= cycles; c++ {
		act, err := inj.Prepare(ctx, x.Faults[0], env)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := act.Record()
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		if err := act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if firstAt.IsZero() {
			firstAt = at
		}
		sess.FaultApplied(experiments.AppliedFault{Name: x.Faults[0].Name, Kind: x.Faults[0].Kind(), Described: act.Targets(), At: at})
		if err := lab.waitState(ctx, "s2", "DOWN", c); err != nil {
			t.Fatal(err)
		}
		hold(ctx, max(2*time.Second, 2*scrape))
		if err := inj.Revert(ctx, raw, env); err != nil {
			t.Fatal(err)
		}
		revertedAt = time.Now()
		if err := lab.waitState(ctx, "s2", "UP", c); err != nil {
			t.Fatal(err)
		}
		if c < cycles {
			hold(ctx, max(2*time.Second, 2*scrape))
		}
	}
	rec := sess.Finish(ctx, experiments.RecordingEnd{FirstFaultAt: firstAt, RevertedAt: revertedAt})
	stopTraffic()
	if rec.Incomplete || !rec.Recovered {
		t.Fatalf("incomplete=%v recovered=%v: %s", rec.Incomplete, rec.Recovered, rec.Reason)
	}
	doc := rec.Data.(*recorder.BreakersDocument)
	var s2 *recorder.BreakerDoc
	for i, b := range doc.Groups[0].Breakers {
		if b.Subject == "be_app/s2" {
			s2 = &doc.Groups[0].Breakers[i]
		}
		if b.Subject == "be_app/s1" && len(b.Transitions) != 0 {
			t.Errorf("s1 was never faulted but has transitions %+v", b.Transitions)
		}
	}
	if s2 == nil {
		t.Fatalf("no breaker be_app/s2 in %+v", doc.Groups[0])
	}
	lab.mu.Lock()
	truth := append([]haproxyEvent(nil), lab.events...)
	lab.mu.Unlock()
	narrowed := 0
	for _, want := range []struct{ haproxy, state string }{{"DOWN", "open"}, {"UP", "closed"}} {
		var tt []time.Time
		for _, e := range truth {
			if e.server == "s2" && e.state == want.haproxy {
				tt = append(tt, e.at)
			}
		}
		var got []recorder.BreakerChange
		for _, c := range s2.Transitions {
			if c.To == want.state {
				got = append(got, c)
			}
		}
		if len(got) != len(tt) {
			t.Fatalf("%d transitions to %s recorded, HAProxy logged %d %s: %+v", len(got), want.state, len(tt), want.haproxy, s2.Transitions)
		}
		for i := range got {
			e := math.Abs(got[i].At.Sub(tt[i]).Seconds())
			errs = append(errs, e)
			uncs = append(uncs, got[i].Uncertainty)
			// 250 ms beyond the stated ± for the log pipe and the scrape's own timing on a loaded
			// machine.
			if e > got[i].Uncertainty+0.25 {
				t.Errorf("%s #%d: recorded %s ±%.3fs, HAProxy logged %s (error %.3fs)", want.state, i, got[i].At.Format("15:04:05.000"), got[i].Uncertainty, tt[i].Format("15:04:05.000"), e)
			}
			if strings.Contains(got[i].Source, "narrowed") {
				narrowed++
			}
		}
	}
	if narrowed == 0 {
		t.Errorf("no transition was narrowed by haproxy_server_check_last_change_seconds: %+v", s2.Transitions)
	}
	t.Logf("HAProxy: %d transitions, error p50 %.3fs p99 %.3fs, stated ± p50 %.3fs (scrape %s, narrowed by check_last_change_seconds)", len(errs), quantile(errs, 0.5), quantile(errs, 0.99), quantile(uncs, 0.5), scrape)
	figs := map[string]float64{}
	for _, f := range rec.Figures {
		if f.Value != nil {
			figs[f.Key] = *f.Value
		}
	}
	if got := figs["breakers/haproxy be_app/s2/opens"]; got != float64(cycles) {
		t.Errorf("opens = %v, want %d", got, cycles)
	}
	if got, ok := figs["breakers/haproxy be_app/s2/timeToClose"]; !ok || got <= 0 || got > 10 {
		t.Errorf("timeToClose = %v (set %v), want the seconds from the last revert to UP", got, ok)
	}
	if got := figs["breakers/haproxy be_app/s1/opens"]; got != 0 {
		t.Errorf("s1 opens = %v, want 0", got)
	}
	return errs, uncs
}

func hold(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}
