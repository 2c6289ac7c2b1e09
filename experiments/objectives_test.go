package experiments

import (
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/runbooks"
)

func num(v float64) *float64 { return &v }

// judgeObjectives never passes an objective for want of data, and names the objective, the figure,
// the limit and the value when one is missed.
func TestJudgeObjectives(t *testing.T) {
	two := 2
	o := &runbooks.Objectives{
		Breakers:  &runbooks.BreakerObjectives{ClosedWithin: runbooks.Duration(15e9), MaxOpens: &two},
		Workloads: &runbooks.WorkloadObjectives{ReadyWithin: runbooks.Duration(30e9)},
		Detection: &runbooks.DetectionObjectives{Within: runbooks.Duration(10e9)},
	}
	fig := func(rec, subj, metric, unit string, v *float64) Figure {
		return Figure{Key: rec + "/" + subj + "/" + metric, Subject: subj, Metric: metric, Unit: unit, Value: v, Note: "n"}
	}
	for _, tc := range []struct {
		name    string
		er      ExperimentResult
		verdict Verdict
		want    []string // per result: "name figure passed|reason-substring"
	}{
		{
			name: "all met",
			er: ExperimentResult{Verdict: Passed, Figures: []Figure{fig("engine", "experiment", "timeToDetect", "s", num(2))},
				Recordings: []Recording{
					{Recorder: "workloads", Figures: []Figure{fig("workloads", "deployment a/b", "timeToReady", "s", num(3))}},
					{Recorder: "breakers", Figures: []Figure{fig("breakers", "b1", "timeToClose", "s", num(15)), fig("breakers", "b1", "opens", "count", num(2))}},
				}},
			verdict: Passed,
			want:    []string{"workloads.readyWithin workloads/deployment a/b/timeToReady ok", "breakers.closedWithin breakers/b1/timeToClose ok", "breakers.maxOpens breakers/b1/opens ok", "detection.within engine/experiment/timeToDetect ok"},
		},
		{
			name: "missed, not reached, incomplete, nothing recorded",
			er: ExperimentResult{Verdict: Passed, Figures: []Figure{fig("engine", "experiment", "timeToDetect", "s", nil)},
				Recordings: []Recording{
					{Recorder: "workloads", Figures: []Figure{fig("workloads", "deployment a/b", "timeToReady", "s", num(31))}},
					{Recorder: "breakers", Incomplete: true, Reason: "prometheus unreachable", Figures: []Figure{fig("breakers", "b1", "opens", "count", num(0))}},
				}},
			verdict: Failed,
			want: []string{
				"workloads.readyWithin workloads/deployment a/b/timeToReady 31s is above the limit 30s",
				"breakers.closedWithin  nothing recorded for it: no timeToClose figure",
				"breakers.maxOpens breakers/b1/opens the breakers recording is incomplete (prometheus unreachable)",
				"detection.within engine/experiment/timeToDetect not reached: n",
			},
		},
		{
			name:    "no recording at all",
			er:      ExperimentResult{Verdict: Halted},
			verdict: Halted, // judged, but a halt stays a halt
			want: []string{
				"workloads.readyWithin  nothing recorded for it: no workloads recording",
				"breakers.closedWithin  nothing recorded for it: no breakers recording",
				"breakers.maxOpens  nothing recorded for it: no breakers recording",
				"detection.within  nothing recorded for it: no timeToDetect figure",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			er := tc.er
			judgeObjectives(o, &er)
			if er.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s (%s)", er.Verdict, tc.verdict, er.Reason)
			}
			if len(er.Objectives) != len(tc.want) {
				t.Fatalf("%d results, want %d: %+v", len(er.Objectives), len(tc.want), er.Objectives)
			}
			for i, r := range er.Objectives {
				got := r.Name + " " + r.Figure + " "
				if r.Passed {
					got += "ok"
				} else {
					got += r.Reason
				}
				if !strings.HasPrefix(got, tc.want[i]) {
					t.Errorf("result %d: %q, want prefix %q", i, got, tc.want[i])
				}
				if !r.Passed && tc.verdict == Failed && !strings.Contains(er.Reason, "objective "+r.Name+" (") {
					t.Errorf("reason %q does not name %s", er.Reason, r.Name)
				}
			}
		})
	}
	if er := (ExperimentResult{Verdict: Passed}); true {
		judgeObjectives(nil, &er)
		if er.Verdict != Passed || len(er.Objectives) != 0 {
			t.Errorf("no objectives: %+v", er)
		}
	}
}
