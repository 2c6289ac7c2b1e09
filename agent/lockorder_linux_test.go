package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
)

// A revert asked while its fault is still being applied waits for the apply and reverts the
// fault; it does not answer "no such fault" (which a run takes as reverted) and leave the fault
// to its lease. The apply is held mid-way by holding its namespace's lock.
func TestRevertWaitsForApplyInProgress(t *testing.T) {
	netns.Require(t, "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore")
	ns := netns.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := New(ctx, Config{NodeName: "test-node", StateDir: t.TempDir(), MaxLease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tgt, err := network.ResolveTarget(ns.Name, "", network.NetnsDir(a.cfg.NetnsDir))
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.locks.lock(ctx, netnsKey(tgt))
	if err != nil {
		t.Fatal(err)
	}
	req := agentapi.FaultRequest{ID: "f-inflight", RunID: "run-inflight", Owner: "test", Lease: runbooks.Duration(time.Minute),
		Target: agentapi.Target{Netns: ns.Name}, Fault: runbooks.Fault{Partition: &runbooks.Partition{}}}
	type result struct {
		f   agentapi.Fault
		err error
	}
	applied, reverted := make(chan result, 1), make(chan result, 1)
	go func() {
		f, _, err := a.Apply(ctx, req)
		applied <- result{f, err}
	}()
	waitLockUsers(t, &a.locks, faultKey(req.ID), 1) // the apply holds the fault, waits for the namespace
	go func() {
		f, err := a.Revert(ctx, req.ID)
		reverted <- result{f, err}
	}()
	waitLockUsers(t, &a.locks, faultKey(req.ID), 2) // the revert waits behind it
	release()

	if r := <-applied; r.err != nil || r.f.State != agentapi.StateApplied {
		t.Fatalf("apply = %+v, %v", r.f, r.err)
	}
	r := <-reverted
	if r.err != nil || r.f.State != agentapi.StateReverted || r.f.RevertReason != agentapi.ReasonRequested {
		t.Fatalf("revert asked during the apply = %+v, %v; want the fault reverted on request", r.f, r.err)
	}
	out, err := ns.Exec(ctx, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "FAULTLINE-") {
		t.Errorf("a FAULTLINE chain is left after the revert:\n%s", out)
	}
}

// waitLockUsers waits until key has n holders and waiters.
func waitLockUsers(t *testing.T, k *keyLocks, key string, n int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		k.mu.Lock()
		l := k.m[key]
		got := 0
		if l != nil {
			got = l.n
		}
		k.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("lock %q has %d users after 30 s, want %d", key, got, n)
		}
	}
}
