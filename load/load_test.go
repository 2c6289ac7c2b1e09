package load

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// server is a real HTTP server on loopback whose latency and status the test controls.
type server struct {
	*httptest.Server
	delay    atomic.Int64 // nanoseconds
	status   atomic.Int32
	requests atomic.Int64
}

func startServer(t testing.TB) *server {
	t.Helper()
	s := &server{}
	s.status.Store(200)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

func spec(url string, rate float64) runbooks.LoadSpec {
	return runbooks.LoadSpec{Targets: []runbooks.LoadTarget{{URL: url}}, Rate: rate, Timeout: runbooks.Duration(2 * time.Second),
		MaxDuration: runbooks.Duration(time.Minute)}
}

func startGen(t *testing.T, s runbooks.LoadSpec) *Generator {
	t.Helper()
	g, err := New(s, Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background()) })
	return g
}

func loadProbe(t *testing.T, g *Generator, p runbooks.LoadProbe) guardrail.Probe {
	t.Helper()
	hub := &Hub{}
	hub.Push(g)
	pr, err := NewProbe(&p, runbooks.Guardrail{Name: "p"}, guardrail.ProbeEnv{Extra: map[string]any{ProbeKind: hub}})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// The p95 guardrail holds while the server is fast and trips once it slows, with the slow
// latency as its value.
func TestProbeTripsWhenServerSlowsAndNotBefore(t *testing.T) {
	srv := startServer(t)
	g := startGen(t, spec(srv.URL, 100))
	pr := loadProbe(t, g, runbooks.LoadProbe{P95: &runbooks.LoadLatencyLimit{Max: runbooks.Duration(80 * time.Millisecond)},
		Window: runbooks.Duration(time.Second)})
	if err := g.WaitRequests(context.Background(), 20, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		obs, err := pr.Check(context.Background())
		if err != nil || !obs.Pass {
			t.Fatalf("evaluation %d while fast: pass=%v err=%v detail=%s", i, obs.Pass, err, obs.Detail)
		}
		waitTick(t, 250*time.Millisecond)
	}
	srv.delay.Store(int64(150 * time.Millisecond))
	slowed := time.Now()
	local.WaitFor(t, 15*time.Second, "the p95 guardrail to fail", func() bool {
		obs, err := pr.Check(context.Background())
		return err == nil && !obs.Pass && obs.Value != nil && *obs.Value >= 0.15
	})
	t.Logf("p95 guardrail failed %s after the server slowed", time.Since(slowed).Round(time.Millisecond))
}

// waitTick paces evaluations like the engine's interval does.
func waitTick(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	<-timer.C
}

func TestErrorRatioCountsStatusAndExpectStatus(t *testing.T) {
	srv := startServer(t)
	srv.status.Store(503)
	s := spec(srv.URL, 100)
	g := startGen(t, s)
	pr := loadProbe(t, g, runbooks.LoadProbe{ErrorRatio: &runbooks.LoadRatioLimit{Max: 0.01}, Window: runbooks.Duration(time.Second)})
	local.WaitFor(t, 10*time.Second, "the error-ratio guardrail to fail on 503s", func() bool {
		obs, err := pr.Check(context.Background())
		return err == nil && !obs.Pass && *obs.Value > 0.99
	})
	// The same status declared a success passes.
	s.ExpectStatus = []string{"503"}
	g2 := startGen(t, s)
	pr2 := loadProbe(t, g2, runbooks.LoadProbe{ErrorRatio: &runbooks.LoadRatioLimit{Max: 0.01}, Window: runbooks.Duration(time.Second)})
	local.WaitFor(t, 10*time.Second, "503 as expected status to pass", func() bool {
		obs, err := pr2.Check(context.Background())
		return err == nil && obs.Pass && *obs.Value == 0
	})
}

func TestAchievedRateAndShortfallReported(t *testing.T) {
	srv := startServer(t)
	g := startGen(t, spec(srv.URL, 200))
	if err := g.WaitRequests(context.Background(), 400, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	sum := g.Stop(context.Background())
	if sum.Requested < 150 || sum.Requested > 250 {
		t.Fatalf("requested %.1f/s, want about 200", sum.Requested)
	}
	if sum.Achieved < 0.8*sum.Requested || sum.RateShortfall != "" {
		t.Fatalf("achieved %.1f/s of %.1f/s (%q), want close to requested on an idle target", sum.Achieved, sum.Requested, sum.RateShortfall)
	}
	if len(sum.Series) == 0 || sum.Codes["200"] != sum.Requests {
		t.Fatalf("series %d points, codes %v, requests %d", len(sum.Series), sum.Codes, sum.Requests)
	}

	// Two workers against a 100 ms server can complete about 20 requests a second: asking for
	// 100 must be reported as a shortfall, not silently delivered at 20.
	srv.delay.Store(int64(100 * time.Millisecond))
	s := spec(srv.URL, 100)
	s.Workers, s.MaxWorkers = 2, 2
	g2 := startGen(t, s)
	if err := g2.WaitRequests(context.Background(), 40, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	sum2 := g2.Stop(context.Background())
	if sum2.RateShortfall == "" || sum2.Achieved > 0.5*sum2.Requested {
		t.Fatalf("achieved %.1f/s of %.1f/s with shortfall %q; want a reported shortfall", sum2.Achieved, sum2.Requested, sum2.RateShortfall)
	}
	t.Logf("shortfall: %s", sum2.RateShortfall)
}

// A load stops by itself at maxRequests and at maxDuration, whoever forgets to stop it.
func TestBoundsStopTheLoadByThemselves(t *testing.T) {
	srv := startServer(t)
	s := spec(srv.URL, 500)
	s.MaxRequests = 50
	g := startGen(t, s)
	local.WaitFor(t, 10*time.Second, "the load to stop at maxRequests", func() bool { return !g.Running() })
	// One reachability request per target before the load, then exactly maxRequests.
	if n := srv.requests.Load(); n != 51 {
		t.Fatalf("server saw %d requests, want exactly 1 + maxRequests 50", n)
	}
	if sum := g.Stop(context.Background()); sum.Stopped != "bound reached (maxDuration or maxRequests)" {
		t.Fatalf("stopped = %q", sum.Stopped)
	}

	s = spec(srv.URL, 50)
	s.MaxDuration = runbooks.Duration(500 * time.Millisecond)
	start := time.Now()
	g2 := startGen(t, s)
	local.WaitFor(t, 10*time.Second, "the load to stop at maxDuration", func() bool { return !g2.Running() })
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("stopped after %s, before maxDuration", took)
	}
}

func TestUnreachableTargetIsReportedBeforeAnyLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	g, err := New(spec("http://"+addr+"/", 10), Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Start(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) || g.Running() {
		t.Fatalf("Start = %v (running %v), want *UnreachableError and no load", err, g.Running())
	}
}

func TestProbeWithoutLoadOrTooFewRequestsIsAnError(t *testing.T) {
	hub := &Hub{}
	pr, err := NewProbe(&runbooks.LoadProbe{P95: &runbooks.LoadLatencyLimit{Max: runbooks.Duration(time.Second)}}, runbooks.Guardrail{},
		guardrail.ProbeEnv{Extra: map[string]any{ProbeKind: hub}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Check(context.Background()); !errors.Is(err, ErrNoLoad) {
		t.Fatalf("Check with no load = %v, want ErrNoLoad", err)
	}
	srv := startServer(t)
	srv.delay.Store(int64(time.Second)) // nothing completes within the window
	g := startGen(t, spec(srv.URL, 5))
	hub.Push(g)
	if _, err := pr.Check(context.Background()); err == nil {
		t.Fatal("Check with no completed requests passed; want an evaluation error (fail closed)")
	}
	if _, err := NewProbe(&runbooks.LoadProbe{}, runbooks.Guardrail{}, guardrail.ProbeEnv{}); err == nil {
		t.Fatal("a load probe without a hub was built")
	}
}

func TestRampPacer(t *testing.T) {
	p := pacer{from: 10, to: 110, ramp: 10 * time.Second}
	for _, c := range []struct {
		at         time.Duration
		rate, hits float64
	}{
		{0, 10, 0}, {5 * time.Second, 60, 175}, {10 * time.Second, 110, 600}, {12 * time.Second, 110, 820},
	} {
		if r := p.Rate(c.at); r != c.rate {
			t.Errorf("Rate(%s) = %g, want %g", c.at, r, c.rate)
		}
		if h := p.expected(c.at); h < c.hits-1e-9 || h > c.hits+1e-9 {
			t.Errorf("expected(%s) = %g, want %g", c.at, h, c.hits)
		}
	}
	if _, stop := (pacer{to: 10, max: 3}).Pace(time.Second, 3); !stop {
		t.Error("pacer did not stop at max")
	}
	if w, _ := (pacer{to: 10}).Pace(0, 1); w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Errorf("wait for the second hit at 10/s = %s, want 100ms", w)
	}
}

func TestWindowQuantilesAndSpan(t *testing.T) {
	w := newWindow(time.Minute)
	base := time.Now().Truncate(time.Second)
	for i := 1; i <= 100; i++ {
		w.add(base.Add(time.Duration(i)*5*time.Millisecond), time.Duration(i)*time.Millisecond, 200, i > 90)
	}
	s := w.stats(base.Add(time.Second), 10*time.Second, base.Add(-time.Hour))
	if s.Requests != 100 || s.Errors != 10 || s.P50 != 50*time.Millisecond || s.P95 != 95*time.Millisecond || s.P99 != 99*time.Millisecond {
		t.Fatalf("stats = %+v", s)
	}
	// A window that starts after the requests sees none of them.
	if s := w.stats(base.Add(20*time.Second), time.Second, base); s.Requests != 0 {
		t.Fatalf("requests in a later window = %d", s.Requests)
	}
	// A young load is judged over its own life, not over the whole window.
	if s := w.stats(base.Add(time.Second), 10*time.Second, base); s.Window != time.Second {
		t.Fatalf("window = %s, want the load's 1s life", s.Window)
	}
}

// A target that stops answering is seen through the requests waiting on it, long before any of
// them times out.
func TestHangingTargetIsSeenBeforeItsRequestsTimeOut(t *testing.T) {
	srv := startServer(t)
	s := spec(srv.URL, 100)
	s.Timeout = runbooks.Duration(20 * time.Second)
	g := startGen(t, s)
	pr := loadProbe(t, g, runbooks.LoadProbe{P95: &runbooks.LoadLatencyLimit{Max: runbooks.Duration(300 * time.Millisecond)},
		Window: runbooks.Duration(5 * time.Second)})
	if err := g.WaitRequests(context.Background(), 50, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.delay.Store(int64(time.Minute))
	hung := time.Now()
	local.WaitFor(t, 15*time.Second, "the p95 guardrail to fail on a hanging target", func() bool {
		obs, err := pr.Check(context.Background())
		return err == nil && !obs.Pass
	})
	if took := time.Since(hung); took > 10*time.Second {
		t.Fatalf("a hang was noticed after %s; the requests' timeout is 20s and the limit 300ms", took)
	}
	t.Logf("hang noticed after %s", time.Since(hung).Round(time.Millisecond))
}

func TestProbeLimitIsTheFirstLimit(t *testing.T) {
	pr, err := NewProbe(&runbooks.LoadProbe{P95: &runbooks.LoadLatencyLimit{Max: runbooks.Duration(300 * time.Millisecond)},
		ErrorRatio: &runbooks.LoadRatioLimit{Max: 0.01}}, runbooks.Guardrail{}, guardrail.ProbeEnv{Extra: map[string]any{ProbeKind: &Hub{}}})
	if err != nil {
		t.Fatal(err)
	}
	l, ok := pr.(guardrail.Limiter)
	if !ok {
		t.Fatal("the load probe gives the reports no limit")
	}
	if v, op, ok := l.Limit(); !ok || v != 0.3 || op != "<" {
		t.Fatalf("Limit() = %v %q %v, want 0.3 < (p95's)", v, op, ok)
	}
}
