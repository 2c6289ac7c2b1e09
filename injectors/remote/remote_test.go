package remote

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/runbooks"
)

// Prepare sends the agents a copy: the runbook's own fault keeps its netns and its on:, because a
// daemon prepares the same loaded runbook again at every scheduled run.
func TestPrepareLeavesTheRunbookFaultAlone(t *testing.T) {
	ca := pki.NewCA(t, "agents")
	run := ca.Client("run")
	env := injectors.Env{RunID: "r1", Environment: runbooks.Environment{Agents: &runbooks.HostAgents{
		TLS:   runbooks.AgentTLS{CAFile: ca.CertPEM, CertFile: run.Cert, KeyFile: run.Key},
		Hosts: []runbooks.AgentHost{{Name: "db-1", Address: "127.0.0.1:1"}}, // nothing listens: the plan fails
	}}}
	f := runbooks.Fault{Name: "cut", On: []string{"db-1"}, Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: "blue"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := (Injector{}).Prepare(ctx, f, env); err == nil {
		t.Fatal("Prepare succeeded with no agent listening")
	}
	if f.Partition.Netns != "blue" || len(f.On) != 1 {
		t.Fatalf("Prepare changed the runbook's fault: netns %q, on %v", f.Partition.Netns, f.On)
	}
	k := runbooks.Fault{Name: "kill", On: []string{"db-1"}, ProcessKill: &runbooks.ProcessKill{ProcessTarget: runbooks.ProcessTarget{Exe: "x"}, Interval: runbooks.Duration(time.Second)}}
	if _, err := (Injector{}).Prepare(ctx, k, env); err == nil {
		t.Fatal("Prepare succeeded with no agent listening")
	}
	if k.ProcessKill.Interval != runbooks.Duration(time.Second) {
		t.Fatalf("Prepare changed the runbook's interval: %s", k.ProcessKill.Interval)
	}
}
