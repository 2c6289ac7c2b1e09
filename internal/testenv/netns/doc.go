// Package netns gives tests real Linux network namespaces joined by veth pairs, so that network
// faults (iptables rules, qdiscs, transparent proxies) run against the real kernel without touching
// the host's own network.
//
// Typical use:
//
//	netns.Require(t, "iptables")                 // skip unless root with ip(8) (and iptables); t.Fatal under CI=true
//	l := netns.NewPair(t)                        // namespaces l.A and l.B joined by a veth; all removed at cleanup
//	ln, err := l.B.ListenTCP(ctx, netip.AddrPortFrom(l.B4, 0).String()) // the listener lives in B
//	c, err := l.A.Dial(ctx, "tcp", ln.Addr().String())                  // a socket made in A, across the veth
//	out, err := l.A.Exec(ctx, "iptables-save")   // a command run inside A
//	err = l.A.Do(func() error { ... })           // any code, on an OS thread inside A
//	h, err := l.A.Netlink()                      // a netlink handle bound to A (links, qdiscs)
//
// The API:
//   - Require(t, tools...) checks root, ip(8) and extra tools.
//   - New(t) makes one namespace (NS: Name for `ip netns`, Path = /var/run/netns/NAME), loopback up.
//   - NewPair(t) makes two namespaces and Connect(t, a, b) joins them; Connect also joins existing
//     namespaces, so a namespace can take part in several links (a router in the middle).
//   - NS.Do, NS.ListenTCP, NS.ListenUDP, NS.Dial, NS.Exec, NS.Netlink; DoPath for any namespace file.
//
// Addresses: every link gets a subnet number X (1..254) unique among all links alive on this machine
// (claimed with a lock file under /run/faultline-testenv, so concurrent test binaries never share
// one). Side A has 10.200.X.1/24 and fd00:200:X::1/64, side B 10.200.X.2/24 and fd00:200:X::2/64
// (X in decimal digits in both; IPv6 addresses skip duplicate address detection, so they work at
// once). Interfaces are named flXa and flXb. These addresses exist only inside the namespaces the
// test created; send test traffic nowhere else.
//
// Namespaces are named fl-test-<random> and are visible to `ip netns` while the test runs, so
// injectors can target them by name (NS.Name) or by path (NS.Path). Everything is removed with
// t.Cleanup; sockets and handles the helpers return are closed then too.
//
// Do runs its function on a goroutine locked to an OS thread that has entered the namespace;
// goroutines started by that function do NOT inherit the namespace, but processes it forks do.
// Sockets created inside keep the namespace after Do returns, which is how ListenTCP, ListenUDP
// and Dial work. If the thread cannot be put back into its original namespace it is left locked,
// so that the Go runtime destroys it instead of reusing a thread in a foreign namespace.
package netns
