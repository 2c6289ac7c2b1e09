//go:build linux

package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"github.com/faultline-dev/faultline/injectors/network"
	"golang.org/x/sys/unix"
)

// Mark is the SO_MARK faultline's transparent proxy sets on its own upstream connections. Its
// REDIRECT chains return early for packets carrying it; without that, the proxy's upstream dial
// would match the rule again and loop back into the proxy. Only the upper 16 bits are used: the
// lower ones are where kube-proxy, Istio and Cilium keep theirs.
const Mark = 0x1f170000

// soOriginalDst is SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST (SOL_IPV6): both 80.
const soOriginalDst = 80

// OriginalDst returns the destination a REDIRECTed connection was addressed to before the nat
// rule rewrote it, from the conntrack entry.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a TCP connection", c)
	}
	la, _ := tc.LocalAddr().(*net.TCPAddr)
	v6 := la != nil && la.IP.To4() == nil
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var buf [28]byte // sizeof(struct sockaddr_in6); a sockaddr_in is 16
	size := uint32(16)
	level := unix.SOL_IP
	if v6 {
		size, level = 28, unix.SOL_IPV6
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		// ENOENT: no nat entry, i.e. a client connected to the listener directly.
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST on %s: %w", tc.LocalAddr(), err)
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port)
	if v6 {
		dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port)
	}
	// Where conntrack tracks connections but no nat rule rewrote this one (a client connected to
	// the listener directly), the "original" destination is the listener itself: dialling it
	// would connect the proxy to itself, again and again, until ports or descriptors run out.
	if la != nil && la.AddrPort().Addr().Unmap() == dst.Addr().Unmap() && la.AddrPort().Port() == dst.Port() {
		return netip.AddrPort{}, fmt.Errorf("original destination of %s is the listener itself: the connection was not redirected", tc.LocalAddr())
	}
	return dst, nil
}

// markedDialer dials with SO_MARK set to mark.
func markedDialer(mark int) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt SO_MARK: %w", serr)
		}
		return nil
	}}
}

// transparentDial returns a DialFunc that connects each REDIRECTed client to its original
// destination, from inside ns, with the mark that keeps the connection out of the REDIRECT rule.
func transparentDial(ns network.Target, mark int) DialFunc {
	d := markedDialer(mark)
	return func(ctx context.Context, client net.Conn) (net.Conn, error) {
		dst, err := OriginalDst(client)
		if err != nil {
			return nil, err
		}
		var c net.Conn
		dial := func() error {
			var err error
			c, err = d.DialContext(ctx, "tcp", dst.String())
			return err
		}
		err = ns.Do(dial)
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			// The fault was applied by a path such as /proc/PID/ns/net whose process has exited
			// while the namespace lives on (its listener is in there, for one): an alias of it
			// still leads in.
			if found, gone, lerr := ns.Locate(); lerr == nil && !gone && found.Path != ns.Path {
				err = found.Do(dial)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dial original destination %s from %s: %w", dst, ns, err)
		}
		return c, nil
	}
}

// listenInNs opens a TCP listener per family inside ns, all on the same port (a REDIRECT rule
// names one port for both iptables and ip6tables). any listens on every address (needed for
// ingress, where REDIRECT sends to the address of the incoming interface); otherwise loopback
// only (egress REDIRECT sends to 127.0.0.1 / ::1).
func listenInNs(ctx context.Context, ns network.Target, v4, v6, any bool) (net.Listener, uint16, error) {
	host4, host6 := "127.0.0.1", "::1"
	if any {
		host4, host6 = "0.0.0.0", "::"
	}
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		var lns []net.Listener
		var port uint16
		err := ns.Do(func() error {
			if v4 {
				ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort(host4, "0"))
				if err != nil {
					return err
				}
				lns = append(lns, ln)
				port = uint16(ln.Addr().(*net.TCPAddr).Port)
			}
			if v6 {
				ln, err := lc.Listen(ctx, "tcp6", net.JoinHostPort(host6, fmt.Sprint(port)))
				if err != nil {
					return err
				}
				lns = append(lns, ln)
				port = uint16(ln.Addr().(*net.TCPAddr).Port)
			}
			return nil
		})
		if err == nil {
			return newMultiListener(lns), port, nil
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
		// The port free for IPv4 may be taken for IPv6: try another.
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 20 {
			continue
		}
		return nil, 0, fmt.Errorf("listen in %s: %w", ns, err)
	}
}

// multiListener accepts from several listeners (one per address family) as one.
type multiListener struct {
	lns   []net.Listener
	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newMultiListener(lns []net.Listener) net.Listener {
	if len(lns) == 1 {
		return lns[0]
	}
	m := &multiListener{lns: lns, conns: make(chan net.Conn), errs: make(chan error, len(lns)), done: make(chan struct{})}
	for _, ln := range lns {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						select {
						case m.errs <- err:
						case <-m.done:
							return
						}
						continue
					}
					return
				}
				select {
				case m.conns <- c:
				case <-m.done:
					_ = c.Close()
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case err := <-m.errs:
		return nil, err
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	var errs []error
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			if err := ln.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		m.wg.Wait()
	})
	return errors.Join(errs...)
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }
