// Package toxiproxy compares faultline's TCP proxy (injectors/proxy) with Toxiproxy side by side,
// both in this process on loopback, in the same run: throughput and the latency each adds, with no
// toxic and with a 50 ms latency toxic. It is a module of its own so that Toxiproxy never enters
// faultline's go.mod. The figures and the command are in docs/benchmarks.md:
//
//	cd internal/bench/toxiproxy && go test -run '^$' -bench . -benchtime 100x -count 6
package toxiproxy
