package experiments

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// BenchmarkHaltLatencyHTTP measures, over real trips, the time from an HTTP server turning
// unhealthy to the last fault reverted, with the guardrail at 250 ms and `for: 1`. The flip comes
// at a random offset into the interval, so the figure covers every phase of the evaluation clock.
// Run with -benchtime=50x (or more) for a p99 worth reading.
func BenchmarkHaltLatencyHTTP(b *testing.B) {
	const interval = 250 * time.Millisecond
	v := local.StartVictims(b, 1)[0]
	h := local.StartHealth(b)
	eng, _ := newEngine(b, nil)
	eng.RecoveryWindow = time.Second
	rb := parse(b, header+`guardrails:
  - {name: g, interval: 250ms, http: {url: %q, timeout: 1s}}
experiments:
  - name: x
    duration: 60s
    faults: [{processPause: {pidFile: %q}}]
`, h.URL, v.PidFile)
	rng := rand.New(rand.NewPCG(1, 2))
	var lat []time.Duration
	for b.Loop() {
		h.Healthy.Store(true)
		flip := make(chan time.Time, 1)
		eng.Progress = func(p Progress) {
			if p.Phase == "observe" {
				go func() {
					time.Sleep(time.Duration(rng.Int64N(int64(interval)))) // the random phase is the point
					h.Healthy.Store(false)
					flip <- time.Now()
				}()
			}
			if p.Phase == "after" {
				h.Healthy.Store(true)
			}
		}
		res := eng.Run(context.Background(), rb, RunOptions{})
		if res.Verdict != Halted || res.Halt.LastRevertedAt == nil {
			b.Fatalf("trip ended %s: %s", res.Verdict, res.Reason)
		}
		lat = append(lat, res.Halt.LastRevertedAt.Sub(<-flip))
	}
	reportLatency(b, lat, interval)
}

func reportLatency(b *testing.B, lat []time.Duration, interval time.Duration) {
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(p(0.99))/float64(interval), "p99/interval")
	b.ReportMetric(float64(len(lat)), "trips")
	b.Logf("halt latency over %d trips: p50 %s p99 %s max %s (interval %s)", len(lat), p(0.5), p(0.99), lat[len(lat)-1], interval)
}
