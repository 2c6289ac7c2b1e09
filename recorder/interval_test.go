package recorder_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
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

// TestIntervalPodKillLaterRoundsTargeted: an interval podKill kills again after its first round;
// the pods of the later rounds reach the recorder through the sustainer's events (Subjects) and
// are recorded as targeted, like those of the first round.
func TestIntervalPodKillLaterRoundsTargeted(t *testing.T) {
	c := cluster.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	createNamespace(ctx, t, c.Client, "rounds")
	createDeployment(ctx, t, c.Client, "rounds", "web", 4, "")

	rb, err := runbooks.Parse("rounds.yaml", []byte(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: rounds}
environment:
  name: test
  type: local
  kubernetes: {server: "`+c.Server+`"}
policy: {maxPods: 1}
experiments:
  - name: keep-killing
    duration: 3500ms
    faults:
      - name: monkey
        podKill: {namespaces: [rounds], labelSelector: app=web, mode: fixed, value: 1, interval: 1s}
    recovery: {within: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, js := runEngine(ctx, t, rb)
	if res.Verdict != experiments.Passed {
		t.Fatalf("verdict %s: %s\n%s", res.Verdict, res.Reason, js)
	}
	x := res.Experiments[0]
	later := map[string]bool{}
	for _, ev := range x.Faults[0].Events {
		for _, s := range ev.Subjects {
			if s.Kind != "pod" || s.UID == "" || s.Workload == nil || s.Workload.Name != "web" || s.Workload.Kind != "deployment" {
				t.Errorf("event subject %+v: want a pod with its UID and workload deployment web", s)
			}
			later[s.UID] = true
		}
	}
	if len(later) == 0 {
		t.Fatalf("no pod killed after the first round in a 3.5s window with a 1s interval\n%s", js)
	}
	doc := x.Recordings[0].Data.(*recorder.Document)
	seen := 0
	for _, p := range doc.Pods {
		if !p.Targeted {
			t.Errorf("pod %s (uid %s) killed by the fault recorded as not targeted", p.Pod, p.UID)
		}
		if later[p.UID] {
			seen++
		}
	}
	if seen != len(later) {
		t.Errorf("%d of the %d pods killed in later rounds recorded\n%s", seen, len(later), js)
	}
}

// runEngine runs rb through the engine with the real pod-kill and shard-outage injectors and the
// workload recorder; it returns the result and its JSON for failure messages.
func runEngine(ctx context.Context, t *testing.T, rb *runbooks.Runbook) (*experiments.Result, []byte) {
	t.Helper()
	reg, err := injectors.NewRegistry(kubernetes.PodKill{}, kubernetes.ShardOutage{})
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := envFor(t, cluster.Get(t))
	eng := &experiments.Engine{
		Injectors: reg, Probes: guardrail.DefaultProbes(), ProbeEnv: guardrail.ProbeEnv{Kube: env.Kube},
		InjectorEnv: env, Ledger: led, Logger: slog.New(slog.DiscardHandler),
		Recorders: []experiments.Recorder{&recorder.Workloads{}},
	}
	res := eng.Run(ctx, rb, experiments.RunOptions{})
	js, _ := json.MarshalIndent(res, "", "  ")
	if len(res.Experiments) != 1 || len(res.Experiments[0].Recordings) != 1 {
		t.Fatalf("want 1 experiment with 1 recording\n%s", js)
	}
	return res, js
}
