package agent_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
	"github.com/faultline-dev/faultline/internal/testenv/local"
	"github.com/faultline-dev/faultline/runbooks"
)

// A plain host's agent pauses a real process on a lease: a plan names the pid and applies
// nothing, the apply stops the process, and the lease running out unrenewed continues it.
func TestProcessPauseOnTheHostAndLeaseExpiry(t *testing.T) {
	require(t)
	h := startAgent(t)
	v := local.StartVictims(t, 1)[0]
	pid, name := v.PID(), v.Exe
	ctx := ctxFor(t, time.Minute)
	req := agentapi.FaultRequest{ID: newID(t, "f"), RunID: newID(t, "run"), Owner: "test", Lease: runbooks.Duration(time.Second),
		Target: agentapi.Target{Host: true}, Fault: runbooks.Fault{ProcessPause: &runbooks.ProcessPause{ProcessTarget: runbooks.ProcessTarget{Exe: name}}}}

	plan, err := h.client.Plan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if plan.State != agentapi.StatePlanned || len(plan.Describe) != 1 || !strings.Contains(plan.Describe[0], "pid "+strconv.Itoa(pid)) {
		t.Fatalf("plan = %+v, want the victim's pid %d", plan, pid)
	}
	if st := local.State(pid); st == "T" {
		t.Fatal("a plan stopped the process")
	}
	if got := h.agent.Held(); got != 0 {
		t.Fatalf("a plan left %d faults held", got)
	}

	f, err := h.client.Apply(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if f.State != agentapi.StateApplied || f.Kind != "process-pause" {
		t.Fatalf("applied = %+v", f)
	}
	// The signal is delivered when the process next runs: wait for it to stop.
	eventually(t, 10*time.Second, "the process stopped (state T)", func() bool { return local.State(pid) == "T" })
	eventually(t, 20*time.Second, "the lease to run out and the process to continue", func() bool { return local.State(pid) != "T" })
	// The keeper marks the fault reverted after the SIGCONT: wait for the mark too.
	var got agentapi.Fault
	eventually(t, 10*time.Second, "the fault marked reverted", func() bool {
		fs, err := h.client.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = find(fs, f.ID)
		return got.State != agentapi.StateApplied
	})
	if got.State != agentapi.StateReverted || got.RevertReason != agentapi.ReasonLeaseExpired {
		t.Fatalf("after the lease: %+v", got)
	}
}

// Bad process requests are refused with nothing applied: no matching process, a target other
// than the host, an interval (the run's to keep), and any process fault on an agent that serves
// pods (with hostPID it would reach the node's processes).
func TestProcessFaultRefusals(t *testing.T) {
	require(t)
	v := local.StartVictims(t, 1)[0]
	pid, name := v.PID(), v.Exe
	pause := func(target agentapi.Target, exe string) agentapi.FaultRequest {
		return agentapi.FaultRequest{ID: newID(t, "f"), RunID: newID(t, "run"), Owner: "test", Lease: runbooks.Duration(10 * time.Second),
			Target: target, Fault: runbooks.Fault{ProcessPause: &runbooks.ProcessPause{ProcessTarget: runbooks.ProcessTarget{Exe: exe}}}}
	}
	kill := pause(agentapi.Target{Host: true}, name)
	kill.Fault = runbooks.Fault{ProcessKill: &runbooks.ProcessKill{ProcessTarget: runbooks.ProcessTarget{Exe: name}, Interval: runbooks.Duration(time.Second)}}

	plain := startAgent(t)
	pods := startAgent(t, func(c *agent.Config, _ *agent.HandlerOptions) { c.Pods = noPods{} })
	for _, tc := range []struct {
		name   string
		h      *harness
		req    agentapi.FaultRequest
		status int
		rule   string
	}{
		{"no process matches", plain, pause(agentapi.Target{Host: true}, "no-such-proc"), http.StatusNotFound, "target"},
		{"a netns target", plain, pause(agentapi.Target{Netns: "x"}, name), http.StatusBadRequest, "target"},
		{"an interval", plain, kill, http.StatusBadRequest, "interval"},
		{"an agent serving pods", pods, pause(agentapi.Target{Host: true}, name), http.StatusForbidden, "process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, time.Minute)
			for _, call := range []func(context.Context, agentapi.FaultRequest) error{
				func(ctx context.Context, r agentapi.FaultRequest) error {
					_, err := tc.h.client.Plan(ctx, r)
					return err
				},
				func(ctx context.Context, r agentapi.FaultRequest) error {
					_, err := tc.h.client.Apply(ctx, r)
					return err
				},
			} {
				err := call(ctx, tc.req)
				var apiErr *agentapi.APIError
				if !errors.As(err, &apiErr) || apiErr.Status != tc.status || apiErr.Rule != tc.rule {
					t.Fatalf("err = %v, want status %d rule %s", err, tc.status, tc.rule)
				}
			}
			if st := local.State(pid); st == "T" {
				t.Fatal("the process was stopped")
			}
			if n := tc.h.agent.Held(); n != 0 {
				t.Fatalf("%d faults held", n)
			}
		})
	}
}

// noPods is a pod resolver that knows no pod: enough to make an agent one that serves pods.
type noPods struct{}

func (noPods) Resolve(context.Context, string, string, string) (podnetns.Pod, error) {
	return podnetns.Pod{}, podnetns.ErrNotOnNode
}
