//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetemMissing is the reason given whenever netem is wanted and the kernel has none.
const NetemMissing = "kernel has no netem qdisc"

// ProbeNetem reports whether the kernel has the netem qdisc, by adding one to the loopback of a
// throwaway network namespace (nothing the system uses is touched). It needs CAP_SYS_ADMIN and
// CAP_NET_ADMIN.
func ProbeNetem() (bool, error) {
	type result struct {
		ok  bool
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("probe netem: current namespace: %w", err)}
			return
		}
		defer orig.Close()
		scratch, err := netns.New() // unshare: this thread is now in a fresh namespace
		if err != nil {
			// The thread may or may not have moved: let it die with the goroutine.
			ch <- result{err: fmt.Errorf("probe netem: new namespace: %w", err)}
			return
		}
		ok, perr := tryNetem()
		_ = scratch.Close() // the namespace disappears with its last reference
		if err := netns.Set(orig); err != nil {
			ch <- result{err: errors.Join(perr, fmt.Errorf("probe netem: back to the original namespace: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ok, perr}
	}()
	r := <-ch
	return r.ok, r.err
}

func tryNetem() (bool, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return false, fmt.Errorf("probe netem: netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("probe netem: lo: %w", err)
	}
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(1, 0)},
		netlink.NetemQdiscAttrs{Latency: 1000})
	switch err := h.QdiscAdd(q); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		// "Specified qdisc kind is unknown" (no sch_netem).
		return false, nil
	default:
		return false, fmt.Errorf("probe netem: add a netem qdisc: %w", err)
	}
}

// Handles of the qdiscs faultline puts in place: a prio root whose 4th band holds netem, and
// u32 filters that send the selected traffic to that band. The handle marks them as faultline's.
const (
	prioMajor  = 0xfa19 // fa17: is the network injectors' bandwidth tbf
	netemMajor = 0xfa1a
)

// netemSpec is a latency fault applied with netem on every interface of a namespace.
type netemSpec struct {
	Delay, Jitter time.Duration
	Correlation   float64 // percent
	Egress        bool    // to peers' ports
	Ingress       bool    // replies from local ports to peers (inbound connections)
	Peers         []netip.Prefix
	Ports         []portRange
	Protocol      string // tcp, udp, icmp or "" (all)
}

// u32 offsets (in bytes from the network header; ports assume no IPv4 options / IPv6 extension headers,
// as tc's own "match ip dport" does).
func (s netemSpec) filters(linkIndex int) []*netlink.U32 {
	var out []*netlink.U32
	peers := s.Peers
	if len(peers) == 0 {
		peers = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
	}
	type block struct{ val, mask uint16 }
	var blocks []block
	for _, pr := range s.Ports {
		for _, b := range portBlocks(pr.Lo, pr.Hi) {
			blocks = append(blocks, block{b[0], b[1]})
		}
	}
	if len(blocks) == 0 {
		blocks = []block{{}}
	}
	add := func(peer netip.Prefix, b block, srcPort bool) {
		v6 := peer.Addr().Is6()
		keys := prefixKeys(peer, false)
		if k, ok := protoKey(v6, s.Protocol); ok {
			keys = append(keys, k)
		}
		if b.mask != 0 {
			off := int32(20)
			if v6 {
				off = 40
			}
			k := netlink.TcU32Key{Off: off, Mask: uint32(b.mask), Val: uint32(b.val)}
			if srcPort {
				k.Mask, k.Val = k.Mask<<16, k.Val<<16
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			keys = []netlink.TcU32Key{{}} // match everything of this protocol family
		}
		proto := uint16(unix.ETH_P_IP)
		if v6 {
			proto = unix.ETH_P_IPV6
		}
		out = append(out, &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: linkIndex, Parent: netlink.MakeHandle(prioMajor, 0), Priority: 1, Protocol: proto},
			ClassId:     netlink.MakeHandle(prioMajor, 4),
			Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: keys},
		})
	}
	for _, peer := range peers {
		for _, b := range blocks {
			if s.Egress {
				add(peer, b, false)
			}
			if s.Ingress && (b.mask != 0 || !s.Egress) {
				add(peer, b, true)
			}
		}
	}
	return out
}

func prefixKeys(p netip.Prefix, src bool) []netlink.TcU32Key {
	bits := p.Bits()
	if bits <= 0 {
		return nil
	}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		mask := ^uint32(0) << (32 - bits)
		off := int32(16)
		if src {
			off = 12
		}
		return []netlink.TcU32Key{{Off: off, Mask: mask, Val: be32(a[:]) & mask}}
	}
	a := p.Addr().As16()
	base := int32(24)
	if src {
		base = 8
	}
	var keys []netlink.TcU32Key
	for i := range 4 {
		n := min(max(bits-32*i, 0), 32)
		if n == 0 {
			break
		}
		mask := ^uint32(0) << (32 - n)
		keys = append(keys, netlink.TcU32Key{Off: base + int32(4*i), Mask: mask, Val: be32(a[4*i:]) & mask})
	}
	return keys
}

func protoKey(v6 bool, proto string) (netlink.TcU32Key, bool) {
	var n uint32
	switch proto {
	case "tcp":
		n = unix.IPPROTO_TCP
	case "udp":
		n = unix.IPPROTO_UDP
	case "icmp":
		n = unix.IPPROTO_ICMP
		if v6 {
			n = unix.IPPROTO_ICMPV6
		}
	default:
		return netlink.TcU32Key{}, false
	}
	if v6 {
		return netlink.TcU32Key{Off: 4, Mask: 0x0000ff00, Val: n << 8}, true // next header
	}
	return netlink.TcU32Key{Off: 8, Mask: 0x00ff0000, Val: n << 16}, true // protocol
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// portBlocks splits lo..hi into value/mask blocks a u32 key can match.
func portBlocks(lo, hi uint16) [][2]uint16 {
	var out [][2]uint16
	for x := uint32(lo); x <= uint32(hi); {
		size := uint32(1)
		for x%(size*2) == 0 && x+size*2-1 <= uint32(hi) && size < 1<<16 {
			size *= 2
		}
		out = append(out, [2]uint16{uint16(x), uint16(^(size - 1))})
		x += size
	}
	return out
}

// netemInterfaces lists the interfaces netem goes on: all but loopback, and loopback too when a
// peer is a loopback address.
func netemInterfaces(h *netlink.Handle, peers []netip.Prefix) ([]netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	wantLo := false
	for _, p := range peers {
		if p.Addr().IsLoopback() {
			wantLo = true
		}
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Attrs().Name == "lo" && !wantLo {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// checkNetemFree refuses interfaces whose root qdisc someone configured (replacing it would
// destroy their setup; reverting would not bring it back).
func checkNetemFree(h *netlink.Handle, links []netlink.Link) error {
	for _, l := range links {
		qs, err := h.QdiscList(l)
		if err != nil {
			return fmt.Errorf("qdiscs of %s: %w", l.Attrs().Name, err)
		}
		for _, q := range qs {
			a := q.Attrs()
			if a.Parent == netlink.HANDLE_ROOT && a.Handle != 0 && !ours(q) {
				return fmt.Errorf("%s already has a root qdisc %s %s: replacing it would destroy it", l.Attrs().Name, q.Type(), netlink.HandleStr(a.Handle))
			}
		}
	}
	return nil
}

// applyNetem puts prio + netem + filters on each interface.
func applyNetem(h *netlink.Handle, links []netlink.Link, s netemSpec) error {
	for _, l := range links {
		idx := l.Attrs().Index
		prio := netlink.NewPrio(netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(prioMajor, 0)})
		prio.Bands = 4
		if err := h.QdiscReplace(prio); err != nil {
			return fmt.Errorf("add prio root qdisc on %s: %w", l.Attrs().Name, err)
		}
		nq := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(prioMajor, 4), Handle: netlink.MakeHandle(netemMajor, 0)},
			netlink.NetemQdiscAttrs{
				Latency:   uint32(s.Delay / time.Microsecond),
				Jitter:    uint32(s.Jitter / time.Microsecond),
				DelayCorr: float32(s.Correlation),
				Limit:     10000,
			})
		if err := h.QdiscAdd(nq); err != nil {
			return fmt.Errorf("add netem qdisc on %s: %w", l.Attrs().Name, err)
		}
		for _, f := range s.filters(idx) {
			if err := h.FilterAdd(f); err != nil {
				return fmt.Errorf("add u32 filter on %s: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

// removeNetem deletes faultline's root qdisc (and with it netem and the filters) from each named
// interface that still has it.
func removeNetem(h *netlink.Handle, names []string) error {
	var errs []error
	for _, name := range names {
		l, err := h.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				continue // the interface is gone, and its qdiscs with it
			}
			errs = append(errs, fmt.Errorf("interface %s: %w", name, err))
			continue
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("qdiscs of %s: %w", name, err))
			continue
		}
		for _, q := range qs {
			if q.Attrs().Parent == netlink.HANDLE_ROOT && ours(q) {
				if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete root qdisc of %s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// ours reports whether q is faultline's latency root qdisc.
func ours(q netlink.Qdisc) bool {
	return q.Type() == "prio" && q.Attrs().Handle == netlink.MakeHandle(prioMajor, 0)
}

// describe renders what applyNetem puts on one interface.
func (s netemSpec) describe(iface string) string {
	var sel []string
	if s.Protocol != "" {
		sel = append(sel, s.Protocol)
	}
	for _, p := range s.Peers {
		sel = append(sel, "dst "+p.String())
	}
	for _, pr := range s.Ports {
		switch {
		case s.Egress && s.Ingress:
			sel = append(sel, "dport or sport "+pr.String())
		case s.Ingress:
			sel = append(sel, "sport "+pr.String()+" (replies of inbound connections)")
		default:
			sel = append(sel, "dport "+pr.String())
		}
	}
	if len(sel) == 0 {
		sel = append(sel, "all traffic")
	}
	d := FormatDelay(s.Delay, s.Jitter, Uniform)
	if s.Correlation > 0 {
		d += fmt.Sprintf(" correlation %g%%", s.Correlation)
	}
	return fmt.Sprintf("netem delay %s on %s (root prio %x: band 4, u32 match %s)", d, iface, prioMajor, strings.Join(sel, ", "))
}
