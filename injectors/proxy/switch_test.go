//go:build linux

package proxy

import (
	"testing"
	"time"
)

// When SetToxics returns, the toxics are in force on every open connection: the next round trip
// is delayed, and after they are removed the next one is not. Twenty toggles, because the race
// this guards against (a blocked read woken by data before it sees the change) is intermittent,
// most of all under the race detector.
func TestToxicsInForceWhenSetToxicsReturns(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String())
	c := dial(t, p.Addr().String())
	c.SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	const delay = 10 * time.Millisecond
	buf := make([]byte, 8)
	rt := func() time.Duration {
		t.Helper()
		d, err := roundTrip(c, []byte("12345678"), buf)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for round := range 20 {
		if err := p.SetToxics(Toxic{Name: "l", Latency: &Latency{Delay: delay}}); err != nil {
			t.Fatal(err)
		}
		if d := rt(); d < delay {
			t.Fatalf("round %d: first round trip after SetToxics took %s, want at least %s", round, d, delay)
		}
		if err := p.SetToxics(); err != nil {
			t.Fatal(err)
		}
		if d := rt(); d >= delay {
			t.Fatalf("round %d: first round trip after the toxic was removed took %s", round, d)
		}
	}
}
