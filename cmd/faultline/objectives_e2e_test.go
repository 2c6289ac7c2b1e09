package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
)

// Recovery objectives through the binary: a workload objective no pod can meet (ready within 1ms)
// and an autoscaling objective with no autoscaler recorded fail a run that would otherwise pass:
// exit 1, and the text summary and the result name each objective, its figure, limit and value.
func TestKubeObjectivesMissedExit1(t *testing.T) {
	c, f := kubeFixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3, Labels: kubefix.OptIn()})
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-objectives}
environment:
  name: golden
  type: golden-copy
  kubernetes: {clusterID: "{{.ClusterID}}", server: "{{.Server}}"}
experiments:
  - name: chaos
    duration: 1s
    faults:
      - name: kill
        podKill: {workload: {kind: Deployment, name: web, namespace: {{.NS}}}, mode: fixed, value: 1, gracePeriod: 0s}
    recovery: {within: 60s}
    objectives:
      workloads: {readyWithin: 1ms}
      autoscaling: {scaleOutWithin: 1m}
`, map[string]string{"ClusterID": clusterUID(t, c), "Server": c.Server, "NS": f.NS})
	state := t.TempDir()
	resultFile := filepath.Join(t.TempDir(), "result.json")
	out := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, "--result-file", resultFile, rb)
	if out.code != 1 {
		t.Fatalf("exit %d, want 1 (objectives missed)\n%s%s", out.code, out.stdout, out.stderr)
	}
	key := fmt.Sprintf("workloads/deployment %s/web/timeToReady", f.NS)
	for _, want := range []string{
		fmt.Sprintf("deployment %s/web: ready again ", f.NS),
		"✗ workloads.readyWithin  " + key + "  ",
		"> 1ms",
		"✗ autoscaling.scaleOutWithin  —  limit 1m0s: nothing recorded for it: no autoscalers recording",
		"verdict: failed (exit 1)",
	} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("text summary lacks %q:\n%s", want, out.stdout)
		}
	}
	b, err := os.ReadFile(resultFile)
	if err != nil {
		t.Fatal(err)
	}
	var res experiments.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	x := res.Experiments[0]
	if x.Verdict != experiments.Failed || !strings.Contains(x.Reason, "objective workloads.readyWithin ("+key+", limit 1ms) missed") ||
		!strings.Contains(x.Reason, "objective autoscaling.scaleOutWithin") {
		t.Errorf("experiment %s: %s", x.Verdict, x.Reason)
	}
	if len(x.Objectives) != 2 || x.Objectives[0].Passed || x.Objectives[0].Figure != key || x.Objectives[1].Passed {
		t.Errorf("objectives %+v", x.Objectives)
	}
	var ready *experiments.Figure
	for i, fig := range x.Recordings[0].Figures {
		if fig.Key == key {
			ready = &x.Recordings[0].Figures[i]
		}
	}
	if ready == nil || ready.Value == nil || *ready.Value <= 0.001 || x.Objectives[0].Value == "" {
		t.Errorf("timeToReady figure %+v", ready)
	}
	if len(x.Recordings[0].Timelines) != 1 || len(x.Recordings[0].Timelines[0].Marks) < 2 {
		t.Errorf("timelines %+v", x.Recordings[0].Timelines)
	}
}

// Time to detect against a real HTTP server: it turns unhealthy while the fault is applied, the
// guardrail breaches (the run halts), and the result's timeToDetect lies between the moment the
// server turned unhealthy and the revert, naming the guardrail; the detection objective is judged.
func TestTimeToDetectFromGuardrailBreach(t *testing.T) {
	v := startVictims(t, 1)[0]
	h := startHealth(t)
	state := t.TempDir()
	rb := runbook(t, strings.Replace(pauseRunbook, "    recovery: {within: 5s}\n", "    recovery: {within: 5s}\n    objectives: {detection: {within: 1m}}\n", 1),
		pauseData{URL: h.URL, PidFile: v.PidFile, Duration: "60s"})
	run := startFaultline(t, nil, state, "run", "--output", "json", rb)
	waitFor(t, 10*time.Second, "the victim to be stopped", func() bool { return v.State() == "T" })
	flipped := time.Now()
	h.Healthy.Store(false)
	out := run.wait(t, 30*time.Second)
	if out.code != 2 {
		t.Fatalf("exit %d, want 2 (halted)\n%s", out.code, out.stderr)
	}
	x := out.result(t).Experiments[0]
	var ttd *experiments.Figure
	for i, f := range x.Figures {
		if f.Metric == "timeToDetect" {
			ttd = &x.Figures[i]
		}
	}
	if ttd == nil || ttd.Value == nil {
		t.Fatalf("no timeToDetect figure: %+v", x.Figures)
	}
	applied, reverted := *x.Faults[0].AppliedAt, *x.Faults[0].RevertedAt
	got := time.Duration(*ttd.Value * float64(time.Second))
	if lo, hi := flipped.Sub(applied), reverted.Sub(applied); got < lo || got > hi {
		t.Errorf("time to detect %s, want between %s (server unhealthy) and %s (revert)", got, lo, hi)
	}
	if !strings.Contains(ttd.Note, `guardrail "api" breached`) || ttd.Uncertainty != 0.25 {
		t.Errorf("figure %+v: want the note to name the guardrail and ±250ms (its interval)", ttd)
	}
	if len(x.Objectives) != 1 || !x.Objectives[0].Passed || x.Objectives[0].Name != "detection.within" {
		t.Errorf("objectives %+v", x.Objectives)
	}
}
