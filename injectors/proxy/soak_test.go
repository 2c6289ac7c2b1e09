//go:build linux

package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// TestLatencyTransparentSoak: 300 round trips 50ms apart through one redirected connection, with
// another connection (opened before Apply, so picked up by conntrack mid-stream) used just
// before. Every round trip must come back. Before the REDIRECT rules matched on conntrack state,
// about two runs in three saw the redirected connection reset within these 15 seconds.
func TestLatencyTransparentSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15s soak; skipped with -short")
	}
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	base := dialIn(t, l.A, server)
	rtts(t, base, 5, 5*time.Second)
	inj := NewLatencyInjector()
	apply(t, inj, latencyFault("soak", l.A, "egress", l.B4, port, 50*time.Millisecond, 0, ""), injectors.Env{RunID: "soak"})
	rtts(t, base, 50, 5*time.Second)
	c := dialIn(t, l.A, server)
	msg, buf := make([]byte, 64), make([]byte, 64)
	start := time.Now()
	n := 0
	for ; n < 300 && time.Since(start) < 30*time.Second; n++ {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := roundTrip(c, msg, buf); err != nil {
			t.Fatalf("round trip %d after %s: %v", n, time.Since(start), err)
		}
	}
	t.Logf("%d round trips in %s", n, time.Since(start))
}
