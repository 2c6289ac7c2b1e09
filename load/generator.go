package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/faultline-dev/faultline/runbooks"
)

// maxWindow is how far back the sliding window reaches: the longest guardrail window allowed.
const maxWindow = time.Minute

// stopGrace is how long Stop lets requests in flight finish before abandoning them.
const stopGrace = time.Second

// seriesStep is the resolution of the time series kept for the result document.
const seriesStep = time.Second

// UnreachableError says a load target could not be reached before the load started: the steady
// state cannot hold, and nothing is injected.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("load target %s is unreachable: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Observer receives the load's figures once per second while it runs (faultline's metrics).
type Observer interface {
	LoadPoint(name string, requested, achieved, p50, p95, p99, errorRatio float64)
	LoadResult(name string, code uint16, latency time.Duration, failed bool)
	LoadStopped(name string)
}

// Generator is one running load. Start it with Start; Stop it (idempotent) to end it and get the
// summary. Snapshot may be called concurrently at any time.
type Generator struct {
	name    string
	spec    runbooks.LoadSpec
	success []statusRange
	pacer   pacer
	obs     Observer
	log     *slog.Logger

	win      *window
	inflight *inflight
	started  time.Time

	cancel    context.CancelFunc
	reqCancel context.CancelFunc
	done      chan struct{}

	mu       sync.Mutex
	series   []SeriesPoint
	total    int64
	errs     int64
	codes    map[uint16]int64
	stopped  time.Time
	stopWhy  string
	summary  *Summary
	attacker *vegeta.Attacker
}

// Options vary a Generator.
type Options struct {
	// Name labels the load in metrics and logs (the runbook or experiment it belongs to).
	Name     string
	Observer Observer
	Logger   *slog.Logger
}

// New checks a validated spec and builds a generator; nothing is sent until Start.
func New(spec runbooks.LoadSpec, o Options) (*Generator, error) {
	succ, err := parseStatus(spec.ExpectStatus)
	if err != nil {
		return nil, err
	}
	if spec.MaxDuration == 0 {
		spec.MaxDuration = runbooks.Duration(runbooks.DefaultLoadMaxDuration)
	}
	if spec.MaxRequests == 0 {
		spec.MaxRequests = int64(spec.Rate*spec.MaxDuration.D().Seconds()) + 1
	}
	if spec.Timeout == 0 {
		spec.Timeout = runbooks.Duration(runbooks.DefaultLoadTimeout)
	}
	p := pacer{from: spec.Rate, to: spec.Rate, max: uint64(spec.MaxRequests)}
	if spec.Ramp != nil {
		p.from, p.ramp = spec.Ramp.From, spec.Ramp.Over.D()
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Generator{name: o.Name, spec: spec, success: succ, pacer: p, obs: o.Observer, log: log.With("load", o.Name),
		win: newWindow(maxWindow), inflight: newInflight(), codes: map[uint16]int64{}}, nil
}

// Start checks that every target answers (a transport error is an *UnreachableError; any HTTP
// status is an answer, judged by the guardrails), then starts the traffic in the background.
func (g *Generator) Start(ctx context.Context) error {
	if g.done != nil {
		return errors.New("load already started")
	}
	targets := make([]vegeta.Target, 0, len(g.spec.Targets))
	for _, t := range g.spec.Targets {
		vt := vegeta.Target{Method: t.Method, URL: t.URL, Body: []byte(t.Body), Header: http.Header{}}
		if vt.Method == "" {
			vt.Method = http.MethodGet
		}
		for k, v := range t.Headers {
			vt.Header.Set(k, v)
		}
		if err := g.reach(ctx, vt); err != nil {
			return err
		}
		targets = append(targets, vt)
	}
	workers := uint64(g.spec.Workers)
	if workers == 0 {
		workers = runbooks.DefaultLoadWorkers
	}
	maxWorkers := uint64(g.spec.MaxWorkers)
	if maxWorkers == 0 {
		maxWorkers = runbooks.DefaultLoadMaxWorkers
	}
	conns := g.spec.Connections
	if conns == 0 {
		conns = runbooks.DefaultLoadConnections
	}
	// faultline's own client rather than vegeta's default: no proxy from the environment (load
	// goes where the runbook says, nowhere else), no redirects followed (a 302 is judged as 302),
	// and every request tracked while in flight.
	reqCtx, reqCancel := context.WithCancel(context.WithoutCancel(ctx))
	g.reqCancel = reqCancel
	dialer := &net.Dialer{Timeout: g.spec.Timeout.D(), KeepAlive: 30 * time.Second}
	client := &http.Client{
		Timeout: g.spec.Timeout.D(),
		Transport: trackingTransport{f: g.inflight, ctx: reqCtx, base: &http.Transport{
			DialContext: dialer.DialContext, MaxIdleConnsPerHost: conns, MaxConnsPerHost: int(maxWorkers),
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: g.spec.Timeout.D(),
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	g.attacker = vegeta.NewAttacker(vegeta.Client(client), vegeta.Workers(workers), vegeta.MaxWorkers(maxWorkers), vegeta.MaxBody(0))
	actx, cancel := context.WithCancel(ctx)
	g.cancel, g.done = cancel, make(chan struct{})
	g.started = time.Now()
	results := g.attacker.Attack(vegeta.NewStaticTargeter(targets...), g.pacer, g.spec.MaxDuration.D(), g.name)
	go g.consume(results)
	go func() {
		<-actx.Done()
		g.attacker.Stop()
	}()
	go g.sample(actx)
	g.log.Info("load started", "rate", g.spec.Rate, "targets", len(targets), "maxDuration", g.spec.MaxDuration, "maxRequests", g.spec.MaxRequests)
	return nil
}

// reach sends one request to t with the load's timeout.
func (g *Generator) reach(ctx context.Context, t vegeta.Target) error {
	ctx, cancel := context.WithTimeout(ctx, g.spec.Timeout.D())
	defer cancel()
	req, err := t.Request()
	if err != nil {
		return fmt.Errorf("load target %s: %w", t.URL, err)
	}
	client := &http.Client{Transport: &http.Transport{}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return &UnreachableError{URL: t.URL, Err: err}
	}
	return resp.Body.Close()
}

// consume files every result into the window and the totals, until the attack ends.
func (g *Generator) consume(results <-chan *vegeta.Result) {
	defer close(g.done)
	for r := range results {
		failed := r.Code == 0 || !g.ok(r.Code)
		g.win.add(r.Timestamp.Add(r.Latency), r.Latency, r.Code, failed)
		g.mu.Lock()
		g.total++
		if failed {
			g.errs++
		}
		g.codes[r.Code]++
		g.mu.Unlock()
		if g.obs != nil {
			g.obs.LoadResult(g.name, r.Code, r.Latency, failed)
		}
	}
}

// sample appends one series point per second until the load stops.
func (g *Generator) sample(ctx context.Context) {
	t := time.NewTicker(seriesStep)
	defer t.Stop()
	var lastSent uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.done:
			return
		case now := <-t.C:
			s := g.win.stats(now, seriesStep, g.started)
			sent := g.inflight.sent()
			// Requested is the mean over the same second as Sent, not the rate at its end, which on a
			// ramp would run ahead of what was due.
			el := now.Sub(g.started)
			req := g.pacer.expected(el) - g.pacer.expected(max(0, el-seriesStep))
			p := SeriesPoint{T: now, Requested: req / seriesStep.Seconds(), Sent: float64(sent-lastSent) / seriesStep.Seconds(),
				Throughput: s.Throughput, P50: s.P50.Seconds(), P95: s.P95.Seconds(), P99: s.P99.Seconds(), ErrorRatio: s.ErrorRatio, Requests: s.Requests}
			lastSent = sent
			g.mu.Lock()
			g.series = append(g.series, p)
			g.mu.Unlock()
			if g.obs != nil {
				g.obs.LoadPoint(g.name, p.Requested, p.Throughput, p.P50, p.P95, p.P99, p.ErrorRatio)
			}
		}
	}
}

// Snapshot returns the figures over the last d (at most a minute), with the requests still in
// flight counted at their age in the latency quantiles (see inflight).
func (g *Generator) Snapshot(d time.Duration) Stats {
	now := time.Now()
	return g.win.stats(now, min(d, maxWindow), g.started, g.inflight.ages(now)...)
}

// Started is when the traffic began.
func (g *Generator) Started() time.Time { return g.started }

// Running reports whether traffic is still being sent.
func (g *Generator) Running() bool {
	if g.done == nil {
		return false
	}
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// Stop ends the traffic, waits until the last in-flight request has been counted (bounded by the
// request timeout) and returns the summary. Safe to call more than once.
func (g *Generator) Stop(ctx context.Context) *Summary {
	g.mu.Lock()
	if g.summary != nil {
		defer g.mu.Unlock()
		return g.summary
	}
	g.mu.Unlock()
	why := "stopped"
	if g.done != nil {
		select {
		case <-g.done:
			why = "bound reached (maxDuration or maxRequests)"
		default:
		}
		g.cancel()
		// Requests in flight get a moment to be answered and counted; then they are abandoned,
		// so that a hanging target cannot hold the run for a whole request timeout.
		grace := time.NewTimer(min(stopGrace, g.spec.Timeout.D()))
		select {
		case <-g.done:
		case <-grace.C:
			g.reqCancel()
			why += "; requests still in flight were abandoned"
		case <-ctx.Done():
		}
		grace.Stop()
		g.reqCancel()
		select {
		case <-g.done:
		case <-ctx.Done():
			why += "; stopped waiting for in-flight requests: " + ctx.Err().Error()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped, g.stopWhy = time.Now(), why
	g.summary = g.summarize()
	if g.obs != nil {
		g.obs.LoadStopped(g.name)
	}
	g.log.Info("load stopped", "requests", g.summary.Requests, "achieved", g.summary.Achieved, "requested", g.summary.Requested, "why", why)
	return g.summary
}

func (g *Generator) ok(code uint16) bool {
	for _, r := range g.success {
		if int(code) >= r.lo && int(code) <= r.hi {
			return true
		}
	}
	return false
}

type statusRange struct{ lo, hi int }

func parseStatus(ss []string) ([]statusRange, error) {
	if len(ss) == 0 {
		return []statusRange{{200, 399}}, nil
	}
	out := make([]statusRange, 0, len(ss))
	for _, s := range ss {
		lo, hi, err := runbooks.ParseStatusRange(s)
		if err != nil {
			return nil, err
		}
		out = append(out, statusRange{lo, hi})
	}
	return out, nil
}

// Timeout is the per-request timeout.
func (g *Generator) Timeout() time.Duration { return g.spec.Timeout.D() }

// WaitRequests waits until n requests have completed, at most d (then it returns nil: a slow
// rate is not an error), or until ctx ends (its error).
func (g *Generator) WaitRequests(ctx context.Context, n int64, d time.Duration) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		g.mu.Lock()
		total := g.total
		g.mu.Unlock()
		if total >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return nil
		case <-g.done:
			return nil
		case <-tick.C:
		}
	}
}
