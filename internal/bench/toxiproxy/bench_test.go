package toxiproxy

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// toxics are the two cases of the comparison.
var toxics = []struct {
	name    string
	latency bool
}{{"no-toxic", false}, {"latency-50ms", true}}

// BenchmarkThroughput: each iteration moves 8 MiB from a loopback server directly, through
// faultline's proxy and through Toxiproxy, one after the other so that all three see the same
// machine load, and reports each rate and faultline's against Toxiproxy's (target: ≥ 1).
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range toxics {
		b.Run(tc.name, func(b *testing.B) {
			r := startRelays(b, source, tc.latency)
			const n = 8 << 20
			buf := make([]byte, 256<<10)
			var d, f, x time.Duration
			b.SetBytes(3 * n)
			b.ResetTimer()
			for range b.N {
				d += pull(b, r.direct, n, buf)
				f += pull(b, r.faultline, n, buf)
				x += pull(b, r.toxiproxy, n, buf)
			}
			b.StopTimer()
			rate := func(t time.Duration) float64 { return float64(n*b.N) / t.Seconds() / 1e6 }
			b.ReportMetric(rate(d), "direct-MB/s")
			b.ReportMetric(rate(f), "faultline-MB/s")
			b.ReportMetric(rate(x), "toxiproxy-MB/s")
			b.ReportMetric(rate(f)/rate(x), "faultline/toxiproxy")
		})
	}
}

// BenchmarkAddedLatency: 64-byte requests/responses directly, through faultline and through
// Toxiproxy, over long-lived loopback connections, path after path in each iteration; it reports
// what each proxy adds to the direct round trip at p50 and p99 (target: faultline ≤ Toxiproxy).
// With no toxic an iteration is 10 round trips in a row on each path; with the 50 ms toxic it is
// one round trip on each of 8 connections of a path at once (8 in a row would take 0.4 s), and
// the added latency includes the 50 ms.
func BenchmarkAddedLatency(b *testing.B) {
	for _, tc := range toxics {
		b.Run(tc.name, func(b *testing.B) {
			r := startRelays(b, local.Echo, tc.latency)
			par, serial := 1, 10
			if tc.latency {
				par, serial = 8, 1
			}
			paths := [][]*net.TCPConn{}
			for _, addr := range []string{r.direct, r.faultline, r.toxiproxy} {
				var cs []*net.TCPConn
				for range par {
					cs = append(cs, dial(b, addr))
				}
				paths = append(paths, cs)
			}
			samples := make([][]time.Duration, len(paths))
			var mu sync.Mutex
			round := func(i int) error {
				errs := make(chan error, par)
				for _, c := range paths[i] {
					go func() {
						msg, buf := make([]byte, 64), make([]byte, 64)
						for range serial {
							d, err := roundTrip(c, msg, buf)
							if err != nil {
								errs <- err
								return
							}
							mu.Lock()
							samples[i] = append(samples[i], d)
							mu.Unlock()
						}
						errs <- nil
					}()
				}
				var first error
				for range par {
					if err := <-errs; err != nil && first == nil {
						first = err
					}
				}
				return first
			}
			for i := range paths { // warm up each path
				if err := round(i); err != nil {
					b.Fatal(err)
				}
				samples[i] = samples[i][:0]
			}
			b.ResetTimer()
			for range b.N {
				for i := range paths {
					if err := round(i); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			for _, s := range samples {
				slices.Sort(s)
			}
			us := func(d time.Duration) float64 { return float64(d) / 1e3 }
			for i, name := range []string{"faultline", "toxiproxy"} {
				b.ReportMetric(us(percentile(samples[i+1], 0.5)-percentile(samples[0], 0.5)), name+"-added-p50-µs")
				b.ReportMetric(us(percentile(samples[i+1], 0.99)-percentile(samples[0], 0.99)), name+"-added-p99-µs")
			}
		})
	}
}
