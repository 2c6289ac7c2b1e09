//go:build linux

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// serve runs handler for every connection to a fresh loopback listener until the test ends.
func serve(t testing.TB, handler func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, handler)
}

func serveOn(t testing.TB, ln net.Listener, handler func(net.Conn)) net.Listener {
	t.Helper()
	return local.ServeTCP(t, ln, handler)
}

func echo(c net.Conn) { local.Echo(c) }

// startProxy runs a proxy on loopback in front of upstream.
func startProxy(t testing.TB, upstream string, toxics ...Toxic) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	p, err := Start(Config{
		Listener: ln,
		Dial:     func(ctx context.Context, _ net.Conn) (net.Conn, error) { return d.DialContext(ctx, "tcp", upstream) },
		Toxics:   toxics,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip writes msg and reads the same number of bytes back, returning the elapsed time.
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

// TestProxyCopiesBothWaysAcrossToxicChanges sends 8 MiB each way through an echo server while the
// toxic set is swapped under the open connection; the bytes must arrive complete and in order.
func TestProxyCopiesBothWaysAcrossToxicChanges(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String())
	c := dial(t, p.Addr().String())
	payload := randomBytes(t, 8<<20)

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	jittery := Toxic{Name: "jitter", Stream: Both, Latency: &Latency{Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond}}
	slow := Toxic{Name: "bw", Stream: Upstream, Bandwidth: &Bandwidth{BytesPerSecond: 64 << 20}}
	sets := [][]Toxic{nil, {jittery}, {jittery, slow}, nil, {slow}, {jittery}, nil}
	chunk := len(payload) / len(sets)
	for i, set := range sets {
		if err := p.SetToxics(set...); err != nil {
			t.Fatal(err)
		}
		end := (i + 1) * chunk
		if i == len(sets)-1 {
			end = len(payload)
		}
		if _, err := c.Write(payload[i*chunk : end]); err != nil {
			t.Fatalf("write part %d: %v", i, err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("echoed %d bytes, want the %d sent, in order (first difference at %d)", len(b), len(payload), firstDiff(b, payload))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("echo did not complete within 30s")
	}
}

// expectReset connects to addr and expects the connection to be reset. On loopback the reset can
// arrive before connect(2) has even returned.
func expectReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("got %v, want a reset (ECONNRESET)", err)
	}
}

// waitFor polls cond every 5ms for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestLatencyKeepsOrderAndThroughput: with 20ms±20ms jitter on many small writes, every byte
// arrives in order, and the stream is not serialised per chunk (200 chunks take far less than
// 200×20ms).
func TestLatencyKeepsOrderAndThroughput(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String(), Toxic{Name: "l", Stream: Upstream, Latency: &Latency{Delay: 20 * time.Millisecond, Jitter: 20 * time.Millisecond}})
	c := dial(t, p.Addr().String())
	c.SetNoDelay(true)
	const chunks = 200
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, chunks*4)
		_, err := io.ReadFull(c, b)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		got <- b
	}()
	start := time.Now()
	tick := time.NewTicker(200 * time.Microsecond)
	defer tick.Stop()
	for i := range chunks {
		msg := []byte{byte(i >> 8), byte(i), 0xAB, byte(i * 7)}
		want.Write(msg)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		<-tick.C // spread the writes so they are read as separate chunks
	}
	b := <-got
	elapsed := time.Since(start)
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("bytes reordered or lost (first difference at %d)", firstDiff(b, want.Bytes()))
	}
	// Serialised per chunk this would take ≥ 200 × 20ms = 4s.
	if elapsed > 1500*time.Millisecond {
		t.Fatalf("200 delayed chunks took %s: latency is serialising the stream", elapsed)
	}
	t.Logf("200 chunks at 20ms±20ms arrived in order in %s", elapsed)
}

// TestToxicReset: the client sees ECONNRESET, and the toxic can be removed again.
func TestToxicReset(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String())
	c := dial(t, p.Addr().String())
	buf := make([]byte, 16)
	if _, err := roundTrip(c, []byte("ping"), buf); err != nil {
		t.Fatalf("before the toxic: %v", err)
	}
	if err := p.SetToxics(Toxic{Name: "rst", Reset: &Reset{}}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("open connection: read error %v, want ECONNRESET", err)
	}
	// A new connection is reset as well.
	expectReset(t, p.Addr().String())
	if err := p.SetToxics(); err != nil {
		t.Fatal(err)
	}
	c3 := dial(t, p.Addr().String())
	if _, err := roundTrip(c3, []byte("pong"), buf); err != nil {
		t.Fatalf("after removing the toxic: %v", err)
	}
}

// TestToxicResetAfter resets a connection only after the configured time.
func TestToxicResetAfter(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String(), Toxic{Name: "rst", Reset: &Reset{After: 300 * time.Millisecond}})
	start := time.Now()
	c := dial(t, p.Addr().String())
	buf := make([]byte, 16)
	if _, err := roundTrip(c, []byte("ping"), buf); err != nil {
		t.Fatalf("before the reset: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read error %v, want ECONNRESET", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("reset after %s, want ≥ 300ms", el)
	}
}

// TestToxicBlackhole: data is held (the client's read times out), flows on when the toxic is
// removed, and with a timeout the connection is closed.
func TestToxicBlackhole(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String(), Toxic{Name: "bh", Blackhole: &Blackhole{}})
	c := dial(t, p.Addr().String())
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read under blackhole: %v, want a timeout", err)
	}
	if err := p.SetToxics(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after removing the blackhole: %q, %v; want the held data", buf, err)
	}

	if err := p.SetToxics(Toxic{Name: "bh", Blackhole: &Blackhole{Timeout: 200 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("blackhole with timeout: read %d, %v; want the connection closed", n, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("closed after %s, want about 200ms", el)
	}
}

// TestToxicBandwidth measures throughput under a 4 MB/s limit: within ±10%.
func TestToxicBandwidth(t *testing.T) {
	const rate = 4e6
	const total = 6e6 // 1.5s at the limit
	data := randomBytes(t, total)
	up := serve(t, func(c net.Conn) {
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	p := startProxy(t, up.Addr().String(), Toxic{Name: "bw", Bandwidth: &Bandwidth{BytesPerSecond: rate}})
	c := dial(t, p.Addr().String())
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	// Time from the first byte: the connection setup is not part of the rate.
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := io.Copy(io.Discard, c)
	el := time.Since(start)
	if err != nil || n != total-1 {
		t.Fatalf("read %d bytes, %v", n+1, err)
	}
	got := float64(n) / el.Seconds()
	t.Logf("throughput %.3f MB/s under a %.3f MB/s limit", got/1e6, rate/1e6)
	if got < rate*0.9 || got > rate*1.1 {
		t.Fatalf("throughput %.3f MB/s, want %.3f MB/s ±10%%", got/1e6, rate/1e6)
	}
}

// TestToxicSlowClose: the client sees the upstream's data at once and its close only after the delay.
func TestToxicSlowClose(t *testing.T) {
	up := serve(t, func(c net.Conn) { _, _ = c.Write([]byte("bye")) })
	p := startProxy(t, up.Addr().String(), Toxic{Name: "sc", SlowClose: &SlowClose{Delay: 400 * time.Millisecond}})
	c := dial(t, p.Addr().String())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want EOF", n, err)
	}
	el := time.Since(start)
	if el < 350*time.Millisecond || el > 1500*time.Millisecond {
		t.Fatalf("EOF after %s, want about 400ms", el)
	}
	t.Logf("EOF %s after the data", el)
}

// TestLatencyToggle turns latency on and off under an open connection.
func TestLatencyToggle(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String())
	c := dial(t, p.Addr().String())
	c.SetNoDelay(true)
	buf := make([]byte, 8)
	measure := func() time.Duration {
		t.Helper()
		best := time.Hour
		for range 5 {
			d, err := roundTrip(c, []byte("12345678"), buf)
			if err != nil {
				t.Fatal(err)
			}
			best = min(best, d)
		}
		return best
	}
	if d := measure(); d > 20*time.Millisecond {
		t.Fatalf("no toxic: round trip %s", d)
	}
	if err := p.SetToxics(Toxic{Name: "l", Latency: &Latency{Delay: 40 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if d := measure(); d < 40*time.Millisecond || d > 60*time.Millisecond {
		t.Fatalf("40ms toxic: round trip %s", d)
	}
	if err := p.SetToxics(); err != nil {
		t.Fatal(err)
	}
	if d := measure(); d > 20*time.Millisecond {
		t.Fatalf("toxic removed: round trip %s", d)
	}
}

// TestToxicity applies a toxic to about the given share of connections.
func TestToxicity(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String(), Toxic{Name: "half", Toxicity: 0.5, Stream: Upstream, Blackhole: &Blackhole{}})
	held := 0
	const n = 40
	buf := make([]byte, 1)
	for range n {
		c := dial(t, p.Addr().String())
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(buf); errors.Is(err, os.ErrDeadlineExceeded) {
			held++
		}
		_ = c.Close()
	}
	// Binomial(40, 0.5): 8..32 holds with probability > 0.9999.
	if held < 8 || held > 32 {
		t.Fatalf("%d of %d connections blackholed, want about half", held, n)
	}
}

func TestUpstreamDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, ln.Addr().String())
	_ = ln.Close() // closed only now, so that the proxy cannot have been given the same port
	expectReset(t, p.Addr().String())
	if s := p.Stats(); s.DialErrors != 1 {
		t.Fatalf("stats %+v, want one dial error", s)
	}
}

func TestShutdownDrains(t *testing.T) {
	up := serve(t, echo)
	p := startProxy(t, up.Addr().String(), Toxic{Name: "bh", Stream: Upstream, Blackhole: &Blackhole{}})
	c := dial(t, p.Addr().String())
	if _, err := c.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	// A connection still in the listener's backlog when Shutdown closes it is reset by the
	// kernel: wait until the proxy has taken this one.
	waitFor(t, "the connection to be proxied", func() bool { return p.Stats().Open == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.Shutdown(ctx)
	}()
	// Shutdown removes the toxics: the held data comes through while the connection drains.
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("held data during shutdown: %v", err)
	}
	_ = c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepts after Shutdown")
	}
}
