//go:build linux

package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/vishvananda/netlink"
)

func TestPortBlocksCoverExactly(t *testing.T) {
	for _, r := range [][2]uint16{{80, 80}, {8000, 8100}, {1, 65535}, {1023, 1025}, {65535, 65535}} {
		covered := map[uint32]int{}
		for _, b := range portBlocks(r[0], r[1]) {
			for p := uint32(0); p <= 65535; p++ {
				if uint16(p)&b[1] == b[0] {
					covered[p]++
				}
			}
		}
		for p := uint32(0); p <= 65535; p++ {
			in := p >= uint32(r[0]) && p <= uint32(r[1])
			if (in && covered[p] != 1) || (!in && covered[p] != 0) {
				t.Fatalf("range %v: port %d covered %d times", r, p, covered[p])
			}
		}
	}
}

func TestNetemFilters(t *testing.T) {
	s := netemSpec{
		Delay: 50 * time.Millisecond, Egress: true, Ingress: true, Protocol: "tcp",
		Peers: []netip.Prefix{netip.MustParsePrefix("10.200.1.2/32"), netip.MustParsePrefix("fd00:200:1::/64")},
		Ports: []portRange{{5432, 5432}},
	}
	fs := s.filters(7)
	if len(fs) != 4 { // 2 peers × (egress dport + ingress sport)
		t.Fatalf("%d filters, want 4", len(fs))
	}
	v4 := fs[0]
	want := []netlink.TcU32Key{
		{Off: 16, Mask: 0xffffffff, Val: 0x0ac80102}, // dst 10.200.1.2
		{Off: 8, Mask: 0x00ff0000, Val: 6 << 16},     // tcp
		{Off: 20, Mask: 0x0000ffff, Val: 5432},       // dport
	}
	if v4.Protocol != 0x0800 || v4.ClassId != netlink.MakeHandle(prioMajor, 4) || len(v4.Sel.Keys) != 3 {
		t.Fatalf("v4 filter %+v", v4)
	}
	for i, k := range want {
		if v4.Sel.Keys[i] != k {
			t.Errorf("v4 key %d = %+v, want %+v", i, v4.Sel.Keys[i], k)
		}
	}
	if sport := fs[1].Sel.Keys[2]; sport.Mask != 0xffff0000 || sport.Val != 5432<<16 {
		t.Errorf("ingress key %+v, want sport 5432", sport)
	}
	v6 := fs[2]
	if v6.Protocol != 0x86dd || len(v6.Sel.Keys) != 4 || v6.Sel.Keys[0] != (netlink.TcU32Key{Off: 24, Mask: 0xffffffff, Val: 0xfd000200}) ||
		v6.Sel.Keys[1] != (netlink.TcU32Key{Off: 28, Mask: 0xffffffff, Val: 0x00010000}) {
		t.Errorf("v6 filter keys %+v", v6.Sel.Keys)
	}
	if d := s.describe("eth0"); !strings.Contains(d, "netem delay 50ms±0 on eth0") {
		t.Errorf("describe: %s", d)
	}
}

func TestRedirectScriptAndRemoval(t *testing.T) {
	s := redirectSpec{
		Chain: "FAULTLINE-ABC", Comment: ownerLabel("run1", "lat", "42.7"), Egress: true, Ingress: true,
		Peers: []netip.Prefix{netip.MustParsePrefix("10.200.1.2/32")}, Ports: []portRange{{8000, 8100}},
		ToPort: 41234, Mark: Mark, Family: familyOf(false),
	}
	got := s.script()
	want := `*nat
:FAULTLINE-ABC - [0:0]
-A FAULTLINE-ABC -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7"
-A FAULTLINE-ABC -m mark --mark 0x1f170000 -j RETURN
-A FAULTLINE-ABC -p tcp -d 10.200.1.2/32 -m tcp --syn --dport 8000:8100 -m conntrack --ctstate NEW -m addrtype --src-type LOCAL -j REDIRECT --to-ports 41234
-A FAULTLINE-ABC -p tcp -s 10.200.1.2/32 -m tcp --syn --dport 8000:8100 -m conntrack --ctstate NEW -m addrtype ! --src-type LOCAL --dst-type LOCAL -j REDIRECT --to-ports 41234
-I OUTPUT -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
-I PREROUTING -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
COMMIT
`
	if got != want {
		t.Fatalf("script:\n%s\nwant:\n%s", got, want)
	}
	saved := `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FAULTLINE-ABC - [0:0]
:FAULTLINE-OTHER - [0:0]
-A PREROUTING -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
-A OUTPUT -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
-A OUTPUT -j FAULTLINE-OTHER
-A FAULTLINE-ABC -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7"
COMMIT
`
	tbl := parseNat([]byte(saved))
	rm := tbl.removeScript("FAULTLINE-ABC")
	wantRm := `*nat
-D PREROUTING -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
-D OUTPUT -p tcp -m comment --comment "faultline run=run1 fault=lat kind=latency owner=42.7" -j FAULTLINE-ABC
-F FAULTLINE-ABC
-X FAULTLINE-ABC
COMMIT
`
	if rm != wantRm {
		t.Fatalf("remove script:\n%s\nwant:\n%s", rm, wantRm)
	}
	if tbl.removeScript("FAULTLINE-GONE") != "" {
		t.Fatal("a missing chain must give no script")
	}
	l, ok := network.ParseOwnerLabel(commentOf(tbl.rules["FAULTLINE-ABC"][0]))
	if !ok || l.Run != "run1" || l.Kind != "latency" || l.Owner != "42.7" {
		t.Fatalf("label read back as %+v %v", l, ok)
	}
	if !ownerAlive(selfOwner()) || ownerAlive("42.7") && selfOwner() != "42.7" {
		t.Fatal("ownerAlive misjudges this process or a made-up one")
	}
}
