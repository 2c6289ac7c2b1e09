package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
)

// The autoscaler recorder through the binary: the HPA of the workload a podKill touches is found
// on its own and recorded; it cannot scale out here (no metrics), so a scaleOutWithin objective is
// missed — exit 1 naming the objective, its figure and "did not scale out" — while
// maxDirectionChanges holds. A second runbook naming an HPA that does not exist is refused (exit 4)
// before anything is applied.
func TestAutoscalerObjectivesThroughBinary(t *testing.T) {
	c, f := kubeFixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3, Labels: kubefix.OptIn()})
	three := int32(3)
	f.HPA("Deployment", "web", &three, 6)
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-autoscalers}
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
    recovery: {within: 20s}
    objectives:
      autoscaling: {scaleOutWithin: 1m, maxDirectionChanges: 2}
`, map[string]string{"ClusterID": clusterUID(t, c), "Server": c.Server, "NS": f.NS})
	state := t.TempDir()
	resultFile := filepath.Join(t.TempDir(), "result.json")
	out := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, "--result-file", resultFile, rb)
	if out.code != 1 {
		t.Fatalf("exit %d, want 1 (objective missed)\n%s%s", out.code, out.stdout, out.stderr)
	}
	key := fmt.Sprintf("autoscalers/hpa %s/web/timeToScaleOut", f.NS)
	for _, want := range []string{
		fmt.Sprintf("hpa %s/web: did NOT scale out", f.NS),
		"✗ autoscaling.scaleOutWithin  " + key,
		"did not scale out",
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
	var rec *experiments.Recording
	for i := range x.Recordings {
		if x.Recordings[i].Recorder == "autoscalers" {
			rec = &x.Recordings[i]
		}
	}
	if rec == nil || len(rec.Figures) != 8 || len(rec.Timelines) != 1 {
		t.Fatalf("autoscalers recording %+v", rec)
	}
	var passed, missed int
	for _, o := range x.Objectives {
		if o.Passed {
			passed++
		} else {
			missed++
		}
	}
	if passed != 1 || missed != 1 {
		t.Errorf("objectives %+v: want maxDirectionChanges passed and scaleOutWithin missed", x.Objectives)
	}

	missing := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-autoscalers-missing}
environment:
  name: golden
  type: golden-copy
  kubernetes: {clusterID: "{{.ClusterID}}", server: "{{.Server}}"}
experiments:
  - name: chaos
    duration: 1s
    faults:
      - podKill: {workload: {kind: Deployment, name: web, namespace: {{.NS}}}, mode: fixed, value: 1, gracePeriod: 0s}
    record:
      autoscalers:
        - hpa: {{.NS}}/nope
`, map[string]string{"ClusterID": clusterUID(t, c), "Server": c.Server, "NS": f.NS})
	out = faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, missing)
	if out.code != 4 || !strings.Contains(out.stdout+out.stderr, f.NS+"/nope does not exist") {
		t.Errorf("exit %d, want 4 naming the missing HPA\n%s%s", out.code, out.stdout, out.stderr)
	}
}
