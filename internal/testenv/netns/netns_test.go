//go:build linux

package netns_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/netns"
	vnetns "github.com/vishvananda/netns"
)

func TestPairCarriesTCPAndUDPBothFamilies(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := netns.NewPair(t)
	if l.A4.String() != "10.200."+strconv.Itoa(l.Subnet)+".1" || l.B6.String() != "fd00:200:"+strconv.Itoa(l.Subnet)+"::2" {
		t.Fatalf("addresses %s %s do not follow the 10.200.X.Y / fd00:200:X::Y plan (X=%d)", l.A4, l.B6, l.Subnet)
	}
	for _, addr := range []netip.Addr{l.B4, l.B6} {
		ln, err := l.B.ListenTCP(ctx, netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		c, err := l.A.Dial(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo over %s: %q, %v", addr, buf, err)
		}
		if !netip.MustParseAddrPort(c.LocalAddr().String()).Addr().Unmap().IsPrivate() {
			t.Fatalf("local address %s is not a test address", c.LocalAddr())
		}
	}

	pc, err := l.B.ListenUDP(ctx, netip.AddrPortFrom(l.B4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	u, err := l.A.Dial(ctx, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("datagram")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "datagram" {
		t.Fatalf("udp: %q, %v", buf[:n], err)
	}
}

func TestNamespacesAreIsolatedFromTheHost(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := netns.NewPair(t)
	host, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range host {
		if ifc.Name == l.AIf || ifc.Name == l.BIf {
			t.Fatalf("veth end %s appeared in the host namespace", ifc.Name)
		}
	}
	out, err := l.A.Exec(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), l.AIf) || strings.Contains(string(out), l.BIf) {
		t.Fatalf("ip link in A:\n%s", out)
	}
	// Do really runs inside, and the calling thread is back where it was afterwards.
	var inside vnetns.NsHandle
	if err := l.A.Do(func() error {
		var err error
		inside, err = vnetns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	want, err := vnetns.GetFromPath(l.A.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if !inside.Equal(want) {
		t.Fatalf("Do ran in %s, want %s", inside.UniqueId(), want.UniqueId())
	}
	self, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if self.Equal(want) {
		t.Fatal("the test's own thread ended up in the test namespace")
	}
}

func TestExecReportsStderr(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := netns.New(t)
	_, err := n.Exec(ctx, "ip", "link", "show", "no-such-device")
	if err == nil || !strings.Contains(err.Error(), "no-such-device") {
		t.Fatalf("want an error naming the device, got %v", err)
	}
	out, err := n.Exec(ctx, "ip", "-o", "addr", "show", "lo")
	if err != nil || !bytes.Contains(out, []byte("127.0.0.1")) {
		t.Fatalf("lo in a fresh namespace: %s %v", out, err)
	}
}
