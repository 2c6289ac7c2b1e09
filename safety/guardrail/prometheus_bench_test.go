package guardrail_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// BenchmarkPrometheusHaltLatency measures, over real trips through experiments.Engine, the time
// from the moment the test flips a metric on a target scraped by a real Prometheus to the last
// fault (a process-pause of a real child) reverted, and breaks it down:
//
//	scrape  flip → the first scrape of the target after the flip (served by the target)
//	eval    that scrape → the breach (result halt.at): ingestion + wait for the next evaluation + query
//	revert  breach → last fault reverted (result halt.lastRevertedAt)
//
// Guardrail interval 250ms, for: 1; the flip comes at a random offset into the interval. The query
// reads the value through last_over_time so that a scrape failing on a loaded machine (which marks
// the series stale) is not a breach; how soon a new value is seen is the same. Run with
// -benchtime=50x (or more) for a p99 worth reading.
func BenchmarkPrometheusHaltLatency(b *testing.B) {
	for _, scrape := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond} {
		b.Run("scrape="+scrape.String(), func(b *testing.B) { benchHaltLatency(b, scrape) })
	}
}

func benchHaltLatency(b *testing.B, scrape time.Duration) {
	const interval = 250 * time.Millisecond
	s := prom.Start(b, prom.WithScrapeInterval(scrape))
	v := local.StartVictims(b, 1)[0]
	reg, err := injectors.NewRegistry(process.Pause{})
	if err != nil {
		b.Fatal(err)
	}
	led, err := ledger.OpenFile(filepath.Join(b.TempDir(), "ledger.db"))
	if err != nil {
		b.Fatal(err)
	}
	eng := &experiments.Engine{Injectors: reg, Probes: guardrail.DefaultProbes(), Ledger: led, Logger: slog.New(slog.DiscardHandler)}
	rb, err := runbooks.Parse("bench.yaml", []byte(fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: bench}
environment: {name: test, type: local}
guardrails:
  - name: errors
    interval: 250ms
    prometheus: {address: %q, query: 'max(last_over_time(test_value{series="bench"}[2s]))', op: "<", threshold: 1, timeout: 1s}
experiments:
  - name: x
    duration: 60s
    faults: [{processPause: {pidFile: %q}}]
    recovery: {within: 5s}
`, s.URL, v.PidFile)))
	if err != nil {
		b.Fatal(err)
	}
	gauge := s.Target.Value.WithLabelValues("bench")
	gauge.Set(0)
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = s.WaitIngested(wctx, time.Now())
	cancel()
	if err != nil {
		b.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	var total, scrapeD, evalD, revertD []time.Duration
	for b.Loop() {
		flip := make(chan time.Time, 1)
		offset := time.Duration(rng.Int64N(int64(interval)))
		eng.Progress = func(p experiments.Progress) {
			switch p.Phase {
			case "observe":
				go func() {
					time.Sleep(offset) // the random phase against the evaluation clock is the point
					at := time.Now()
					gauge.Set(5)
					flip <- at
				}()
			case "after":
				gauge.Set(0) // recover, so the after phase ends at once
			}
		}
		res := eng.Run(ctx, rb, experiments.RunOptions{})
		if res.Verdict != experiments.Halted || res.Halt == nil || res.Halt.LastRevertedAt == nil {
			b.Fatalf("trip ended %s: %s", res.Verdict, res.Reason)
		}
		flipped := <-flip
		if res.Halt.At.Before(flipped) {
			b.Fatalf("halted before the flip: %s", res.Reason)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		scrapedAt, err := s.Target.ScrapeAfter(sctx, flipped)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		total = append(total, res.Halt.LastRevertedAt.Sub(flipped))
		scrapeD = append(scrapeD, scrapedAt.Sub(flipped))
		evalD = append(evalD, res.Halt.At.Sub(scrapedAt))
		revertD = append(revertD, res.Halt.LastRevertedAt.Sub(res.Halt.At))
	}
	target := scrape + interval + 200*time.Millisecond
	p50, p99 := pct(total, 0.5), pct(total, 0.99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(float64(p99)/float64(target), "p99/target")
	b.ReportMetric(float64(len(total)), "trips")
	b.Logf("scrape %s, interval %s, %d trips; target p99 ≤ %s", scrape, interval, len(total), target)
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"total (flip → last revert)", total}, {"scrape (flip → first scrape)", scrapeD}, {"eval (scrape → breach)", evalD}, {"revert (breach → last revert)", revertD}} {
		b.Logf("  %-30s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms", row.name, ms(pct(row.d, 0.5)), ms(pct(row.d, 0.99)), ms(pct(row.d, 1)))
	}
}

// BenchmarkPrometheusGuardrails20 measures the CPU cost of evaluating 20 Prometheus guardrails
// (8 plain queries, 6 error-ratio SLOs, 6 latency SLOs) against a real Prometheus.
//
//	cycle    one concurrent evaluation of all 20 (guardrail.CheckAll), back to back; CPU per cycle
//	watch-1s guardrail.Watch with interval 1s for b.N seconds, as during an experiment
//
// CPU is this process's user+system time (getrusage) minus a baseline measured in the same run:
// the same process idle for the same wall time (the test target is still scraped and the test
// traffic still runs). Prometheus's own CPU (from /proc) is reported separately.
func BenchmarkPrometheusGuardrails20(b *testing.B) {
	s := prom.Start(b)
	traffic := startBenchTraffic(s)
	b.Cleanup(traffic)
	gs := compileMany(b, s.URL, 20)
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.WaitIngested(wctx, time.Now().Add(3*s.ScrapeInterval)); err != nil {
		b.Fatal(err)
	}
	if !guardrail.CheckAll(ctx, gs, func(g *guardrail.Guardrail, o guardrail.Observation) {
		if !o.Pass {
			b.Errorf("%s: %s %s", g.Name, o.Detail, o.Error)
		}
	}) {
		b.Fatal("the guardrails must pass before measuring")
	}

	b.Run("cycle", func(b *testing.B) {
		cpu0, prom0, wall0 := cpuNow(b), procCPU(b, s.Pid()), time.Now()
		for b.Loop() {
			guardrail.CheckAll(ctx, gs, func(*guardrail.Guardrail, guardrail.Observation) {})
		}
		reportCPU(b, s, b.N, cpu0, prom0, wall0)
	})
	b.Run("watch-1s", func(b *testing.B) {
		for i := range gs {
			gs[i].Interval = time.Second
		}
		cycles := 0
		cpu0, prom0, wall0 := cpuNow(b), procCPU(b, s.Pid()), time.Now()
		for b.Loop() {
			// One Watch round per iteration: Watch evaluates at once, then every interval.
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			guardrail.Watch(wctx, gs, func(*guardrail.Guardrail, guardrail.Observation) {}, func(guardrail.Breach) {})
			cancel()
			cycles++
		}
		reportCPU(b, s, cycles, cpu0, prom0, wall0)
	})
}

func reportCPU(b *testing.B, s *prom.Server, cycles int, cpu0, prom0 time.Duration, wall0 time.Time) {
	b.StopTimer()
	cpu, promCPU, wall := cpuNow(b)-cpu0, procCPU(b, s.Pid())-prom0, time.Since(wall0)
	// Baseline: the same process doing nothing for the same wall time.
	base0, pbase0 := cpuNow(b), procCPU(b, s.Pid())
	idle := time.NewTimer(wall)
	<-idle.C
	base, pbase := cpuNow(b)-base0, procCPU(b, s.Pid())-pbase0
	net := max(cpu-base, 0)
	perCycle := net / time.Duration(cycles)
	b.ReportMetric(ms(perCycle), "cpu-ms/cycle")
	b.ReportMetric(100*float64(perCycle)/float64(time.Second), "%core@1s")
	b.ReportMetric(ms(max(promCPU-pbase, 0)/time.Duration(cycles)), "prom-cpu-ms/cycle")
	b.Logf("%d cycles in %s: faultline process CPU %s, idle baseline %s over the same wall time → %.2f ms per cycle = %.2f%% of one core at a 1s interval; Prometheus CPU %s (baseline %s)",
		cycles, wall.Round(time.Millisecond), cpu, base, ms(perCycle), 100*float64(perCycle)/float64(time.Second), promCPU, pbase)
}

func compileMany(b *testing.B, addr string, n int) []*guardrail.Guardrail {
	var y strings.Builder
	y.WriteString("apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: t}\nenvironment: {name: t, type: local}\nguardrails:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - name: g%d\n    interval: 1s\n    prometheus:\n      address: %s\n", i, addr)
		switch {
		case i < 8:
			fmt.Fprintf(&y, "      query: 'max(test_value{series=\"s%d\"})'\n      op: \"<\"\n      threshold: 100\n      onEmpty: ignore\n", i%4)
		case i < 14:
			y.WriteString("      slo: {errorRatio: {metric: test_requests_total, errorSelector: 'code=~\"5..\"', selector: 'service=\"checkout\"', window: 2s, max: 0.05}}\n")
		default:
			y.WriteString("      slo: {latency: {histogram: test_request_duration_seconds, quantile: 0.99, selector: 'route=\"/pay\"', window: 2s, max: 0.3}}\n")
		}
	}
	y.WriteString("experiments:\n  - name: x\n    duration: 1s\n    faults: [{processPause: {exe: sleep}}]\n")
	rb, err := runbooks.Parse("bench.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	gs, err := guardrail.Compile(rb.Guardrails, guardrail.DefaultProbes(), guardrail.ProbeEnv{})
	if err != nil {
		b.Fatal(err)
	}
	return gs
}

// startBenchTraffic feeds the SLO metrics every 20ms (for at most 10 minutes) until stopped.
func startBenchTraffic(s *prom.Server) (stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	done := make(chan struct{})
	for i := range 4 {
		s.Target.Value.WithLabelValues(fmt.Sprintf("s%d", i)).Set(float64(i))
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s.Target.Requests.WithLabelValues("checkout", "200").Add(99)
			s.Target.Requests.WithLabelValues("checkout", "500").Add(1)
			s.Target.Latency.WithLabelValues("/pay").Observe(0.15)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// cpuNow is this process's user+system CPU time.
func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is another process's user+system CPU time from /proc/PID/stat (clock ticks of 10ms).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func pct(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
