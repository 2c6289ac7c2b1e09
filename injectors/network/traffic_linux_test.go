package network_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
	"github.com/vishvananda/netlink"
)

// binomialInterval is the central interval [lo, hi] holding at least conf of the Binomial(n, p)
// distribution: P(X < lo) <= (1-conf)/2 and P(X > hi) <= (1-conf)/2.
func binomialInterval(n int, p, conf float64) (lo, hi int) {
	tail := (1 - conf) / 2
	lgN, _ := math.Lgamma(float64(n + 1))
	pmf := func(k int) float64 {
		a, _ := math.Lgamma(float64(k + 1))
		b, _ := math.Lgamma(float64(n - k + 1))
		return math.Exp(lgN - a - b + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	cdf := 0.0
	lo, hi = 0, n
	for k := 0; k <= n; k++ {
		if cdf+pmf(k) > tail && cdf <= tail {
			lo = k
		}
		cdf += pmf(k)
		if 1-cdf <= tail {
			hi = k
			break
		}
	}
	return lo, hi
}

func TestBinomialInterval(t *testing.T) {
	// Normal approximation for n=2000, p=0.3: 600 ± 3.29*20.49 = [532.6, 667.4].
	lo, hi := binomialInterval(2000, 0.3, 0.999)
	if lo < 530 || lo > 536 || hi < 664 || hi > 670 {
		t.Fatalf("binomialInterval(2000, 0.3, 0.999) = [%d, %d], want about [533, 667]", lo, hi)
	}
}

// TestLossDropsTheConfiguredShare sends 2,000 numbered UDP datagrams through a 30% loss fault and
// checks the measured loss against the binomial 99.9% interval. The fault is on the data port
// only; after every batch of 100 a marker datagram on another port (same path, not subject to the
// fault) tells the sender that the batch has been delivered or dropped, so no queue between the
// two namespaces can overflow and add loss of its own.
func TestLossDropsTheConfiguredShare(t *testing.T) {
	require(t)
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	data, err := l.B.ListenUDP(ctx, addrPort(l.B4, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := forceReadBuffer(data, 8<<20); err != nil {
		t.Fatal(err)
	}
	marker, err := l.B.ListenUDP(ctx, addrPort(l.B4, 0))
	if err != nil {
		t.Fatal(err)
	}
	dataPort := data.LocalAddr().(*net.UDPAddr).Port
	send, err := l.A.Dial(ctx, "udp", data.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	sendMarker, err := l.A.Dial(ctx, "udp", marker.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}

	const p, n, batch = 0.3, 2000, 100
	applied(t, injectorFor(t, network.KindLoss), runbooks.Fault{Name: "lossy", Loss: &runbooks.Loss{Probability: p,
		NetworkTarget: runbooks.NetworkTarget{Netns: l.B.Name, Direction: "ingress", Protocol: "udp",
			Peers: []string{l.A4.String()}, Ports: []string{strconv.Itoa(dataPort)}}}}, newEnv(t))

	start := time.Now()
	buf := make([]byte, 64)
	for b := 0; b < n/batch; b++ {
		for i := 0; i < batch; i++ {
			binary.BigEndian.PutUint32(buf, uint32(b*batch+i))
			if _, err := send.Write(buf[:8]); err != nil {
				t.Fatal(err)
			}
		}
		binary.BigEndian.PutUint32(buf, uint32(b))
		if _, err := sendMarker.Write(buf[:4]); err != nil {
			t.Fatal(err)
		}
		if err := marker.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		m, _, err := marker.ReadFrom(buf)
		if err != nil || m != 4 || binary.BigEndian.Uint32(buf) != uint32(b) {
			t.Fatalf("marker %d: %d bytes %x, %v", b, m, buf[:m], err)
		}
	}
	// Everything sent has been delivered or dropped by now; drain what was delivered.
	seen := make([]bool, n)
	received := 0
	for {
		if err := data.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		m, _, err := data.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seq := binary.BigEndian.Uint32(buf)
		if m != 8 || seq >= n || seen[seq] {
			t.Fatalf("unexpected datagram: %d bytes, seq %d", m, seq)
		}
		seen[seq] = true
		received++
	}
	lost := n - received
	lo, hi := binomialInterval(n, p, 0.999)
	t.Logf("lost %d of %d datagrams (%.1f%%) in %v; 99.9%% interval for p=%.2f: [%d, %d]",
		lost, n, 100*float64(lost)/n, time.Since(start).Round(time.Millisecond), p, lo, hi)
	if lost < lo || lost > hi {
		t.Fatalf("lost %d of %d, outside the binomial 99.9%% interval [%d, %d] for p=%g", lost, n, lo, hi, p)
	}
}

// forceReadBuffer sets SO_RCVBUFFORCE (root may exceed net.core.rmem_max).
func forceReadBuffer(c *net.UDPConn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	return serr
}

func TestBandwidthConformance(t *testing.T) {
	require(t)
	t.Parallel()
	l := netns.NewPair(t)
	h, err := l.A.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	injectortest.Run(t, injectorFor(t, network.KindBandwidth), injectortest.Case{
		Fault: runbooks.Fault{Name: "slow", Bandwidth: &runbooks.Bandwidth{Netns: l.A.Name, Interface: l.AIf, Rate: "1mbit"}},
		Env:   newEnv(t), Revertible: true,
		Active: func(context.Context) (bool, error) {
			link, err := h.LinkByName(l.AIf)
			if err != nil {
				return false, err
			}
			qs, err := h.QdiscList(link)
			if err != nil {
				return false, err
			}
			for _, q := range qs {
				if q.Attrs().Parent == netlink.HANDLE_ROOT {
					return q.Type() == "tbf" && q.Attrs().Handle == network.TbfHandle, nil
				}
			}
			return false, nil
		},
	})
}

// TestBandwidthLimitsThroughput limits a veth to 10 Mbit/s and measures a TCP transfer of about
// 4.5 s across it at the receiver; then checks that revert leaves the qdiscs as they were.
func TestBandwidthLimitsThroughput(t *testing.T) {
	require(t)
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	h, err := l.A.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	before := qdiscs(t, h, l.AIf)
	ln, err := l.B.ListenTCP(ctx, addrPort(l.B4, 0))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		bytes       int64
		first, last time.Time
		err         error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var r result
		buf := make([]byte, 64<<10)
		for {
			m, err := c.Read(buf)
			if m > 0 {
				if r.first.IsZero() {
					r.first = time.Now()
				} else {
					r.bytes += int64(m) // bytes after the first read, over the time after it
				}
				r.last = time.Now()
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.err = err
				break
			}
		}
		done <- r
	}()

	env := newEnv(t)
	inj := injectorFor(t, network.KindBandwidth)
	act, rec := applied(t, inj, runbooks.Fault{Name: "ten-mbit", Bandwidth: &runbooks.Bandwidth{
		Netns: l.A.Name, Interface: l.AIf, Rate: "10mbit"}}, env)
	t.Logf("%q", act.(injectors.Describer).Describe())

	const rate = 10e6             // bits per second
	const total = 5_500_000       // bytes: about 4.6 s at 10 Mbit/s of TCP payload
	const payload = 1448.0 / 1514 // TCP payload per byte on the wire (timestamps on, 1500 MTU)
	c, err := l.A.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, total)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	elapsed := r.last.Sub(r.first)
	goodput := float64(r.bytes*8) / elapsed.Seconds()
	wire := goodput / payload
	t.Logf("goodput %.2f Mbit/s (%.2f Mbit/s on the wire) over %v for %d bytes", goodput/1e6, wire/1e6, elapsed.Round(time.Millisecond), r.bytes)
	// tbf meters whole frames; compare what crossed the wire (payload plus TCP/IP/Ethernet headers).
	if wire < 0.9*rate || wire > 1.1*rate {
		t.Fatalf("TCP throughput %.2f Mbit/s on the wire (%.2f Mbit/s goodput) is not within ±10%% of 10 Mbit/s", wire/1e6, goodput/1e6)
	}

	if err := inj.Revert(ctx, rec, env); err != nil {
		t.Fatal(err)
	}
	if after := qdiscs(t, h, l.AIf); !slices.Equal(after, before) {
		t.Fatalf("qdiscs after revert:\n%q\nbefore:\n%q", after, before)
	}
}

// TestBandwidthRestoresTheOriginalQdisc configures an explicit root qdisc with non-default
// settings of every type faultline restores, shapes the link, reverts, and compares all qdiscs of
// the link before and after; root qdiscs it cannot restore exactly are refused.
func TestBandwidthRestoresTheOriginalQdisc(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	l := netns.NewPair(t)
	h, err := l.A.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName(l.AIf)
	if err != nil {
		t.Fatal(err)
	}
	attrs := func(major uint16) netlink.QdiscAttrs {
		return netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(major, 0), Parent: netlink.HANDLE_ROOT}
	}
	for _, q := range []netlink.Qdisc{
		&netlink.Tbf{QdiscAttrs: attrs(0x11), Rate: 1 << 20, Limit: 40000, Buffer: netlink.Xmittime(1<<20, 20000)},
		&netlink.PfifoFast{QdiscAttrs: attrs(0x15)},
	} {
		t.Run(q.Type(), func(t *testing.T) {
			if err := h.QdiscReplace(q); err != nil {
				t.Fatalf("configure %s: %v", q.Type(), err)
			}
			before := qdiscs(t, h, l.AIf)
			env := newEnv(t)
			inj := injectorFor(t, network.KindBandwidth)
			_, rec := applied(t, inj, runbooks.Fault{Name: "bw", Bandwidth: &runbooks.Bandwidth{
				Netns: l.A.Name, Interface: l.AIf, Rate: "20mbit", Burst: "64kb", Latency: runbooks.Duration(20 * time.Millisecond)}}, env)
			if during := qdiscs(t, h, l.AIf); slices.Equal(during, before) {
				t.Fatal("the fault changed no qdisc")
			}
			if err := inj.Revert(ctx, rec, env); err != nil {
				t.Fatal(err)
			}
			if after := qdiscs(t, h, l.AIf); !slices.Equal(after, before) {
				t.Fatalf("qdiscs after revert:\n%q\nbefore:\n%q", after, before)
			}
		})
	}
	fqc := netlink.NewFqCodel(attrs(0x13))
	fqc.Limit = 1234
	for _, q := range []netlink.Qdisc{
		netlink.NewHtb(attrs(0x16)),
		&netlink.GenericQdisc{QdiscAttrs: attrs(0x17), QdiscType: "pfifo"},
		fqc,
	} {
		t.Run("refuses "+q.Type(), func(t *testing.T) {
			if err := h.QdiscReplace(q); err != nil {
				if errors.Is(err, syscall.ENOENT) {
					t.Skipf("this kernel has no %s qdisc", q.Type())
				}
				t.Fatalf("configure %s: %v", q.Type(), err)
			}
			_, err = injectorFor(t, network.KindBandwidth).Prepare(ctx, runbooks.Fault{Bandwidth: &runbooks.Bandwidth{
				Netns: l.A.Name, Interface: l.AIf, Rate: "20mbit"}}, newEnv(t))
			var refused *policy.RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("explicit %s root: got %v, want a refusal", q.Type(), err)
			}
			t.Log(err)
		})
	}
	var refused *policy.RefusedError
	// So is an interface that does not exist.
	_, err = injectorFor(t, network.KindBandwidth).Prepare(ctx, runbooks.Fault{Bandwidth: &runbooks.Bandwidth{
		Netns: l.A.Name, Interface: "nope0", Rate: "20mbit"}}, newEnv(t))
	if !errors.As(err, &refused) {
		t.Fatalf("missing interface: got %v, want a refusal", err)
	}
	// A record round-trips through JSON with the original qdisc in it.
	if err := h.QdiscReplace(&netlink.Tbf{QdiscAttrs: attrs(0x18), Rate: 1 << 20, Limit: 40000, Buffer: netlink.Xmittime(1<<20, 20000)}); err != nil {
		t.Fatal(err)
	}
	act, err := injectorFor(t, network.KindBandwidth).Prepare(ctx, runbooks.Fault{Bandwidth: &runbooks.Bandwidth{
		Netns: l.A.Name, Interface: l.AIf, Rate: "20mbit"}}, newEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Original struct {
			Type   string          `json:"type"`
			Params json.RawMessage `json:"params"`
		} `json:"original"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Original.Type != "tbf" || len(rec.Original.Params) == 0 {
		t.Fatalf("record %s: %v", raw, err)
	}
}
