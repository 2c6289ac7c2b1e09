//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The relay helper process: the test binary run again with this variable set to an upstream
// address serves a Proxy with no toxic in front of it, prints "listening <addr>" and stays up
// until its stdin closes (the parent ended) or ten minutes pass.
const relayHelperEnv = "FAULTLINE_TEST_RELAY_UPSTREAM"

func TestRelayHelperProcess(t *testing.T) {
	upstream := os.Getenv(relayHelperEnv)
	if upstream == "" {
		t.Skip("entry point of the relay helper process, started by BenchmarkProxyThroughput")
	}
	p := startProxy(t, upstream)
	fmt.Printf("listening %s\n", p.Addr())
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Minute):
	}
}

// BenchmarkProxyThroughput: each iteration moves 64 MiB directly from a loopback server and 64 MiB
// through a relay with no fault, alternating so both see the same machine load, and reports both
// rates and their ratio. The target is a comparison with Toxiproxy, measured side by side in
// internal/bench/toxiproxy; this ratio says what relaying costs on the machine at all.
//
// The relays, so the ratio can be read against what relaying costs on the machine at all:
//   - faultline: the Proxy in this process, side by side with server and client;
//   - faultline-process: the Proxy in a process of its own, the way `faultline run` holds it;
//   - bare-relay: read/write with a 1 MiB buffer and nothing else, in this process;
//   - socat, haproxy: well-known relays, when installed.
//
// Every relay costs a read and a write copy per byte on top of the direct transfer, and the CPU
// for it comes from the same cores the server and client use: on a machine with fewer free cores
// than the three parties need, the ratio measures CPU, not the relay's design.
func BenchmarkProxyThroughput(b *testing.B) {
	up := serve(b, source)
	upstream := up.Addr().String()
	b.Run("faultline", func(b *testing.B) {
		throughput(b, upstream, startProxy(b, upstream).Addr().String())
	})
	b.Run("faultline-process", func(b *testing.B) {
		addr, pid := relayProcess(b, upstream)
		before := cpuTime(b, pid)
		throughput(b, upstream, addr)
		// What one core moves through the relay: above the direct rate, the relay is not what
		// holds the ratio down when it has a core to itself.
		b.ReportMetric(float64(64<<20*b.N)/(cpuTime(b, pid)-before).Seconds()/1e6, "relay-MB/s-per-core")
	})
	b.Run("bare-relay", func(b *testing.B) {
		throughput(b, upstream, bareRelay(b, upstream))
	})
	b.Run("socat", func(b *testing.B) {
		addr := freeAddr(b)
		_, port, _ := net.SplitHostPort(addr)
		external(b, addr, "socat", "-b", "1048576", "TCP-LISTEN:"+port+",bind=127.0.0.1,reuseaddr,fork", "TCP:"+upstream)
		throughput(b, upstream, addr)
	})
	b.Run("haproxy", func(b *testing.B) {
		addr := freeAddr(b)
		cfg := filepath.Join(b.TempDir(), "haproxy.cfg")
		text := fmt.Sprintf("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"+
			"listen relay\n  bind %s\n  server upstream %s\n", addr, upstream)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		external(b, addr, "haproxy", "-db", "-f", cfg)
		throughput(b, upstream, addr)
	})
}

func throughput(b *testing.B, direct, relay string) {
	const n = 64 << 20
	buf := make([]byte, 256<<10)
	var d, r time.Duration
	b.SetBytes(2 * n)
	b.ResetTimer()
	for range b.N {
		d += pull(b, direct, n, buf)
		r += pull(b, relay, n, buf)
	}
	b.StopTimer()
	dm := float64(n*b.N) / d.Seconds() / 1e6
	rm := float64(n*b.N) / r.Seconds() / 1e6
	b.ReportMetric(dm, "direct-MB/s")
	b.ReportMetric(rm, "relay-MB/s")
	b.ReportMetric(rm/dm, "ratio")
}

// cpuTime is the CPU time a process has used (user and system, all threads).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces: utime and
	// stime are the 12th and 13th, in USER_HZ (100 per second on every Linux ABI).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// relayProcess starts the relay helper process and returns its address and pid.
func relayProcess(b *testing.B, upstream string) (string, int) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestRelayHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), relayHelperEnv+"="+upstream)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), "listening "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return addr, cmd.Process.Pid
		}
	}
	b.Fatalf("relay helper process ended before listening: %v", lines.Err())
	return "", 0
}

// bareRelay is the least a relay in Go can do: one goroutine per direction, read and write.
func bareRelay(b *testing.B, upstream string) string {
	return serve(b, func(c net.Conn) {
		s, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer s.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			copyHalf(s, c)
		}()
		copyHalf(c, s)
		<-done
	}).Addr().String()
}

func copyHalf(dst, src net.Conn) {
	buf := make([]byte, 1<<20)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			closeWrite(dst)
			return
		}
	}
}

// external runs a relay program, skipping when it is not installed, and waits until addr accepts.
func external(b *testing.B, addr, name string, args ...string) {
	b.Helper()
	if _, err := exec.LookPath(name); err != nil {
		b.Skipf("%s is not installed (it is only a point of comparison)", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := listening(context.Background(), addr); ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not listen on %s within 10s", name, addr)
		}
		<-tick.C
	}
}
