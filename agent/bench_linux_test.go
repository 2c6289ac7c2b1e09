package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// BenchmarkLeaseExpiry measures the dead-man switch: from a fault's last renewal (lease 1s) to its
// rules being gone, over 20 trials per iteration; the overshoot past the lease is compared with
// the cost of a revert on request (DELETE), measured in the same run.
//
//	go test -run '^$' -bench LeaseExpiry -benchtime 1x ./agent/
func BenchmarkLeaseExpiry(b *testing.B) {
	require(b)
	h := startAgent(b)
	ns := netns.New(b)
	ctx := ctxFor(b, 10*time.Minute)
	const trials, lease = 20, time.Second
	for b.Loop() {
		var gone, over, del []time.Duration
		for range trials {
			f, err := h.client.Apply(ctx, partition(b, agentapi.Target{Netns: ns.Name}, lease))
			if err != nil {
				b.Fatal(err)
			}
			if f, err = h.client.Renew(ctx, f.ID, lease); err != nil {
				b.Fatal(err)
			}
			renewed := f.ExpiresAt.Add(-lease)
			var r agentapi.Fault
			eventually(b, 30*time.Second, "the lease's revert", func() bool {
				var ok bool
				r, ok = find(h.agent.List(), f.ID)
				return ok && r.State == agentapi.StateReverted
			})
			if r.RevertReason != agentapi.ReasonLeaseExpired {
				b.Fatalf("reverted for %q", r.RevertReason)
			}
			if strings.Contains(snapshot(b, ns), "FAULTLINE-") {
				b.Fatal("rules left after the lease's revert")
			}
			gone = append(gone, r.RevertedAt.Sub(renewed))
			over = append(over, r.RevertedAt.Sub(r.ExpiresAt))

			f, err = h.client.Apply(ctx, partition(b, agentapi.Target{Netns: ns.Name}, time.Minute))
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := h.client.Revert(ctx, f.ID); err != nil {
				b.Fatal(err)
			}
			del = append(del, time.Since(start))
		}
		report(b, "gone", gone)
		report(b, "overshoot", over)
		report(b, "delete", del)
		b.ReportMetric(float64(pct(over, 50))/float64(pct(del, 50)), "overshoot/delete-p50")
	}
}

func report(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(pct(d, 50))/1e6, name+"-p50-ms")
	b.ReportMetric(float64(pct(d, 99))/1e6, name+"-p99-ms")
}

// pct is the p-th percentile (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}
