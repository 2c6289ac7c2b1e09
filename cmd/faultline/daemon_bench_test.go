package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
)

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkKillSwitch: 10 runs in flight, each pausing its own real process; one API call halts
// them all. Each trip measures from sending the call to the moment every process is running
// again (checked in /proc after the call returns, since the daemon answers only once the faults
// are reverted). Run with -benchtime 20x.
func BenchmarkKillSwitch(b *testing.B) {
	e := newDaemonEnv(b, 10, "")
	d := startDaemon(b, e, nil)
	var trips, reverts []time.Duration
	for b.Loop() {
		var ids []string
		for i := range e.victims {
			ids = append(ids, d.trigger(b, fmt.Sprintf("s%d", i)))
		}
		waitFor(b, 20*time.Second, "the condition", func() bool {
			for _, v := range e.victims {
				if v.State() != "T" {
					return false
				}
			}
			return true
		})
		start := time.Now()
		code, body := d.call(b, "POST", "/api/v1/halt", adminToken, map[string]string{"reason": "bench"})
		var halted struct{ Halted []string }
		if err := json.Unmarshal(body, &halted); code != http.StatusOK || err != nil || len(halted.Halted) != 10 {
			b.Fatalf("kill switch: %d %s", code, body)
		}
		for i, v := range e.victims {
			if v.State() == "T" {
				b.Fatalf("victim %d still stopped after the kill switch returned", i)
			}
		}
		trips = append(trips, time.Since(start))
		// From the stored results: when each run decided to halt, and when its last fault was
		// reverted. The slowest run's revert is the kill switch's own cost; the rest of the trip is
		// the durable bookkeeping around it.
		var worst time.Duration
		for _, id := range ids {
			var rec struct{ Result *experiments.Result }
			waitFor(b, 10*time.Second, "the result in history", func() bool {
				code, body := d.call(b, "GET", "/api/v1/runs/"+id, readToken, nil)
				return code == http.StatusOK && json.Unmarshal(body, &rec) == nil && rec.Result != nil
			})
			if h := rec.Result.Halt; h != nil && h.LastRevertedAt != nil {
				worst = max(worst, h.LastRevertedAt.Sub(start))
			}
		}
		reverts = append(reverts, worst)
	}
	b.ReportMetric(float64(percentile(reverts, 0.99).Microseconds())/1000, "reverted-p99-ms")
	b.ReportMetric(float64(percentile(trips, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(trips, 0.99).Microseconds())/1000, "p99-ms")
	b.Logf("kill switch over %d trips of 10 runs: API call p50 %s p99 %s; every fault reverted p50 %s p99 %s after the call",
		len(trips), percentile(trips, 0.5), percentile(trips, 0.99), percentile(reverts, 0.5), percentile(reverts, 0.99))
}

// BenchmarkLeaderFailover: two daemons on a real control plane with a 3 s lease. A run is
// triggered on the leader, which is SIGKILLed once its fault is applied; the figure is the time
// from the kill to the orphaned fault reverted by the other replica. Run with -benchtime 5x.
func BenchmarkLeaderFailover(b *testing.B) {
	c := kubeCluster.Get(b)
	const lease = 3 * time.Second
	var trips []time.Duration
	for b.Loop() {
		ctx := context.Background()
		ns := fmt.Sprintf("faultline-fo-%d", time.Now().UnixNano()%1e9)
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		e := newDaemonEnv(b, 1, fmt.Sprintf(`ledger: {backend: kubernetes, namespace: %s}
leaderElection: {namespace: %s, leaseDuration: %s, renewDeadline: 2s, retryPeriod: 500ms}
`, ns, ns, lease))
		ds := map[string]*runningDaemon{}
		for _, id := range []string{"a", "b"} {
			ds[id] = startDaemonIn(b, e, b.TempDir(), nil, "--kubeconfig", c.Kubeconfig, "--identity", id)
		}
		var leader string
		waitFor(b, 20*time.Second, "the condition", func() bool {
			l, err := c.Client.CoordinationV1().Leases(ns).Get(ctx, "faultline-daemon", metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil {
				leader = daemon.HolderIdentity(*l.Spec.HolderIdentity)
			}
			return leader != ""
		})
		// The lease holder accepts runs once its startup recovery is done.
		waitFor(b, 20*time.Second, "the leader to accept a run", func() bool {
			code, _ := ds[leader].call(b, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"})
			return code == http.StatusAccepted
		})
		waitFor(b, 20*time.Second, "the condition", func() bool { return e.victims[0].State() == "T" })
		killed := time.Now()
		_ = ds[leader].cmd.Process.Kill()
		waitFor(b, lease+30*time.Second, "the condition", func() bool { return e.victims[0].State() != "T" })
		trips = append(trips, time.Since(killed))
		for id, d := range ds {
			if id != leader {
				_ = d.cmd.Process.Signal(os.Interrupt)
				<-d.done
			}
		}
	}
	b.ReportMetric(float64(percentile(trips, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(slices.Max(trips).Milliseconds()), "max-ms")
	b.ReportMetric(float64(slices.Max(trips))/float64(lease), "max/lease")
	b.Logf("failover over %d trips: p50 %s max %s (lease %s, target lease+2s)", len(trips), percentile(trips, 0.5), slices.Max(trips), lease)
}

// BenchmarkDaemonIdle: a daemon with 100 schedules against one with 1, side by side, each idle for
// the same wall time; reports CPU time per minute of wall time and resident memory.
func BenchmarkDaemonIdle(b *testing.B) {
	const idle = 20 * time.Second
	measure := func(n int) (cpuPerMin time.Duration, rssKB int) {
		e := newDaemonEnv(b, n, "")
		d := startDaemon(b, e, nil)
		cpu0 := procCPU(b, d.cmd.Process.Pid)
		timer := time.NewTimer(idle) // the idle time is what is measured
		<-timer.C
		cpu := procCPU(b, d.cmd.Process.Pid) - cpu0
		rssKB = procStatusKB(b, d.cmd.Process.Pid, "VmRSS")
		_ = d.cmd.Process.Signal(os.Interrupt)
		<-d.done
		return time.Duration(float64(cpu) * float64(time.Minute) / float64(idle)), rssKB
	}
	for b.Loop() {
		c1, r1 := measure(1)
		c100, r100 := measure(100)
		b.ReportMetric(float64(c1.Microseconds())/1000, "cpu-ms/min-1sched")
		b.ReportMetric(float64(c100.Microseconds())/1000, "cpu-ms/min-100sched")
		b.ReportMetric(float64(r1)/1024, "rss-MB-1sched")
		b.ReportMetric(float64(r100)/1024, "rss-MB-100sched")
		b.Logf("idle for %s: 1 schedule %s CPU/min, %d kB RSS; 100 schedules %s CPU/min, %d kB RSS", idle, c1, r1, c100, r100)
	}
}

// procCPU is the time the process's threads spent on a CPU, summed from
// /proc/PID/task/*/schedstat (nanoseconds; the tick-based counters in /proc/PID/stat are too
// coarse for an idle daemon). Threads that exited before the call are not counted, which can
// only make the figure smaller; Go keeps its threads, so that loss is small.
func procCPU(b *testing.B, pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, task := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		total += ns
	}
	return time.Duration(total)
}

func procStatusKB(b *testing.B, pid int, key string) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, key+":") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}
