package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// Two daemons share a Lease and a ledger in the cluster. The leader is SIGKILLed in the middle of
// a scheduled experiment: the other takes the lease, reverts the orphaned fault from the cluster
// ledger, and the scheduled start is not fired a second time.
func TestDaemonLeaderFailoverRevertsOrphanedFaults(t *testing.T) {
	c := kubeCluster.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("faultline-ha-%d", time.Now().UnixNano()%1e6)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const lease = 3 * time.Second
	e := newDaemonEnv(t, 1, fmt.Sprintf(`ledger: {backend: kubernetes, namespace: %s}
leaderElection: {namespace: %s, leaseDuration: %s, renewDeadline: 2s, retryPeriod: 500ms}
`, ns, ns, lease))
	// Every minute, so that the test sees a real scheduled start (at most a minute away).
	e.setCron(t, "* * * * *")
	led := &ledger.KubeLedger{Client: c.Client, Namespace: ns}

	daemons := map[string]*runningDaemon{}
	for _, id := range []string{"replica-a", "replica-b"} {
		daemons[id] = startDaemonIn(t, e, t.TempDir(), nil, "--kubeconfig", c.Kubeconfig, "--identity", id)
	}
	waitFor(t, 75*time.Second, "the scheduled run to stop the victim", func() bool { return e.victims[0].State() == "T" })
	l, err := c.Client.CoordinationV1().Leases(ns).Get(ctx, "faultline-daemon", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		t.Fatalf("lease: %v", err)
	}
	leader := daemon.HolderIdentity(*l.Spec.HolderIdentity)
	open, err := ledger.OpenEntries(ctx, led)
	if err != nil || len(open) != 1 || open[0].Owner.ID != leader {
		t.Fatalf("cluster ledger before the kill: %+v (err %v), want one entry owned by %s", open, err, leader)
	}
	firstRun := open[0].RunID

	killed := time.Now()
	if err := daemons[leader].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, lease+20*time.Second, "the new leader to revert the orphaned fault", func() bool { return e.victims[0].State() != "T" })
	failover := time.Since(killed)
	t.Logf("failover: leader %s killed; orphaned fault reverted %s later (lease %s)", leader, failover.Round(time.Millisecond), lease)
	if failover > lease+5*time.Second {
		t.Errorf("failover took %s, want about the lease duration (%s) plus a few seconds", failover, lease)
	}
	waitFor(t, 10*time.Second, "the ledger entry to be marked reverted", func() bool {
		open, err := ledger.OpenEntries(ctx, led)
		return err == nil && len(open) == 0
	})
	all, err := led.Entries(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The killed leader's start may not be made again: every run in the ledger has its own claim,
	// and the first run is there once.
	claims, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "faultline.dev/claim"})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]bool{}
	for _, en := range all {
		runs[en.RunID] = true
	}
	if !runs[firstRun] || len(runs) != len(claims.Items) {
		t.Fatalf("%d runs in the ledger (%v) for %d claimed starts; the first run %s must be there once", len(runs), runs, len(claims.Items), firstRun)
	}
	starts := map[string]int{}
	for _, cm := range claims.Items {
		starts[cm.Data["schedule"]+"@"+cm.Data["start"]]++
	}
	for k, n := range starts {
		if n != 1 {
			t.Fatalf("start %s claimed %d times", k, n)
		}
	}
	for id, d := range daemons {
		if id != leader {
			_ = d.cmd.Process.Signal(interruptSignal)
			if out := d.wait(t, 30*time.Second); out.code != 0 && !strings.Contains(out.stderr, "lease") {
				t.Logf("surviving daemon exit %d:\n%s", out.code, out.stderr)
			}
		}
	}
}
