package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
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
	leaseExpiry(b, h, func(lease time.Duration) agentapi.FaultRequest {
		return partition(b, agentapi.Target{Netns: ns.Name}, lease)
	}, func() bool { return !strings.Contains(snapshot(b, ns), "FAULTLINE-") })
}

// BenchmarkPauseLeaseExpiry is the dead-man switch of a plain host's agent for a paused process:
// from the last renewal (lease 1s) to the process running again, against a DELETE.
//
//	go test -run '^$' -bench PauseLeaseExpiry -benchtime 1x ./agent/
func BenchmarkPauseLeaseExpiry(b *testing.B) {
	require(b)
	h := startAgent(b)
	v := local.StartVictims(b, 1)[0]
	leaseExpiry(b, h, func(lease time.Duration) agentapi.FaultRequest {
		return agentapi.FaultRequest{ID: newID(b, "f"), RunID: newID(b, "run"), Owner: "bench", Lease: runbooks.Duration(lease),
			Target: agentapi.Target{Host: true}, Fault: runbooks.Fault{ProcessPause: &runbooks.ProcessPause{ProcessTarget: runbooks.ProcessTarget{Exe: v.Exe}}}}
	}, func() bool { return v.State() != "T" })
}

// leaseExpiry applies req's fault 20 times per iteration and lets its 1 s lease run out after one
// renewal, checking with undone that nothing of it is left; each trial also times a DELETE.
func leaseExpiry(b *testing.B, h *harness, req func(lease time.Duration) agentapi.FaultRequest, undone func() bool) {
	ctx := ctxFor(b, 10*time.Minute)
	const trials, lease = 20, time.Second
	for b.Loop() {
		var gone, over, del []time.Duration
		for range trials {
			f, err := h.client.Apply(ctx, req(lease))
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
			if !undone() {
				b.Fatal("the fault outlived the lease's revert")
			}
			gone = append(gone, r.RevertedAt.Sub(renewed))
			over = append(over, r.RevertedAt.Sub(r.ExpiresAt))

			f, err = h.client.Apply(ctx, req(time.Minute))
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
