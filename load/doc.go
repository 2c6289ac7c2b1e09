// Package load drives HTTP traffic during experiments (built on vegeta's attacker) and keeps its
// client-side figures — throughput, latency quantiles, error ratio, status codes — over a sliding
// window. Those figures are a guardrail source (Probe), faultline's own metrics during a run, and
// a time series in the result document.
//
// Every load is bounded: it stops when its owner stops it, at maxDuration and at maxRequests,
// whichever comes first, so a crashed or forgotten run cannot leave traffic running (and the load
// lives in faultline's own process: if faultline dies, so does the load).
package load
