package toxiproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/faultline-dev/faultline/injectors/proxy"
	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// delay is the latency toxic of the comparison.
const delay = 50 * time.Millisecond

// relays is an upstream and the two proxies in front of it, each with the same toxic (or none).
type relays struct {
	direct, faultline, toxiproxy string
}

// startRelays serves handler on loopback and puts both proxies in front of it; latency adds the
// 50 ms toxic to the data flowing back to the client (downstream) in both.
func startRelays(t testing.TB, handler func(net.Conn), latency bool) relays {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := local.ServeTCP(t, ln, handler).Addr().String()
	return relays{direct: up, faultline: startFaultline(t, up, latency), toxiproxy: startToxiproxy(t, up, latency)}
}

func startFaultline(t testing.TB, upstream string, latency bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var toxics []proxy.Toxic
	if latency {
		toxics = append(toxics, proxy.Toxic{Name: "latency", Stream: proxy.Downstream, Latency: &proxy.Latency{Delay: delay}})
	}
	var d net.Dialer
	p, err := proxy.Start(proxy.Config{
		Listener: ln,
		Dial:     func(ctx context.Context, _ net.Conn) (net.Conn, error) { return d.DialContext(ctx, "tcp", upstream) },
		Toxics:   toxics,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.Addr().String()
}

// startToxiproxy runs Toxiproxy the way its own tests do, with its defaults (no proxy metrics,
// as `toxiproxy-server` without --proxy-metrics).
func startToxiproxy(t testing.TB, upstream string, latency bool) string {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "bench", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if latency {
		spec := fmt.Sprintf(`{"name": "latency", "type": "latency", "stream": "downstream", "attributes": {"latency": %d}}`, delay.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			t.Fatal(err)
		}
	}
	return p.Listen
}

// source writes until the client goes away.
func source(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// pull reads n bytes from a fresh connection to addr and returns how long they took after the
// first byte (so that a latency toxic's one-off delay of the first chunk is not counted).
func pull(t testing.TB, addr string, n int64, buf []byte) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// dial opens a long-lived connection for round trips, bounded in time.
func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tc := c.(*net.TCPConn)
	_ = tc.SetNoDelay(true)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Minute))
	return tc
}

// roundTrip sends msg and reads as many bytes back (the upstream echoes).
func roundTrip(c net.Conn, msg, buf []byte) (time.Duration, error) {
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
