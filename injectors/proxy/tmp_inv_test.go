//go:build linux

package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

func TestTmpInvalid(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	base := dialIn(t, l.A, server)
	rtts(t, base, 5, 5*time.Second)
	inj := NewLatencyInjector()
	apply(t, inj, latencyFault("x", l.A, "egress", l.B4, port, 50*time.Millisecond, 0, ""), injectors.Env{RunID: "tmp"})
	c := dialIn(t, l.A, server)
	msg, buf := make([]byte, 64), make([]byte, 64)
	start := time.Now()
	for i := 0; i < 400; i++ {
		if _, err := roundTrip(c, msg, buf); err != nil {
			out, _ := l.A.Exec(t.Context(), "sh", "-c", "cat /proc/net/stat/nf_conntrack; sysctl net.netfilter.nf_conntrack_tcp_be_liberal net.netfilter.nf_conntrack_tcp_loose")
			t.Fatalf("round trip %d after %s: %v\n%s", i, time.Since(start), err, out)
		}
	}
}
