package recorder_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/breakersvc"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

// BenchmarkBreakerAccuracy: transition time error against OnStateChange, over ≥30 transitions of
// real gobreaker breakers with opens shorter than the scrape (scrape 1s, live interval 1s).
func BenchmarkBreakerAccuracy(b *testing.B) {
	for range b.N {
		run := runGobreakerScenario(b, []string{"pay", "ship"}, 16, time.Second)
		errs, _ := transitionErrors(b, run)
		short := 0
		for _, g := range run.doc.Groups {
			for _, br := range g.Breakers {
				short += br.ShortOpens
			}
		}
		b.ReportMetric(float64(len(errs)), "transitions")
		b.ReportMetric(quantile(errs, 0.5), "p50-err-s")
		b.ReportMetric(quantile(errs, 0.99), "p99-err-s")
		b.ReportMetric(float64(short), "short-opens-seen")
	}
}

// BenchmarkBreakers200Cost: the cost of recording 200 breakers (one exporter, 200 gobreaker
// series, a few flapping every second) for FAULTLINE_BENCH_DURATION (default 1m): the process's
// CPU seconds and RSS in a phase without the recorder and then with it, in the same run.
// Prometheus is a separate process and not counted; the exporter and the flapping driver run in
// both phases.
func BenchmarkBreakers200Cost(b *testing.B) {
	d := time.Minute
	if s := os.Getenv("FAULTLINE_BENCH_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			b.Fatal(err)
		}
	}
	srv := prom.Start(b, prom.WithScrapeInterval(time.Second))
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("cb-%03d", i))
	}
	svc, err := breakersvc.New(srv.Target.Registry, breakersvc.Config{Names: names, OpenFor: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*d+5*time.Minute)
	defer cancel()
	if _, err := srv.WaitVector(ctx, `gobreaker_state{state="closed"} == 1`, func(v model.Vector) bool { return len(v) == 200 }); err != nil {
		b.Fatal(err)
	}
	flap := func(ctx context.Context) {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			for range 5 {
				n := names[rng.IntN(len(names))]
				if svc.State(n) == "closed" {
					for range 3 {
						_ = svc.Call(n, false)
					}
				} else {
					_ = svc.Call(n, true)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}
	phase := func(record bool) (cpu float64, rss float64) {
		pctx, stop := context.WithTimeout(ctx, d)
		defer stop()
		before := cpuSeconds(b)
		go flap(pctx)
		var sess experiments.RecorderSession
		first := time.Now()
		if record {
			x := &runbooks.Experiment{Name: "cost", Record: &runbooks.Record{Breakers: []runbooks.BreakerSpec{{Preset: "gobreaker", Address: srv.URL, Settle: runbooks.Duration(time.Second)}}}}
			if sess, err = (&recorder.Breakers{}).Start(ctx, x, injectors.Env{}); err != nil {
				b.Fatal(err)
			}
			sess.FaultApplied(experiments.AppliedFault{Name: "cost", Kind: "test", At: first})
		}
		<-pctx.Done()
		if record {
			rec := sess.Finish(ctx, experiments.RecordingEnd{FirstFaultAt: first, RevertedAt: time.Now()})
			doc := rec.Data.(*recorder.BreakersDocument)
			n := 0
			for _, br := range doc.Groups[0].Breakers {
				n += len(br.Transitions)
			}
			if len(doc.Groups[0].Breakers) != 200 {
				b.Fatalf("%d breakers recorded, want 200", len(doc.Groups[0].Breakers))
			}
			b.Logf("recorded 200 breakers, %d transitions, %d figures", n, len(rec.Figures))
		}
		return cpuSeconds(b) - before, rssMB(b)
	}
	for range b.N {
		cpu0, rss0 := phase(false)
		cpu1, rss1 := phase(true)
		b.Logf("%s without the recorder: %.2f CPU-s, RSS %.1f MB; with it: %.2f CPU-s, RSS %.1f MB", d, cpu0, rss0, cpu1, rss1)
		b.ReportMetric(cpu0, "cpu-s-without")
		b.ReportMetric(cpu1, "cpu-s-with")
		b.ReportMetric(rss0, "rss-MB-without")
		b.ReportMetric(rss1, "rss-MB-with")
	}
}

func cpuSeconds(tb testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func rssMB(tb testing.TB) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
