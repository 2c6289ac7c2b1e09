//go:build linux

package proxy

import (
	"bufio"
	"context"
	"encoding/csv"
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

// haproxyStat returns a field of `show stat` for proxy/server, read through HAProxy's socket.
func haproxyStat(t *testing.T, sock, proxy, server, field string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bufio.NewReader(c)).ReadAll()
	if err != nil && len(rows) == 0 {
		t.Fatalf("show stat: %v", err)
	}
	col := -1
	for i, h := range rows[0] {
		if strings.TrimPrefix(h, "# ") == field {
			col = i
		}
	}
	for _, r := range rows[1:] {
		if len(r) > col && col >= 0 && r[0] == proxy && r[1] == server {
			return r[col]
		}
	}
	t.Fatalf("show stat: no %s of %s/%s", field, proxy, server)
	return ""
}

// TestLatencyRevertHAProxyPool: HAProxy in the fault's namespace keeps a pool of keep-alive
// connections to a server (HAProxy in the peer namespace) that the latency fault relays. Requests
// go on through it, with short pauses, across the revert: none fails, and HAProxy counts no
// response error on the server (it counted one per pooled connection when a revert left them
// hanging).
func TestLatencyRevertHAProxyPool(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	const port = 8080
	haproxyServer(t, l.B, l.B4, port)
	bin, _ := exec.LookPath("haproxy")
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`global
  stats socket %s mode 600 level admin
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 10s
  timeout http-keep-alive 30s
frontend fe
  bind 127.0.0.1:9000
  default_backend be
backend be
  http-reuse always
  server s1 %s pool-max-conn 16
`, sock, netip.AddrPortFrom(l.B4, port))
	path := filepath.Join(dir, "pool.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "revert-haproxy"}
	act := apply(t, inj, latencyFault("pool", l.A, "egress", l.B4, port, 20*time.Millisecond, 0, ""), env)
	inj.mu.Lock()
	p := inj.live[chainName(env.RunID, "pool")]
	inj.mu.Unlock()
	cmd := exec.Command(bin, "-db", "-f", path)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := l.A.Do(cmd.Start); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "HAProxy to listen in A", func() bool {
		var c net.Conn
		if err := l.A.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", "127.0.0.1:9000", time.Second)
			return err
		}); err != nil {
			return false
		}
		_ = c.Close()
		return true
	})

	tr := &http.Transport{
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := l.A.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	stop := make(chan struct{})
	var mu sync.Mutex
	var done int
	var failures []string
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := time.NewTicker(time.Duration(5+3*i) * time.Millisecond)
			defer pace.Stop()
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				resp, err := client.Get("http://127.0.0.1:9000/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					done++
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return done }
	waitFor(t, "requests through HAProxy's pool and the proxy", func() bool { return count() >= 40 && p.Stats().Open >= 1 })
	events, err := inj.RevertReport(context.Background(), mustRecord(t, act), env)
	if err != nil {
		t.Fatalf("Revert: %v", err)
	}
	t.Logf("revert: %v", events)
	after := count()
	waitFor(t, "40 more requests after the revert", func() bool { return count() >= after+40 })
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed, first: %s", len(failures), done+len(failures), failures[0])
	}
	for _, f := range []string{"eresp", "econ", "wretr", "wredis"} {
		t.Logf("haproxy be/s1 %s = %s", f, haproxyStat(t, sock, "be", "s1", f))
	}
	if e := haproxyStat(t, sock, "be", "s1", "eresp"); e != "0" {
		t.Errorf("HAProxy counted %s response errors on the server across the revert", e)
	}
}
