package load

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// BenchmarkLoadAccuracy drives a real loopback HTTP server at each rate, first
// with a plain net/http client loop paced the same way (the baseline), then with the load
// generator, and reports achieved/requested for both and the generator's p99 latency against the
// baseline's. The machine is shared, so only same-run comparisons mean anything.
//
//	go test ./load -run '^$' -bench LoadAccuracy -benchtime 1x
func BenchmarkLoadAccuracy(b *testing.B) {
	// Rounds alternate baseline and generator so that a burst of load from elsewhere on the
	// machine hits both alike; the medians of the rounds are reported.
	const rounds, roundLen = 3, 3 * time.Second
	for _, rate := range []float64{1000, 5000} {
		b.Run(formatRate(rate), func(b *testing.B) {
			srv := startServer(b)
			for range b.N {
				var gAch, bAch, gP99, bP99 []float64
				for range rounds {
					a, p := baselineLoop(b, srv.URL, rate, roundLen)
					bAch, bP99 = append(bAch, a/rate), append(bP99, float64(p.Microseconds()))
					a, p = generatorRound(b, srv.URL, rate, roundLen)
					gAch, gP99 = append(gAch, a/rate), append(gP99, float64(p.Microseconds()))
				}
				b.ReportMetric(median(gAch), "achieved/requested")
				b.ReportMetric(median(bAch), "baseline-achieved/requested")
				b.ReportMetric(median(gP99), "p99-µs")
				b.ReportMetric(median(bP99), "baseline-p99-µs")
			}
		})
	}
}

// generatorRound runs the load generator for d at rate; it returns the achieved rate and the
// client-side p99 of the whole round.
func generatorRound(b *testing.B, url string, rate float64, d time.Duration) (float64, time.Duration) {
	b.Helper()
	s := spec(url, rate)
	s.MaxDuration = runbooks.Duration(d)
	g, err := New(s, Options{Name: "bench", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	for g.Running() {
		_ = g.WaitRequests(context.Background(), 1<<62, 100*time.Millisecond)
	}
	st := g.win.stats(time.Now(), maxWindow, g.started)
	sum := g.Stop(context.Background())
	return sum.Achieved, st.P99
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func formatRate(r float64) string { return fmt.Sprintf("rate=%.0f", r) }

// baselineLoop sends requests at rate for d with a bare net/http client and 100 workers, and
// returns the achieved rate and the p99 latency.
func baselineLoop(b *testing.B, url string, rate float64, d time.Duration) (float64, time.Duration) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 5 * time.Second}
	ticks := make(chan struct{}, 1000)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ticks {
				start := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				el := time.Since(start)
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	p := pacer{from: rate, to: rate}
	var hits uint64
	for time.Since(start) < d {
		wait, _ := p.Pace(time.Since(start), hits)
		if wait > 0 {
			t := time.NewTimer(wait)
			<-t.C
			continue
		}
		ticks <- struct{}{}
		hits++
	}
	close(ticks)
	wg.Wait()
	took := time.Since(start)
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0
	}
	return float64(len(lat)) / took.Seconds(), quantile(lat, 0.99)
}
