package recorder_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// TestWorkloadsThroughEngine runs a runbook through the engine: the real pod-kill injector kills 2
// of 5 pods, the Kubernetes guardrail watches the Deployment, and the recording lands in the result.
func TestWorkloadsThroughEngine(t *testing.T) {
	c := cluster.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	createNamespace(ctx, t, c.Client, "e2e")
	createDeployment(ctx, t, c.Client, "e2e", "checkout", 5, "")

	rb, err := runbooks.Parse("e2e.yaml", []byte(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e}
environment:
  name: test
  type: local
  kubernetes: {server: "`+c.Server+`"}
policy: {maxPods: 2}
guardrails:
  - name: checkout-available
    interval: 250ms
    kubernetes:
      workload: {kind: Deployment, namespace: e2e, name: checkout}
      availableReplicas: {minPercent: 40}
experiments:
  - name: kill-two
    duration: 1s
    faults:
      - podKill: {namespaces: [e2e], labelSelector: app=checkout, mode: fixed, value: 2}
    recovery: {within: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := injectors.NewRegistry(kubernetes.PodKill{})
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := envFor(t, c)
	eng := &experiments.Engine{
		Injectors: reg, Probes: guardrail.DefaultProbes(), ProbeEnv: guardrail.ProbeEnv{Kube: env.Kube},
		InjectorEnv: env, Ledger: led, Logger: slog.New(slog.DiscardHandler),
		Recorders: []experiments.Recorder{&recorder.Workloads{}},
	}
	res := eng.Run(ctx, rb, experiments.RunOptions{})
	js, _ := json.MarshalIndent(res, "", "  ")
	if res.Verdict != experiments.Passed || len(res.Experiments) != 1 {
		t.Fatalf("verdict %s: %s\n%s", res.Verdict, res.Reason, js)
	}
	x := res.Experiments[0]
	if len(x.Recordings) != 1 {
		t.Fatalf("%d recordings\n%s", len(x.Recordings), js)
	}
	rec := x.Recordings[0]
	doc, ok := rec.Data.(*recorder.Document)
	if rec.Recorder != "workloads" || !rec.Recovered || !ok {
		t.Fatalf("recording %+v\n%s", rec, js)
	}
	if len(doc.Pods) != 2 || len(doc.Workloads) != 1 {
		t.Fatalf("want 2 pod timelines and 1 workload\n%s", js)
	}
	for _, p := range doc.Pods {
		if !p.Targeted || p.Replacement == nil || p.Replacement.ReadyAt == nil || p.TimeToReady == "" {
			t.Errorf("pod timeline %+v", p)
		}
		if !strings.Contains(strings.Join(x.Faults[0].Targets, " "), p.Pod) {
			t.Errorf("pod %s is not among the fault's targets %v", p.Pod, x.Faults[0].Targets)
		}
	}
	w := doc.Workloads[0]
	if !w.Recovered || w.PodsKilled != 2 || w.TimeToRecover == "" || !w.RecoveredBeforeRevert {
		t.Errorf("workload %+v", w)
	}
	if ap := x.Faults[0].AppliedAt; ap == nil || doc.Faults[0].AppliedAt != *ap {
		t.Errorf("fault applied at %v, recorded %v", ap, doc.Faults)
	}
	t.Logf("time to recover %s; per pod time to Ready %s, %s", w.TimeToRecover, doc.Pods[0].TimeToReady, doc.Pods[1].TimeToReady)
	// The result document, as faultline run --output json prints it, carries the recording.
	if !strings.Contains(string(js), `"recorder": "workloads"`) || !strings.Contains(string(js), `"timeToRecover"`) {
		t.Errorf("result JSON lacks the recording:\n%s", js)
	}
}
