// Package proxy holds faultline's TCP proxy and the fault kinds built on it:
//
//   - latency: delay (± jitter) for the traffic a NetworkTarget selects, with the netem qdisc when
//     the kernel has it, otherwise with a transparent proxy inside the target namespace (iptables
//     REDIRECT to a faultline listener that recovers the original destination with SO_ORIGINAL_DST);
//   - proxy: an explicit listen → upstream proxy with Toxiproxy-style toxics.
//
// # The proxy core
//
// Both directions of every connection are copied. With no toxic on a stream it is a plain
// read/write loop (a 16 KiB buffer per stream, 1 MiB pooled buffers during bulk transfers;
// measured faster on loopback than splice(2) through a pipe). With toxics, a reader stamps each
// chunk with the time it may leave (latency, bandwidth) and a writer releases the chunks in order
// at those times, so a delayed stream keeps its throughput instead of paying the delay once per
// chunk, and a chunk never overtakes an earlier one. Toxics are swapped atomically at run time:
// when SetToxics returns, every open connection has the new set, and data read from then on gets
// it (a fast-path read that completes just after a change hands its data to the toxic path).
//
// # Transparent latency
//
// One nat chain per fault, FAULTLINE-<hash of run and fault> (named and labelled as the network
// injectors name theirs, so either sweeper reads the other's chains right), hooked from the top of
// OUTPUT (egress: connections the namespace opens, to peers' ports) and/or PREROUTING (ingress:
// connections into the namespace, from peers to local ports). Every intercepted connection's
// request direction is delayed, so its round trip grows by the delay, as with netem on one side.
// The proxy's own upstream connections carry SO_MARK Mark and return from the chain first, so
// they do not loop. Revert removes the chain from the ledger record alone (unhook, flush, delete in
// one iptables-restore transaction). In the process that runs the proxy it first replaces the
// REDIRECT rules by one that keeps connection tracking on, and drains the relayed connections to
// a response boundary (Proxy.Drain), so that none is reset or left hanging.
//
// Everything here is Linux's (iptables, network namespaces, SO_ORIGINAL_DST, SO_MARK); on other
// systems Injectors returns nothing.
package proxy
