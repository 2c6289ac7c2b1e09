//go:build linux

package proxy

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// source writes zeros to every client until it goes away.
func source(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// pull reads n bytes from a fresh connection to addr and returns how long the data took.
func pull(b *testing.B, addr string, n int64, buf []byte) time.Duration {
	b.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkProxyAddedLatency: one 64-byte request/response per iteration directly and one through
// the proxy with no toxic, over two long-lived loopback connections; it reports the p50 and p99
// of each and the difference (target: p99 added ≤ 200µs).
func BenchmarkProxyAddedLatency(b *testing.B) {
	up := serve(b, echo)
	p := startProxy(b, up.Addr().String())
	direct := dial(b, up.Addr().String())
	proxied := dial(b, p.Addr().String())
	direct.SetNoDelay(true)
	proxied.SetNoDelay(true)
	// Bounded in time as well as in count (b.N).
	_ = direct.SetDeadline(time.Now().Add(10 * time.Minute))
	_ = proxied.SetDeadline(time.Now().Add(10 * time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 64)
	for range 100 { // warm up both paths
		_, _ = roundTrip(direct, msg, buf)
		_, _ = roundTrip(proxied, msg, buf)
	}
	ds := make([]time.Duration, 0, b.N)
	ps := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		d, err := roundTrip(direct, msg, buf)
		if err != nil {
			b.Fatal(err)
		}
		q, err := roundTrip(proxied, msg, buf)
		if err != nil {
			b.Fatal(err)
		}
		ds, ps = append(ds, d), append(ps, q)
	}
	b.StopTimer()
	slices.Sort(ds)
	slices.Sort(ps)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	b.ReportMetric(us(percentile(ds, 0.5)), "direct-p50-µs")
	b.ReportMetric(us(percentile(ds, 0.99)), "direct-p99-µs")
	b.ReportMetric(us(percentile(ps, 0.5)), "proxy-p50-µs")
	b.ReportMetric(us(percentile(ps, 0.99)), "proxy-p99-µs")
	b.ReportMetric(us(percentile(ps, 0.5)-percentile(ds, 0.5)), "added-p50-µs")
	b.ReportMetric(us(percentile(ps, 0.99)-percentile(ds, 0.99)), "added-p99-µs")
}

// BenchmarkLatencyAccuracy50ms: each iteration is one request/response under a 50ms±0 latency; it
// reports the p50 and p99 error of the added round trip against 50ms (baseline measured first,
// in the same run). explicit: the proxy kind's latency toxic on loopback; transparent: the latency
// fault through REDIRECT in a network namespace (needs root).
func BenchmarkLatencyAccuracy50ms(b *testing.B) {
	const delay = 50 * time.Millisecond
	measure := func(b *testing.B, base, faulty net.Conn) {
		_ = base.SetDeadline(time.Now().Add(10 * time.Minute))
		_ = faulty.SetDeadline(time.Now().Add(10 * time.Minute))
		msg, buf := make([]byte, 64), make([]byte, 64)
		var bs []time.Duration
		for range 50 {
			d, err := roundTrip(base, msg, buf)
			if err != nil {
				b.Fatal(err)
			}
			bs = append(bs, d)
		}
		slices.Sort(bs)
		baseline := percentile(bs, 0.5)
		errs := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			d, err := roundTrip(faulty, msg, buf)
			if err != nil {
				b.Fatal(err)
			}
			errs = append(errs, d-baseline-delay)
		}
		b.StopTimer()
		slices.Sort(errs)
		b.ReportMetric(float64(percentile(errs, 0.5))/1e3, "p50-err-µs")
		b.ReportMetric(float64(percentile(errs, 0.99))/1e3, "p99-err-µs")
		b.ReportMetric(float64(errs[len(errs)-1])/1e3, "max-err-µs")
	}
	b.Run("explicit", func(b *testing.B) {
		up := serve(b, echo)
		p := startProxy(b, up.Addr().String(), Toxic{Name: "l", Stream: Upstream, Latency: &Latency{Delay: delay}})
		base, faulty := dial(b, up.Addr().String()), dial(b, p.Addr().String())
		base.SetNoDelay(true)
		faulty.SetNoDelay(true)
		measure(b, base, faulty)
	})
	b.Run("transparent", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("the transparent proxy needs root (network namespaces, iptables)")
		}
		netns.Require(b, "iptables", "iptables-save", "iptables-restore")
		l := netns.NewPair(b)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ln, err := l.B.ListenTCP(ctx, netip.AddrPortFrom(l.B4, 0).String())
		if err != nil {
			b.Fatal(err)
		}
		serveOn(b, ln, echo)
		server := ln.Addr().(*net.TCPAddr).AddrPort()
		base, err := l.A.Dial(ctx, "tcp", server.String())
		if err != nil {
			b.Fatal(err)
		}
		inj := NewLatencyInjector()
		env := injectors.Env{RunID: "bench"}
		f := latencyFault("bench", l.A, "egress", l.B4, server.Port(), delay, 0, "")
		act, err := inj.Prepare(ctx, f, env)
		if err != nil {
			b.Fatal(err)
		}
		if err := act.Apply(ctx, noRecord); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			rec, _ := act.Record()
			if err := inj.Revert(context.Background(), rec, env); err != nil {
				b.Errorf("revert: %v", err)
			}
		})
		faulty, err := l.A.Dial(ctx, "tcp", server.String())
		if err != nil {
			b.Fatal(err)
		}
		base.(*net.TCPConn).SetNoDelay(true)
		faulty.(*net.TCPConn).SetNoDelay(true)
		measure(b, base, faulty)
	})
}
