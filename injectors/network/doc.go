// Package network injects network faults on Linux: partition (iptables DROP), reject (REJECT),
// loss (random drop with -m statistic), shard-isolation (a named shard cut off from its peers
// both ways) and bandwidth (a tbf qdisc). Register them all with
//
//	reg, err := injectors.NewRegistry(append(otherInjectors, network.Injectors()...)...)
//
// # One chain per fault
//
// Every iptables fault owns one chain, FAULTLINE-<16 hex digits of sha256(run ID, fault name)>
// (ChainName), in the filter table of each address family it touches: IPv4 rules go to iptables,
// rules for IPv6 peers to ip6tables, and a fault without peers gets both. The first rule of the
// chain is a no-op label, `-m comment --comment "faultline run=<run> fault=<name> kind=<kind>"`
// (OwnerLabel), which is how Sweep tells who owns a chain it finds. The chain is jumped to from the
// top of INPUT (ingress) and/or OUTPUT (egress); FORWARD is left alone on purpose: a fault targets
// one namespace's own traffic (a pod's namespace is targeted by netnsPath), and hooking FORWARD
// in a host namespace would extend the blast radius to every container routed through it.
// Without peers the hooks skip the loopback interface, so "partition everything" does not also
// cut a namespace off from itself.
//
// Apply installs a family's chain, label, rules and hooks in one `iptables-restore --noflush`
// transaction, which is atomic per family (per-rule iptables execs were measured ~100x slower for
// 1,000 rules; see BenchmarkApplyPerRuleExec). Revert is unhook + flush + delete, again one
// iptables-restore transaction per family, so its cost does not grow with the number of rules;
// when that transaction fails because part of the fault is already gone (a half-applied fault,
// a second revert), it falls back to removing what is left piece by piece with go-iptables.
// Revert needs nothing but the ledger record: namespace path and identity, chain name, and the
// exact hook rules per family.
//
// Namespaces are entered by running the iptables binaries from an OS thread that has setns'd into
// the target namespace (see Target.Do for why). Prepare refuses (policy.RefusedError, exit 4)
// when the process lacks CAP_NET_ADMIN, the namespace does not exist, the iptables tools are
// missing, or the fault's chain already exists.
//
// # Sweep
//
// Sweep removes every FAULTLINE-* chain, in both families and in the filter and nat tables, of the
// host namespace and of every namespace under /var/run/netns, whose label names a run that owned()
// does not claim; references to it from any other chain are deleted in the same transaction.
// Chains without a faultline label are left alone (and logged): they may belong to something
// faultline cannot judge. Other injectors that create FAULTLINE-* chains (the transparent proxy's
// nat REDIRECT chains) should name them with ChainName and start them with an OwnerLabel rule so
// that this sweep handles them too.
//
// # Bandwidth
//
// The bandwidth kind replaces the root qdisc of an interface with tbf (handle fa17:) through
// netlink. The original root qdisc is read at Prepare and kept in the ledger record; revert puts
// it back exactly: a kernel default (handle 0:, e.g. noqueue, mq, pfifo_fast, fq_codel) by
// deleting the tbf so the kernel re-attaches its default; an explicitly configured tbf or
// pfifo_fast by recreating it with its recorded handle and parameters (and checking the result).
// Any other explicitly configured root qdisc (htb with its classes and filters, pfifo whose limit
// netlink does not read, fq_codel, ...) cannot be restored exactly, so Prepare refuses it. Bandwidth has no Sweeper: the original qdisc is in the ledger before the tbf exists
// (Apply records it first), and a tbf qdisc carries no run ID to sweep by.
package network
