// Package kubescale holds the Kubernetes scale benchmarks recorded in docs/benchmarks.md
// ("Kubernetes: scale and accuracy"): selecting and killing 1 % of 10,000 pods, and the peak memory
// of a faultline process that watches all of them while it records their recovery. Setting up the
// 10,000 pods takes minutes, so the benchmarks skip unless FAULTLINE_BENCH_SCALE=1:
//
//	FAULTLINE_BENCH_SCALE=1 go test ./internal/bench/kubescale -run '^$' -bench . -benchtime 5x -timeout 60m
package kubescale
