package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
)

// BenchmarkKillSwitchThroughService models the shipped Service, which selects both replicas: the
// kill switch goes to the leader and the standby in turn. Each call halts one running run (a
// process-pause on a real process); the figure is the time from the call to its answer, which
// comes once the fault is reverted — checked on the process itself at every answer. The leader's
// calls are the baseline. Run with -benchtime 20x (or more).
func BenchmarkKillSwitchThroughService(b *testing.B) {
	c := kubeCluster.Get(b)
	ns := haNamespace(b, c)
	e := newDaemonEnv(b, 1, haConfig(ns, 3*time.Second))
	ds := map[string]*runningDaemon{}
	for _, id := range []string{"replica-a", "replica-b"} {
		ds[id] = startDaemonIn(b, e, b.TempDir(), nil, "--kubeconfig", c.Kubeconfig, "--identity", id)
	}
	var leader string
	waitFor(b, 20*time.Second, "a leader", func() bool {
		leader = daemon.HolderIdentity(leaseHolder(b, c, ns))
		return ds[leader] != nil && ds[leader].status(b).Leader
	})
	replicas := []string{"replica-a", "replica-b"}
	byRole := map[string][]time.Duration{}
	unreverted := 0
	i := 0
	for b.Loop() {
		b.StopTimer()
		waitFor(b, 20*time.Second, "the leader to accept a run", func() bool {
			code, _ := ds[leader].call(b, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"})
			return code == http.StatusAccepted
		})
		waitFor(b, 20*time.Second, "the victim to be stopped", func() bool { return e.victims[0].State() == "T" })
		to := replicas[i%2]
		i++
		b.StartTimer()
		start := time.Now()
		code, body := ds[to].call(b, "POST", "/api/v1/halt", adminToken, map[string]string{"reason": "bench"})
		took := time.Since(start)
		b.StopTimer()
		var hr api.HaltResponse
		if code != http.StatusOK || json.Unmarshal(body, &hr) != nil || len(hr.Halted) != 1 {
			b.Fatalf("kill switch via %s: %d %s", to, code, body)
		}
		if e.victims[0].State() == "T" {
			unreverted++
		}
		role := "standby"
		if to == leader {
			role = "leader"
		}
		byRole[role] = append(byRole[role], took)
		byRole["all"] = append(byRole["all"], took)
		b.StartTimer()
	}
	all := byRole["all"]
	b.ReportMetric(float64(percentile(all, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(unreverted), "unreverted")
	for _, r := range []string{"leader", "standby"} {
		if d := byRole[r]; len(d) > 0 {
			b.ReportMetric(float64(percentile(d, 0.99).Microseconds())/1000, "p99-ms-"+r)
			b.Logf("%s: %d calls, p50 %s p99 %s max %s", r, len(d), percentile(d, 0.5), percentile(d, 0.99), slices.Max(d))
		}
	}
	b.Logf("kill switch alternating replicas: %d calls, p50 %s p99 %s; %d answered before the fault was reverted",
		len(all), percentile(all, 0.5), percentile(all, 0.99), unreverted)
}

// BenchmarkSameIdentityRestart: a replica running a fault is SIGKILLed and restarted under the
// same identity (a container restart in the same pod); the figure is the time from the kill to
// the fault reverted by the new process (restart, lease expiry, recovery). Run with -benchtime 5x.
func BenchmarkSameIdentityRestart(b *testing.B) {
	c := kubeCluster.Get(b)
	const lease = 3 * time.Second
	var trips []time.Duration
	for b.Loop() {
		ns := haNamespace(b, c)
		e := newDaemonEnv(b, 1, haConfig(ns, lease))
		state := b.TempDir()
		d := startDaemonIn(b, e, state, nil, "--kubeconfig", c.Kubeconfig, "--identity", "replica-a")
		waitFor(b, 20*time.Second, "the leader to accept a run", func() bool {
			code, _ := d.call(b, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"})
			return code == http.StatusAccepted
		})
		waitFor(b, 20*time.Second, "the victim to be stopped", func() bool { return e.victims[0].State() == "T" })
		killed := time.Now()
		d.kill(b)
		d = startDaemonIn(b, e, state, nil, "--kubeconfig", c.Kubeconfig, "--identity", "replica-a")
		waitFor(b, lease+30*time.Second, "the restarted replica to revert the orphan", func() bool { return e.victims[0].State() != "T" })
		trips = append(trips, time.Since(killed))
		_ = d.cmd.Process.Signal(interruptSignal)
		<-d.done
	}
	b.ReportMetric(float64(percentile(trips, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(slices.Max(trips).Milliseconds()), "max-ms")
	b.Logf("same-identity restart over %d trials: SIGKILL → orphan reverted p50 %s max %s (lease %s)",
		len(trips), percentile(trips, 0.5), slices.Max(trips), lease)
}
