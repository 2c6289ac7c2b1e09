package toxiproxy

import (
	"testing"

	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// Both proxies relay the data, and both add the 50 ms toxic to a round trip: the benchmarks
// compare like with like. Short, so that scripts/test runs it on every change.
func TestRelaysCompareLikeWithLike(t *testing.T) {
	for _, tc := range toxics {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelays(t, local.Echo, tc.latency)
			msg, buf := []byte("ping through the relay"), make([]byte, 64)
			for name, addr := range map[string]string{"faultline": r.faultline, "toxiproxy": r.toxiproxy} {
				d, err := roundTrip(dial(t, addr), msg, buf)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if string(buf[:len(msg)]) != string(msg) {
					t.Fatalf("%s relayed %q, want %q", name, buf[:len(msg)], msg)
				}
				// Only a lower bound: a busy machine may stretch a round trip, never shorten a delay.
				if tc.latency && d < delay {
					t.Fatalf("%s: a round trip took %v under a %v latency toxic", name, d, delay)
				}
			}
		})
	}
	t.Run("throughput", func(t *testing.T) {
		r := startRelays(t, source, false)
		buf := make([]byte, 256<<10)
		for _, addr := range []string{r.faultline, r.toxiproxy} {
			pull(t, addr, 1<<20, buf) // fails the test unless the whole MiB arrives
		}
	})
}
