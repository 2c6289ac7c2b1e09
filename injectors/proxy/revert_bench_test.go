//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// BenchmarkLatencyRevert times the revert of a transparent-proxy latency fault (20ms, egress, one
// port): with no connection open (the iptables work alone: the baseline), with 4 keep-alive HTTP
// clients sending requests through the proxy to HAProxy when the revert comes (busy), and with 4
// keep-alive connections idle then, whose clients wait for the server to close them (as Go's
// and HAProxy's connection pools do). Each iteration
// applies the fault afresh; only the revert is timed. Reported: p50 and p99 of the revert's wall
// time, and the requests per revert that failed with anything but a clean close before a response
// (a reset, a response cut short, a hang past 3s).
//
//	go test -run '^$' -bench BenchmarkLatencyRevert -benchtime 20x ./injectors/proxy/
func BenchmarkLatencyRevert(b *testing.B) {
	requireNet(b)
	l := netns.NewPair(b)
	const port = 8080
	haproxyServer(b, l.B, l.B4, port)
	server := netip.AddrPortFrom(l.B4, port)
	for _, mode := range []struct {
		name    string
		clients int
		busy    bool
	}{{"none", 0, false}, {"busy=4", 4, true}, {"idle=4", 4, false}} {
		clients := mode.clients
		b.Run(mode.name, func(b *testing.B) {
			inj := NewLatencyInjector()
			env := injectors.Env{RunID: "revert-bench"}
			f := latencyFault("bench", l.A, "egress", l.B4, port, 20*time.Millisecond, 0, "")
			var took []time.Duration
			failed := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				act, err := inj.Prepare(ctx, f, env)
				if err == nil {
					err = act.Apply(ctx, noRecord)
				}
				cancel()
				if err != nil {
					b.Fatalf("apply: %v", err)
				}
				stop := make(chan struct{})
				results := make(chan kaResult, clients)
				started := make(chan struct{}, clients)
				for range clients {
					c := dialIn(b, l.A, server)
					first := true
					if !mode.busy {
						go func() { results <- idleUntilClosed(c, 3*time.Second, started) }()
						continue
					}
					go func() {
						results <- keepAlive("bench", c, stop, 3*time.Second, func() {
							if first {
								first = false
								started <- struct{}{}
							}
						})
					}()
				}
				for range clients {
					<-started
				}
				b.StartTimer()
				start := time.Now()
				if err := inj.Revert(context.Background(), mustRecord(b, act), env); err != nil {
					b.Fatalf("revert: %v", err)
				}
				took = append(took, time.Since(start))
				b.StopTimer()
				close(stop)
				for range clients {
					if r := <-results; r.err != nil {
						failed++
					}
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(percentile(took, 0.5))/1e6, "p50-ms")
			b.ReportMetric(float64(percentile(took, 0.99))/1e6, "p99-ms")
			b.ReportMetric(float64(failed)/float64(b.N), "failed/op")
		})
	}
}

// idleUntilClosed makes one request over c, says so on started, then waits (within limit) for the
// server to close the connection, and closes it.
func idleUntilClosed(c net.Conn, limit time.Duration, started chan<- struct{}) kaResult {
	one := make(chan struct{})
	r := keepAlive("idle", c, one, limit, func() { close(one) })
	started <- struct{}{}
	if r.err != nil {
		return r
	}
	_ = c.SetReadDeadline(time.Now().Add(limit))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		r.err = fmt.Errorf("idle connection: %w, want EOF", err)
	}
	_ = c.Close()
	return r
}
