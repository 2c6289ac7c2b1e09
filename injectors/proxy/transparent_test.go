//go:build linux

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

func requireNet(t testing.TB) {
	t.Helper()
	netns.Require(t, "iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")
}

// natSnapshot is `iptables-save -t nat` and `ip6tables-save -t nat` inside ns, without the
// timestamped comment lines.
func natSnapshot(t *testing.T, ns *netns.NS) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Exec(ctx, cmd, "-t", "nat")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "#") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

func hasChain(ctx context.Context, ns *netns.NS, chain string) (bool, error) {
	out, err := ns.Exec(ctx, "iptables-save", "-t", "nat")
	if err != nil {
		return false, err
	}
	return strings.Contains(string(out), ":"+chain+" "), nil
}

// echoIn starts an echo server inside ns on addr:0 and returns its port.
func echoIn(t *testing.T, ns *netns.NS, addr netip.Addr) uint16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := ns.ListenTCP(ctx, netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, echo)
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func dialIn(t testing.TB, ns *netns.NS, to netip.AddrPort) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetNoDelay(true)
	return c
}

// rtts measures n request/response round trips of 64 bytes over c, within limit.
func rtts(t *testing.T, c net.Conn, n int, limit time.Duration) []time.Duration {
	t.Helper()
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	end := time.Now().Add(limit)
	_ = c.SetDeadline(end.Add(5 * time.Second))
	out := make([]time.Duration, 0, n)
	for i := 0; i < n && time.Now().Before(end); i++ {
		msg[0] = byte(i)
		d, err := roundTrip(c, msg, buf)
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if buf[0] != byte(i) {
			t.Fatalf("round trip %d: got reply %d", i, buf[0])
		}
		out = append(out, d)
	}
	if len(out) < n {
		t.Fatalf("only %d of %d round trips within %s", len(out), n, limit)
	}
	return out
}

// cpuPressure returns the share of the last 10s in which runnable tasks waited for a CPU
// (/proc/pressure/cpu "some avg10"), or -1 when the kernel does not report it.
func cpuPressure() float64 {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg10="); ok {
			p, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return p
		}
	}
	return -1
}

// saturated reports whether this (shared) machine is so short of CPU that tail latencies say
// more about the other tenants than about the code: then p99 and extremes are logged, and the
// test is marked skipped for them, rather than asserted.
func saturated() (bool, string) {
	if raceEnabled {
		return true, "the race detector is on"
	}
	if p := cpuPressure(); p > 50 {
		return true, fmt.Sprintf("CPU pressure is %.0f%% (tasks waited for a CPU that share of the last 10s)", p)
	}
	return false, ""
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func stats(ds []time.Duration) (mean, sd time.Duration) {
	var s float64
	for _, d := range ds {
		s += float64(d)
	}
	m := s / float64(len(ds))
	var v float64
	for _, d := range ds {
		v += (float64(d) - m) * (float64(d) - m)
	}
	return time.Duration(m), time.Duration(math.Sqrt(v / float64(len(ds)-1)))
}

func latencyFault(name string, ns *netns.NS, direction string, peer netip.Addr, port uint16, delay, jitter time.Duration, dist string) runbooks.Fault {
	return runbooks.Fault{Name: name, Latency: &runbooks.Latency{
		NetworkTarget: runbooks.NetworkTarget{
			Netns: ns.Name, Direction: direction, Protocol: "tcp",
			Peers: []string{peer.String()}, Ports: []string{strconv.Itoa(int(port))},
		},
		Delay: runbooks.Duration(delay), Jitter: runbooks.Duration(jitter), Distribution: dist, Mechanism: "proxy",
	}}
}

func noRecord(context.Context, json.RawMessage) error { return nil }

// apply prepares and applies f and registers a revert at cleanup.
func apply(t *testing.T, inj injectors.Injector, f runbooks.Fault, env injectors.Env) injectors.Action {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	act, err := inj.Prepare(ctx, f, env)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	latest, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	rec := func(_ context.Context, r json.RawMessage) error {
		mu.Lock()
		defer mu.Unlock()
		latest = append(json.RawMessage(nil), r...)
		return nil
	}
	t.Cleanup(func() {
		mu.Lock()
		r := latest
		mu.Unlock()
		if err := inj.Revert(context.Background(), r, env); err != nil {
			t.Errorf("cleanup Revert: %v", err)
		}
	})
	if err := act.Apply(ctx, rec); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return act
}

func revert(t *testing.T, inj injectors.Injector, act injectors.Action, env injectors.Env) {
	t.Helper()
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Revert(context.Background(), rec, env); err != nil {
		t.Fatalf("Revert: %v", err)
	}
}

func TestLatencyTransparentConformance(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	before := natSnapshot(t, l.A)
	f := latencyFault("lat", l.A, "egress", l.B4, port, 20*time.Millisecond, 0, "")
	env := injectors.Env{RunID: "conformance"}
	chain := chainName(env.RunID, f.Name)
	inj := NewLatencyInjector()
	injectortest.Run(t, inj, injectortest.Case{
		Fault: f, Env: env, Revertible: true,
		Active: func(ctx context.Context) (bool, error) { return hasChain(ctx, l.A, chain) },
	})
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after revert differ from before:\n--- before\n%s--- after\n%s", before, after)
	}
	inj.mu.Lock()
	live := len(inj.live)
	inj.mu.Unlock()
	if live != 0 {
		t.Fatalf("%d proxies still running after revert", live)
	}
}

// TestLatencyTransparentAccuracy: a 50ms±0 latency through the transparent proxy adds 50ms to a
// request/response round trip over one TCP connection, within 1ms + 2% at p50 and p99. The
// baseline is a connection opened before the fault (established flows are not redirected), and
// its round trips alternate with the faulty ones, so both see the same load on this shared
// machine: added p50 = p50(faulty) - p50(baseline), and the same at p99. The proxy's own
// upstream connection gets through with the REDIRECT rule active (no loop), and revert leaves
// the nat tables exactly as they were.
func TestLatencyTransparentAccuracy(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	before := natSnapshot(t, l.A)

	base := dialIn(t, l.A, server)
	bs := rtts(t, base, 100, 20*time.Second)
	slices.Sort(bs)
	baseline := percentile(bs, 0.5)
	t.Logf("baseline round trip before the fault p50 %s p99 %s", baseline, percentile(bs, 0.99))

	const delay = 50 * time.Millisecond
	tol := time.Millisecond + delay*2/100
	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "accuracy"}
	act := apply(t, inj, latencyFault("lat50", l.A, "egress", l.B4, port, delay, 0, ""), env)
	desc := strings.Join(act.(injectors.Describer).Describe(), "\n")
	t.Logf("Describe:\n%s", desc)
	wantRule := fmt.Sprintf("nat OUTPUT -d %s/32 -p tcp --dport %d -j REDIRECT --to-ports ", l.B4, port)
	if !strings.Contains(desc, "latency 50ms±0 via transparent proxy") || !strings.Contains(desc, wantRule) {
		t.Fatalf("Describe does not name the mechanism and rule %q:\n%s", wantRule, desc)
	}

	c := dialIn(t, l.A, server)
	if d := rtts(t, base, 5, 10*time.Second); percentile(d, 0.5) > 10*time.Millisecond {
		t.Fatalf("the baseline connection, opened before the fault, is delayed too: %v", d)
	}
	var p50, p99 time.Duration
	skip := ""
	for attempt := 1; ; attempt++ {
		var fs, bs []time.Duration
		for range 120 {
			bs = append(bs, rtts(t, base, 1, 10*time.Second)...)
			fs = append(fs, rtts(t, c, 1, 10*time.Second)...)
		}
		slices.Sort(fs)
		slices.Sort(bs)
		p50 = percentile(fs, 0.5) - percentile(bs, 0.5)
		p99 = percentile(fs, 0.99) - percentile(bs, 0.99)
		t.Logf("attempt %d: baseline p50 %s p99 %s; added round trip p50 %s (error %s) p99 %s (error %s), tolerance ±%s",
			attempt, percentile(bs, 0.5), percentile(bs, 0.99), p50, p50-delay, p99, p99-delay, tol)
		if (p50-delay).Abs() <= tol && (p99-delay).Abs() <= tol {
			break
		}
		// This machine is shared: a retry absorbs a burst of load from elsewhere.
		if attempt < 3 {
			continue
		}
		if (p50 - delay).Abs() > tol {
			t.Fatalf("added round trip p50 %s, want %s ± %s", p50, delay, tol)
		}
		if sat, why := saturated(); sat {
			skip = fmt.Sprintf("p50 within tolerance; p99 %s not assessable: %s", p99, why)
			break
		}
		t.Fatalf("added round trip p99 %s, want %s ± %s", p99, delay, tol)
	}
	_ = base.Close()
	_ = c.Close()

	inj.mu.Lock()
	p := inj.live[chainName(env.RunID, "lat50")]
	inj.mu.Unlock()
	if p == nil {
		t.Fatal("no live proxy")
	}
	if s := p.Stats(); s.Accepted != 1 || s.Proxied != 1 || s.DialErrors != 0 {
		t.Fatalf("proxy stats %+v: want exactly the one client connection, proxied once (a REDIRECT loop would accept more)", s)
	}

	revert(t, inj, act, env)
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after revert differ from before:\n--- before\n%s--- after\n%s", before, after)
	}
	c2 := dialIn(t, l.A, server)
	ds := rtts(t, c2, 20, 10*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m > baseline+5*time.Millisecond {
		t.Fatalf("after revert the round trip is %s (baseline %s): the delay is still there", m, baseline)
	}
	if skip != "" {
		t.Skip(skip)
	}
}

// TestLatencyTransparentJitter checks the spread of the delays: uniform 30ms±10ms stays within
// [20ms, 40ms] and has a standard deviation of 10/√3 ms; normal 30ms σ 5ms has that mean and
// standard deviation.
func TestLatencyTransparentJitter(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	base := dialIn(t, l.A, server)
	bs := rtts(t, base, 200, 20*time.Second)
	slices.Sort(bs)
	baseline := percentile(bs, 0.5)
	_ = base.Close()

	for _, tc := range []struct {
		dist   string
		jitter time.Duration
		wantSD time.Duration
	}{
		{"uniform", 10 * time.Millisecond, time.Duration(float64(10*time.Millisecond) / math.Sqrt(3))},
		{"normal", 5 * time.Millisecond, 5 * time.Millisecond},
	} {
		t.Run(tc.dist, func(t *testing.T) {
			const delay = 30 * time.Millisecond
			inj := NewLatencyInjector()
			env := injectors.Env{RunID: "jitter-" + tc.dist}
			act := apply(t, inj, latencyFault("jit", l.A, "egress", l.B4, port, delay, tc.jitter, tc.dist), env)
			// Four connections in parallel: 400 samples in about 3s.
			var mu sync.Mutex
			var added []time.Duration
			var wg sync.WaitGroup
			for range 4 {
				c := dialIn(t, l.A, server)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ds := rtts(t, c, 100, 20*time.Second)
					mu.Lock()
					for _, d := range ds {
						added = append(added, d-baseline)
					}
					mu.Unlock()
				}()
			}
			wg.Wait()
			slices.Sort(added)
			mean, sd := stats(added)
			lo, hi := added[0], added[len(added)-1]
			iqr := percentile(added, 0.75) - percentile(added, 0.25)
			wantIQR := tc.jitter // uniform: half the width of [delay-jitter, delay+jitter]
			if tc.dist == "normal" {
				wantIQR = time.Duration(1.349 * float64(tc.jitter))
			}
			t.Logf("%d samples: min %s p50 %s max %s mean %s sd %s (want %s) IQR %s (want %s)",
				len(added), lo, percentile(added, 0.5), hi, mean, sd, tc.wantSD, iqr, wantIQR)
			if raceEnabled {
				revert(t, inj, act, env)
				t.Skip("the race detector is on: the spread is only logged")
			}
			// Robust to a few stalled samples: the median and the interquartile range. The median's
			// bound is the accuracy target, 1 ms + 2 % of the delay.
			tol := time.Millisecond + delay/50
			if m := percentile(added, 0.5); (m - delay).Abs() > tol {
				t.Errorf("median added delay %s, want %s ± %s", m, delay, tol)
			}
			if math.Abs(float64(iqr-wantIQR)) > 0.15*float64(wantIQR) {
				t.Errorf("interquartile range %s, want %s ± 15%%", iqr, wantIQR)
			}
			if tc.dist == "uniform" && lo < delay-tc.jitter-200*time.Microsecond {
				t.Errorf("a delay of %s, below delay-jitter %s", lo, delay-tc.jitter)
			}
			if sat, why := saturated(); sat {
				revert(t, inj, act, env)
				t.Skipf("median and spread checked; mean, sd and maximum not assessable: %s", why)
			}
			if (mean - delay).Abs() > time.Millisecond {
				t.Errorf("mean added delay %s, want %s ± 1ms", mean, delay)
			}
			if math.Abs(float64(sd-tc.wantSD)) > 0.1*float64(tc.wantSD) {
				t.Errorf("standard deviation %s, want %s ± 10%%", sd, tc.wantSD)
			}
			if tc.dist == "uniform" {
				// Bounds: nothing below delay-jitter, ever (a delay cannot be cut short); above
				// delay+jitter only by scheduling noise, which on a shared machine can stall any
				// single sample by milliseconds: the top is judged at p99 (the 4th largest of 400).
				p99 := percentile(added, 0.99)
				if lo < delay-tc.jitter-200*time.Microsecond || p99 > delay+tc.jitter+time.Millisecond {
					t.Errorf("delays span [%s, p99 %s], want within [%s, %s]", lo, p99, delay-tc.jitter, delay+tc.jitter)
				}
				if lo > delay-tc.jitter+2*time.Millisecond || hi < delay+tc.jitter-2*time.Millisecond {
					t.Errorf("delays span [%s, %s]: 400 uniform samples should reach near both ends of [%s, %s]", lo, hi, delay-tc.jitter, delay+tc.jitter)
				}
			}
			revert(t, inj, act, env)
		})
	}
}

// TestLatencyLeavesOpenConnectionsAlone: a connection opened before Apply is neither reset nor
// delayed (in a fresh namespace the nat table starts conntrack, which picks such a connection up
// mid-stream as new: only SYNs may be redirected); one opened after Apply is delayed.
func TestLatencyLeavesOpenConnectionsAlone(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	before := dialIn(t, l.A, server)
	rtts(t, before, 5, 5*time.Second)
	inj := NewLatencyInjector()
	apply(t, inj, latencyFault("open", l.A, "egress", l.B4, port, 30*time.Millisecond, 0, ""), injectors.Env{RunID: "open-conns"})
	ds := rtts(t, before, 10, 5*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m > 10*time.Millisecond {
		t.Fatalf("a connection opened before Apply has round trips of %s", m)
	}
	ds = rtts(t, dialIn(t, l.A, server), 10, 5*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m < 30*time.Millisecond {
		t.Fatalf("a connection opened after Apply has round trips of %s, want ≥ 30ms", m)
	}
}

// TestLatencyTransparentIPv6 delays an IPv6 connection (IP6T_SO_ORIGINAL_DST, ip6tables).
func TestLatencyTransparentIPv6(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B6)
	server := netip.AddrPortFrom(l.B6, port)
	before := natSnapshot(t, l.A)
	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "ipv6"}
	act := apply(t, inj, latencyFault("lat6", l.A, "egress", l.B6, port, 40*time.Millisecond, 0, ""), env)
	c := dialIn(t, l.A, server)
	ds := rtts(t, c, 20, 10*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m < 40*time.Millisecond || m > 45*time.Millisecond {
		t.Fatalf("IPv6 round trip p50 %s, want 40ms plus a little", m)
	}
	_ = c.Close()
	revert(t, inj, act, env)
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after revert differ:\n--- before\n%s--- after\n%s", before, after)
	}
}

// TestLatencyTransparentIngress delays connections coming into the namespace (PREROUTING).
func TestLatencyTransparentIngress(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.A, l.A4) // the server is in A, the fault's namespace
	server := netip.AddrPortFrom(l.A4, port)
	base := dialIn(t, l.B, server)
	bs := rtts(t, base, 50, 10*time.Second)
	slices.Sort(bs)
	baseline := percentile(bs, 0.5)
	_ = base.Close()

	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "ingress"}
	act := apply(t, inj, latencyFault("in", l.A, "ingress", l.B4, port, 30*time.Millisecond, 0, ""), env)
	desc := strings.Join(act.(injectors.Describer).Describe(), "\n")
	if !strings.Contains(desc, fmt.Sprintf("nat PREROUTING -s %s/32 -p tcp --dport %d", l.B4, port)) {
		t.Fatalf("Describe:\n%s", desc)
	}
	c := dialIn(t, l.B, server)
	ds := rtts(t, c, 30, 10*time.Second)
	slices.Sort(ds)
	if added := percentile(ds, 0.5) - baseline; (added - 30*time.Millisecond).Abs() > 2*time.Millisecond {
		t.Fatalf("ingress: added round trip %s, want 30ms", added)
	}
	_ = c.Close()
	revert(t, inj, act, env)
}

// TestLatencyRevertFromAnotherProcess: a fresh injector (as `faultline recover` would have) removes
// the rules from the record alone; connections go direct again at once.
func TestLatencyRevertFromAnotherProcess(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	before := natSnapshot(t, l.A)
	first := NewLatencyInjector()
	env := injectors.Env{RunID: "crashed"}
	act := apply(t, first, latencyFault("lat", l.A, "", l.B4, port, 40*time.Millisecond, 0, ""), env)
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	var r latencyRecord
	if err := json.Unmarshal(rec, &r); err != nil || r.Port == 0 || r.PID == 0 || r.Chain == "" {
		t.Fatalf("record %s lacks the listener or chain (%v)", rec, err)
	}
	if err := NewLatencyInjector().Revert(context.Background(), rec, env); err != nil {
		t.Fatalf("Revert from a fresh injector: %v", err)
	}
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after revert differ:\n--- before\n%s--- after\n%s", before, after)
	}
	c := dialIn(t, l.A, server)
	ds := rtts(t, c, 10, 5*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m > 10*time.Millisecond {
		t.Fatalf("round trip %s after the rules were removed: still redirected", m)
	}
}

// TestLatencySweep: a chain of a run the ledger does not own is swept; one of an owned run, and
// another kind's chain, are left alone.
func TestLatencySweep(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	// Unique run IDs: other tests (and other test binaries) may run sweep-able faults meanwhile,
	// and owned() below claims every run but this test's orphan.
	id, err := shortID()
	if err != nil {
		t.Fatal(err)
	}
	orphanEnv := injectors.Env{RunID: "orphan-" + id}
	liveEnv := injectors.Env{RunID: "live-" + id}
	inj := NewLatencyInjector()
	apply(t, inj, latencyFault("b", l.A, "egress", l.B4, port+1, 10*time.Millisecond, 0, ""), liveEnv)
	// A chain of an unowned run whose process still runs is not swept either.
	apply(t, inj, latencyFault("c", l.A, "egress", l.B4, port+2, 10*time.Millisecond, 0, ""), orphanEnv)
	// The orphan's chain is labelled as a dead process's (as after a crash); the live run's by
	// this process. It comes last: a namespace holding a dead run's chain refuses new faults.
	dead := NewLatencyInjector()
	dead.owner = func() string { return "1.1" } // pid 1 did not start at tick 1
	orphan := apply(t, dead, latencyFault("a", l.A, "egress", l.B4, port, 10*time.Millisecond, 0, ""), orphanEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Another injector's chain of the same orphaned run: not the latency sweeper's to remove.
	other := "FAULTLINE-0THERKIND0000000"
	script := "*nat\n:" + other + " - [0:0]\n-A " + other + ` -m comment --comment "faultline run=` + orphanEnv.RunID + ` fault=x kind=partition"` + "\nCOMMIT\n"
	if _, err := l.A.Exec(ctx, "sh", "-c", "printf '%s' '"+script+"' | iptables-restore --noflush"); err != nil {
		t.Fatal(err)
	}
	removed, err := inj.Sweep(ctx, func(run string) bool { return run != orphanEnv.RunID }, injectors.Env{})
	if err != nil {
		// Other tests on this machine create and delete namespaces while the sweep walks them:
		// only an error about this test's namespace counts.
		if strings.Contains(err.Error(), l.A.Name) {
			t.Fatalf("Sweep: %v", err)
		}
		t.Logf("Sweep (other namespaces): %v", err)
	}
	var ours []string
	for _, r := range removed {
		if strings.Contains(r, l.A.Name) {
			ours = append(ours, r)
		}
	}
	if len(ours) != 1 || !strings.Contains(ours[0], chainName(orphanEnv.RunID, "a")) {
		t.Fatalf("Sweep removed %q, want only the orphaned latency chain", ours)
	}
	for chain, want := range map[string]bool{
		chainName(orphanEnv.RunID, "a"): false,
		chainName(liveEnv.RunID, "b"):   true,
		chainName(orphanEnv.RunID, "c"): true,
		other:                           true,
	} {
		if got, err := hasChain(ctx, l.A, chain); err != nil || got != want {
			t.Fatalf("chain %s present = %v (%v), want %v", chain, got, err, want)
		}
	}
	// Reverting the swept fault still succeeds (it closes the listener).
	revert(t, dead, orphan, orphanEnv)
	if _, err := l.A.Exec(ctx, "sh", "-c", "iptables -t nat -F "+other+" && iptables -t nat -X "+other); err != nil {
		t.Fatal(err)
	}
}

// The chain names and owner labels are the network injectors' (injectors/network), so that each
// side's sweeper reads the other's chains right.
func TestNamingMatchesNetworkInjectors(t *testing.T) {
	for _, c := range [][2]string{{"run-1", "lat"}, {"2025-11-25T04:00:00Z/abc", "latency-0"}, {"r", "name with spaces"}} {
		if got, want := chainName(c[0], c[1]), network.ChainName(c[0], c[1]); got != want {
			t.Errorf("chainName%q = %s, network.ChainName = %s", c, got, want)
		}
		if got, want := ownerLabel(c[0], c[1], selfOwner()), network.OwnerLabel(c[0], c[1], "latency"); got != want {
			t.Errorf("ownerLabel%q = %s, network.OwnerLabel = %s", c, got, want)
		}
		if validRunID(c[0]) != network.ValidRunID(c[0]) {
			t.Errorf("validRunID(%q) disagrees with network.ValidRunID", c[0])
		}
	}
}

// TestNetworkSweeperRemovesLatencyChains: the network injectors' sweeper, which scans nat too,
// removes an orphaned latency chain (and its hook) cleanly.
func TestNetworkSweeperRemovesLatencyChains(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	before := natSnapshot(t, l.A)
	id, err := shortID()
	if err != nil {
		t.Fatal(err)
	}
	env := injectors.Env{RunID: "orphan-" + id}
	inj := NewLatencyInjector()
	inj.owner = func() string { return "1.1" } // labelled as a crashed process's
	act := apply(t, inj, latencyFault("a", l.A, "", l.B4, port, 10*time.Millisecond, 0, ""), env)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var swept bool
	for _, ni := range network.Injectors(network.SweepHostNamespace(false)) {
		sw, ok := ni.(injectors.Sweeper)
		if !ok {
			continue
		}
		removed, err := sw.Sweep(ctx, func(run string) bool { return run != env.RunID }, injectors.Env{})
		if err != nil {
			if strings.Contains(err.Error(), l.A.Name) {
				t.Fatalf("network Sweep: %v", err)
			}
			t.Logf("network Sweep (other namespaces): %v", err)
		}
		t.Logf("network sweeper removed %q", removed)
		swept = true
		break
	}
	if !swept {
		t.Fatal("no network injector implements Sweeper")
	}
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after the network sweep differ:\n--- before\n%s--- after\n%s", before, after)
	}
	revert(t, inj, act, env) // still succeeds, and closes the listener
}

// TestLatencyNetem exercises the netem path where the kernel has netem, and says so where it
// does not.
func TestLatencyNetem(t *testing.T) {
	requireNet(t)
	ok, err := ProbeNetem()
	if err != nil {
		t.Fatalf("probe netem: %v", err)
	}
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	f := latencyFault("netem", l.A, "egress", l.B4, port, 40*time.Millisecond, 0, "")
	f.Latency.Mechanism = "netem"
	env := injectors.Env{RunID: "netem"}
	inj := NewLatencyInjector()
	if !ok {
		// Forcing netem on this kernel is refused before anything is touched.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := inj.Prepare(ctx, f, env)
		var refused *policy.RefusedError
		if !errors.As(err, &refused) || !strings.Contains(err.Error(), NetemMissing) {
			t.Fatalf("mechanism netem without netem: %v, want a RefusedError naming %q", err, NetemMissing)
		}
		// And auto says which mechanism it chose, and why.
		f.Latency.Mechanism = "auto"
		act, err := inj.Prepare(ctx, f, env)
		if err != nil {
			t.Fatal(err)
		}
		if tg := strings.Join(act.Targets(), " "); !strings.Contains(tg, "transparent proxy ("+NetemMissing+")") {
			t.Fatalf("auto chose: %s", tg)
		}
		t.Skip(NetemMissing + ": the netem path cannot run here (mechanism netem refused, auto falls back to the transparent proxy)")
	}
	netns.Require(t, "tc")
	qdiscs := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := l.A.Exec(ctx, "tc", "qdisc", "show")
		if err != nil {
			t.Fatalf("tc qdisc show: %v\n%s", err, out)
		}
		return string(out)
	}
	server := netip.AddrPortFrom(l.B4, port)
	base := rtts(t, dialIn(t, l.A, server), 20, 10*time.Second)
	slices.Sort(base)
	before := qdiscs()
	act := apply(t, inj, f, env)
	t.Logf("Describe: %s", strings.Join(act.(injectors.Describer).Describe(), "\n"))
	c := dialIn(t, l.A, server)
	ds := rtts(t, c, 50, 20*time.Second)
	slices.Sort(ds)
	// The bound for the proxy holds for netem too: 1ms + 2% of the delay at p50.
	const delay = 40 * time.Millisecond
	if added := percentile(ds, 0.5) - percentile(base, 0.5); (added - delay).Abs() > time.Millisecond+delay*2/100 {
		t.Fatalf("round trip under netem %s: %s added at p50", delay, added)
	}
	_ = c.Close()
	revert(t, inj, act, env)
	if after := qdiscs(); after != before {
		t.Fatalf("qdiscs after revert differ:\n--- before\n%s--- after\n%s", before, after)
	}
	ds = rtts(t, dialIn(t, l.A, server), 10, 5*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m > 10*time.Millisecond {
		t.Fatalf("after revert the round trip is %s", m)
	}
}

// TestLatencyRefusals: what Prepare refuses, before touching anything.
func TestLatencyRefusals(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inj := NewLatencyInjector()
	env := injectors.Env{RunID: "refusals"}
	for name, mutate := range map[string]func(*runbooks.Latency){
		"missing netns":  func(s *runbooks.Latency) { s.Netns = "fl-test-does-not-exist" },
		"udp with proxy": func(s *runbooks.Latency) { s.Protocol = "udp" },
	} {
		f := latencyFault("r", l.A, "egress", l.B4, 80, 10*time.Millisecond, 0, "")
		mutate(f.Latency)
		_, err := inj.Prepare(ctx, f, env)
		var refused *policy.RefusedError
		if !errors.As(err, &refused) {
			t.Errorf("%s: %v, want a RefusedError", name, err)
		}
	}
	_, err := inj.Prepare(ctx, latencyFault("r", l.A, "egress", l.B4, 80, 10*time.Millisecond, 0, ""), injectors.Env{RunID: "bad id with spaces"})
	var refused *policy.RefusedError
	if !errors.As(err, &refused) {
		t.Errorf("run ID that cannot label a rule: %v, want a RefusedError", err)
	}
	// An applied fault's chain makes a second Prepare of the same run and fault refuse.
	port := echoIn(t, l.B, l.B4)
	f := latencyFault("dup", l.A, "egress", l.B4, port, 10*time.Millisecond, 0, "")
	apply(t, inj, f, env)
	if _, err := inj.Prepare(ctx, f, env); !errors.As(err, &refused) {
		t.Errorf("same fault twice: %v, want a RefusedError", err)
	}
}

// The proxy must not keep a client waiting when it cannot find the original destination (a
// client that connects to the listener directly).
// A client that connects to the transparent listener directly (not through a REDIRECT) is reset.
// The test runs in a namespace of its own, once without connection tracking and once with it (a
// rule that uses conntrack turns it on for the namespace): there SO_ORIGINAL_DST answers with the
// listener's own address, and the proxy used to dial itself in a loop until ports ran out. That was
// the stats {Accepted:9995 Proxied:9993 DialErrors:2} seen in the host namespace, where whether
// conntrack is on depends on what else (other tests, the system) has installed rules.
func TestTransparentDirectConnectionIsReset(t *testing.T) {
	requireNet(t)
	for _, tracked := range []bool{false, true} {
		t.Run(fmt.Sprintf("conntrack=%v", tracked), func(t *testing.T) {
			ns := netns.New(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if tracked {
				if out, err := ns.Exec(ctx, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "RETURN"); err != nil {
					t.Fatalf("turn connection tracking on: %v\n%s", err, out)
				}
			}
			ln, err := ns.ListenTCP(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p, err := Start(Config{Listener: ln, Dial: transparentDial(network.Target{Label: ns.Name, Path: ns.Path}, Mark)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c, err := ns.Dial(ctx, "tcp", ln.Addr().String())
			if err == nil {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = io.ReadAll(c)
			}
			if err == nil {
				t.Fatal("a direct connection to the transparent listener was not reset")
			}
			if s := p.Stats(); s.Accepted != 1 || s.DialErrors != 1 || s.Proxied != 0 {
				t.Fatalf("stats %+v, want the one client accepted and refused", s)
			}
		})
	}
}
