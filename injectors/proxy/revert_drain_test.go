//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// haproxyServer starts HAProxy inside ns as a keep-alive HTTP server answering "ok" on each of
// ports at addr, and waits until every port accepts.
func haproxyServer(t testing.TB, ns *netns.NS, addr netip.Addr, ports ...uint16) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		msg := "the keep-alive revert test needs haproxy as its HTTP server (apt-get install haproxy)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var binds strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&binds, "  bind %s\n", netip.AddrPortFrom(addr, p))
	}
	cfg := fmt.Sprintf(`defaults
  mode http
  timeout client 60s
  timeout http-keep-alive 60s
  timeout http-request 10s
frontend web
%s  http-request return status 200 content-type text/plain string "ok"
`, binds.String())
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for _, p := range ports {
		up := false
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		for !up && ctx.Err() == nil {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", netip.AddrPortFrom(addr, p).String())
				return err
			})
			if err == nil {
				_ = c.Close()
				up = true
				break
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		tick.Stop()
		cancel()
		if !up {
			t.Fatalf("haproxy does not listen on port %d: %s", p, logs.String())
		}
	}
}

// kaResult is what one keep-alive connection saw.
type kaResult struct {
	name   string
	ok     int   // complete responses
	closed bool  // closed cleanly at a request boundary (EOF before any byte of a response)
	err    error // anything else: a reset, a response cut short, a hang (deadline)
}

// keepAlive sends GETs over c, one after another, until stop closes or the connection is closed
// at a request boundary, each response within limit.
func keepAlive(name string, c net.Conn, stop <-chan struct{}, limit time.Duration, progress func()) kaResult {
	r := kaResult{name: name}
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	for {
		select {
		case <-stop:
			return r
		default:
		}
		_ = c.SetDeadline(time.Now().Add(limit))
		if _, err := c.Write(req); err != nil {
			r.err = fmt.Errorf("write request %d: %w", r.ok+1, err)
			return r
		}
		// ReadResponse says ErrUnexpectedEOF for a connection closed before a response as well.
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			r.closed = true
			_ = c.Close() // as an HTTP client does with a connection the server closed
			return r
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		if err != nil {
			r.err = fmt.Errorf("response %d: %w", r.ok+1, err)
			return r
		}
		r.ok++
		progress()
	}
}

// TestLatencyRevertClosesRelayedKeepAliveConnectionsCleanly: a transparent-proxy latency fault is
// reverted while keep-alive HTTP clients (raw HTTP/1.1 connections and Go's http.Client pool) send
// requests through it to a real server (HAProxy). Every relayed connection is closed cleanly at a
// request boundary: no reset, no response cut short, no hang; a new connection then goes direct.
// Connections that were never redirected (opened before the fault, or to a port the fault does
// not select) see nothing at all. The revert reports how many relayed connections it closed.
// Egress (the clients are in the fault's namespace) and ingress (the server is).
func TestLatencyRevertClosesRelayedKeepAliveConnectionsCleanly(t *testing.T) {
	for _, dir := range []string{"egress", "ingress"} {
		t.Run(dir, func(t *testing.T) { testRevertKeepAlive(t, dir) })
	}
}

func testRevertKeepAlive(t *testing.T, direction string) {
	requireNet(t)
	l := netns.NewPair(t)
	const port, other = 8080, 8081
	// The fault is in A; egress: clients in A, server in B; ingress: the other way round.
	cli, srv, srvAddr, peer := l.A, l.B, l.B4, l.B4
	if direction == "ingress" {
		cli, srv, srvAddr, peer = l.B, l.A, l.A4, l.B4
	}
	haproxyServer(t, srv, srvAddr, port, other)
	server := netip.AddrPortFrom(srvAddr, port)
	const limit = 10 * time.Second // a response later than this is a hang

	var mu sync.Mutex
	progress := map[string]int{}
	tick := func(name string) func() {
		return func() { mu.Lock(); progress[name]++; mu.Unlock() }
	}
	stop := make(chan struct{})
	results := make(chan kaResult, 16)
	run := func(name string, c net.Conn) {
		go func() { results <- keepAlive(name, c, stop, limit, tick(name)) }()
	}
	// Never redirected: opened before the fault, and one to a port the fault does not select.
	run("before", dialIn(t, cli, server))

	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "revert-drain"}
	act := apply(t, inj, latencyFault("drain", l.A, direction, peer, port, 20*time.Millisecond, 0, ""), env)
	inj.mu.Lock()
	p := inj.live[chainName(env.RunID, "drain")]
	inj.mu.Unlock()
	run("other-port", dialIn(t, cli, netip.AddrPortFrom(srvAddr, other)))
	const relayed = 6
	for i := range relayed {
		run(fmt.Sprintf("relayed-%d", i), dialIn(t, cli, server))
	}
	// Idle at the revert: it must see the FIN (a client's pool notices it and drops the connection).
	idle := dialIn(t, cli, server)
	stopIdle := make(chan struct{})
	if r := keepAlive("idle", idle, stopIdle, limit, func() { close(stopIdle) }); r.err != nil || r.ok != 1 {
		t.Fatalf("idle connection: %d responses, %v", r.ok, r.err)
	}
	// Go's keep-alive pool, from the clients' namespace.
	tr := &http.Transport{
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := cli.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: limit}
	goErrs := make(chan error, 4)
	var goWG sync.WaitGroup
	for i := range 4 {
		goWG.Add(1)
		name := fmt.Sprintf("go-%d", i)
		go func() {
			defer goWG.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + server.String() + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				if err != nil {
					goErrs <- fmt.Errorf("%s request %d: %w", name, n, err)
					return
				}
				tick(name)()
			}
		}()
	}
	all := []string{"before", "other-port", "go-0", "go-1", "go-2", "go-3"}
	for i := range relayed {
		all = append(all, fmt.Sprintf("relayed-%d", i))
	}
	// Every client has made a few requests, the relayed ones through the proxy.
	waitFor(t, "every client to make 3 requests", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range all {
			if progress[n] < 3 {
				return false
			}
		}
		return true
	})
	if s := p.Stats(); s.Proxied < relayed+2 {
		t.Fatalf("proxy stats %+v: want at least %d relayed connections", s, relayed+2)
	}
	open := p.Stats().Open

	start := time.Now()
	events, err := inj.RevertReport(context.Background(), mustRecord(t, act), env)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Revert: %v", err)
	}
	t.Logf("revert took %s with %d relayed connections open; events: %v", took, open, events)
	_ = idle.SetReadDeadline(time.Now().Add(limit))
	if n, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle relayed connection after the revert: read %d bytes, %v; want EOF (a FIN)", n, err)
	}
	mu.Lock()
	after := map[string]int{}
	for _, n := range all {
		after[n] = progress[n]
	}
	mu.Unlock()
	// The clients go on: each that was not closed makes more requests after the revert.
	waitFor(t, "the connections that were left alone and the Go clients to make 5 more requests", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range all {
			if !strings.HasPrefix(n, "relayed-") && progress[n] < after[n]+5 {
				return false
			}
		}
		return true
	})
	close(stop)
	goWG.Wait()
	close(goErrs)
	for err := range goErrs {
		t.Errorf("Go keep-alive client: %v", err)
	}
	closed := 0
	for range len(all) - 4 {
		r := <-results
		switch {
		case r.err != nil:
			t.Errorf("%s after %d responses: %v", r.name, r.ok, r.err)
		case strings.HasPrefix(r.name, "relayed-") && !r.closed:
			t.Errorf("%s: relayed connection still open after the revert (%d responses)", r.name, r.ok)
		case !strings.HasPrefix(r.name, "relayed-") && r.closed:
			t.Errorf("%s: a connection that was never redirected was closed by the revert", r.name)
		case r.closed:
			closed++
		}
	}
	if closed != relayed {
		t.Errorf("%d of %d relayed raw connections closed cleanly", closed, relayed)
	}
	// The revert reports the relayed connections it closed, all cleanly.
	want := fmt.Sprintf("closed %d relayed connections", open)
	if len(events) != 1 || !strings.Contains(events[0].Message, want) || !strings.Contains(events[0].Message, "0 forced") {
		t.Errorf("revert events %v: want one saying %q, none forced", events, want)
	}
	// A new connection goes direct.
	accepted := p.Stats().Accepted
	c := dialIn(t, cli, server)
	stopAfter := make(chan struct{})
	if r := keepAlive("after", c, stopAfter, limit, func() { close(stopAfter) }); r.err != nil || r.ok != 1 {
		t.Fatalf("a connection opened after the revert: %d responses, %v", r.ok, r.err)
	}
	if s := p.Stats(); s.Accepted != accepted {
		t.Fatalf("the proxy accepted a connection after the revert: %+v", s)
	}
}

func mustRecord(t testing.TB, act injectors.Action) []byte {
	t.Helper()
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
