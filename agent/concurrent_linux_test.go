package agent_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// Requests in flight together, as a run sends them: faults in several namespaces, several faults
// in one namespace, and one request sent three times at once. Each distinct fault is applied once
// (the repeated request answers the same fault three times), every namespace holds exactly its
// faults' chains, and reverting them all together leaves every namespace's rules as they were.
func TestConcurrentFaults(t *testing.T) {
	require(t)
	h := startAgent(t)
	ctx := ctxFor(t, 2*time.Minute)
	spaces := []*netns.NS{netns.New(t), netns.New(t), netns.New(t), netns.New(t)}
	before := make([]string, len(spaces))
	var reqs []agentapi.FaultRequest
	want := make([]int, len(spaces)) // faults per namespace
	for i, ns := range spaces {
		before[i] = baseline(t, ns)
		n := 1
		if i == 0 {
			n = 4 // several faults (of different runs) in one namespace
		}
		for range n {
			reqs = append(reqs, partition(t, agentapi.Target{Netns: ns.Name}, time.Minute))
		}
		want[i] = n
	}
	dup := len(reqs) - 1
	sent := append(append([]agentapi.FaultRequest{}, reqs...), reqs[dup], reqs[dup])

	got := make([]agentapi.Fault, len(sent))
	errs := make([]error, len(sent))
	var wg sync.WaitGroup
	for k, req := range sent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[k], errs[k] = h.client.Apply(ctx, req)
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatalf("apply %d (%s): %v", k, sent[k].ID, err)
		}
		if got[k].State != agentapi.StateApplied {
			t.Errorf("apply %d: state %q", k, got[k].State)
		}
	}
	for _, k := range []int{len(reqs), len(reqs) + 1} {
		if got[k].ID != got[dup].ID || !got[k].AppliedAt.Equal(got[dup].AppliedAt) {
			t.Errorf("the repeated request was applied again: %+v against %+v", got[k], got[dup])
		}
	}
	if n := h.metric(t, "faultline_agent_faults_held"); n != float64(len(reqs)) {
		t.Errorf("faults_held = %v, want %d", n, len(reqs))
	}
	for i, ns := range spaces {
		// A partition of everything has a chain in each family.
		if n := strings.Count(snapshot(t, ns), ":FAULTLINE-"); n != 2*want[i] {
			t.Errorf("namespace %s holds %d FAULTLINE chains, want %d", ns.Name, n, 2*want[i])
		}
	}

	for k, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[k] = h.client.Revert(ctx, req.ID)
		}()
	}
	wg.Wait()
	for k := range reqs {
		if errs[k] != nil {
			t.Errorf("revert %s: %v", reqs[k].ID, errs[k])
		}
	}
	for i, ns := range spaces {
		if after := snapshot(t, ns); after != before[i] {
			t.Errorf("namespace %s differs after the reverts:\nbefore:\n%s\nafter:\n%s", ns.Name, before[i], after)
		}
	}
	for _, f := range h.agent.List() {
		if f.State != agentapi.StateReverted {
			t.Errorf("fault %s is %q after its revert", f.ID, f.State)
		}
	}
}
