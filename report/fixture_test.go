package report

import (
	"fmt"
	"math"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// The fixtures are results built with the result types, shaped like what the engine and the
// recorders write: a passed two-experiment run with a breaker, an autoscaler and a workload, and
// a run halted by an HTTP guardrail in its second experiment, its third experiment not reached.

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr[T any](v T) *T { return &v }

// observations samples an HTTP latency guardrail every interval over [from, to): value(t) gives
// the latency; a value above limit fails.
func observations(from, to, interval time.Duration, limit float64, value func(time.Duration) float64) []experiments.PhasedSample {
	var out []experiments.PhasedSample
	for d := from; d < to; d += interval {
		v := value(d)
		phase := "during"
		if d < 10*time.Second {
			phase = "steady-state"
		}
		o := guardrail.Observation{Time: at(d), Pass: v <= limit, Value: ptr(v), Duration: 3 * time.Millisecond}
		if !o.Pass {
			o.Detail = fmt.Sprintf("latency %.3fs > %.3fs", v, limit)
		}
		out = append(out, experiments.PhasedSample{Phase: phase, Observation: o})
	}
	return out
}

func breakerTimeline(subject string, changes ...any) experiments.Timeline {
	tl := experiments.Timeline{Key: "breakers/" + subject + "/state", Subject: "breaker " + subject, Type: "state", Resolution: "Prometheus scrape 1s + evaluation 1s"}
	for i := 0; i < len(changes); i += 2 {
		tl.States = append(tl.States, experiments.StateChange{At: at(changes[i].(time.Duration)), State: changes[i+1].(string), Uncertainty: 2})
	}
	return tl
}

func replicas(key string, pts map[string][][2]float64) experiments.Timeline {
	tl := experiments.Timeline{Key: key, Subject: "hpa shop/web", Type: "series", Unit: "replicas", Resolution: "watch events, ≤100 ms"}
	for _, name := range []string{"current", "desired"} {
		s := experiments.Series{Name: name}
		for _, p := range pts[name] {
			s.Points = append(s.Points, experiments.Point{T: at(time.Duration(p[0] * float64(time.Second))), V: p[1]})
		}
		tl.Series = append(tl.Series, s)
	}
	return tl
}

func fig(key, subject, metric, unit string, v *float64, unc float64) experiments.Figure {
	return experiments.Figure{Key: key, Subject: subject, Metric: metric, Unit: unit, Value: v, Uncertainty: unc}
}

func experiment(name string, start time.Duration, verdict experiments.Verdict) experiments.ExperimentResult {
	applied, reverted := at(start+10*time.Second), at(start+40*time.Second)
	x := experiments.ExperimentResult{
		Name: name, Verdict: verdict, StartedAt: at(start), EndedAt: at(start + 60*time.Second),
		Faults: []experiments.FaultResult{{
			Name: "kill-web", Kind: "podKill", LedgerID: "l-" + name, Targets: []string{"pod shop/web-1", "pod shop/web-2"},
			RecordedAt: &applied, AppliedAt: &applied, RevertedAt: &reverted,
			Events: []injectors.Event{{Time: at(start + 20*time.Second), Message: "killed pod shop/web-3"}, {Time: at(start + 30*time.Second), Message: "killed pod shop/web-1"}},
		}},
	}
	return x
}

// passedResult is a run whose two experiments passed, with every lane the report draws.
func passedResult() *experiments.Result {
	res := &experiments.Result{
		SchemaVersion: experiments.ResultSchemaVersion, FaultlineVersion: "v0.9.0", RunbookDigest: "sha256:" + fmt.Sprintf("%064x", 7),
		Identity:        &experiments.EnvironmentIdentity{Type: "golden-copy", Host: "ci-runner-3", ClusterID: "0b6c6d0e-0000-4000-8000-000000000001", Server: "https://127.0.0.1:6443"},
		ExperimentNames: []string{"web-pod-kill", "web-pod-kill-again"},
		RunID:           "a1b2c3d4e5", Runbook: "shop-gameday", Environment: "golden-eu1", Verdict: experiments.Passed,
		StartedAt: t0, EndedAt: at(140 * time.Second),
	}
	for i, name := range res.ExperimentNames {
		start := time.Duration(i) * 70 * time.Second
		x := experiment(name, start, experiments.Passed)
		lim := 0.25
		x.Guardrails = []experiments.GuardrailResult{{
			Name: "checkout-latency", Kind: "http", Describe: "GET http://127.0.0.1:8080/checkout 2xx within 250ms",
			Threshold: &lim, ThresholdOp: "<=",
			Observations: observations(start, start+60*time.Second, 250*time.Millisecond, lim, func(d time.Duration) float64 {
				return 0.05 + 0.1*math.Sin(float64(d)/float64(5*time.Second))*math.Sin(float64(d)/float64(5*time.Second))
			}),
		}}
		x.Recovery = &experiments.RecoveryResult{Within: "20s", Recovered: true, HealthyAt: ptr(at(start + 44*time.Second)), TimeToRecover: "4s"}
		s := start.Seconds()
		x.Recordings = []experiments.Recording{
			{Recorder: "breakers", Recovered: true,
				Figures: []experiments.Figure{
					fig("breakers/haproxy be_app/srv2/timeToOpen", "breaker be_app/srv2", "timeToOpen", "s", ptr(3.0), 2),
					fig("breakers/haproxy be_app/srv2/timeToClose", "breaker be_app/srv2", "timeToClose", "s", ptr(6.0), 2),
				},
				Timelines: []experiments.Timeline{breakerTimeline("be_app/srv2", start, "closed", start+13*time.Second, "open", start+25*time.Second, "half-open", start+26*time.Second, "open", start+44*time.Second, "half-open", start+46*time.Second, "closed")}},
			{Recorder: "autoscalers", Recovered: true,
				Figures: []experiments.Figure{fig("autoscalers/hpa shop/web/timeToScaleOut", "hpa shop/web", "timeToScaleOut", "s", ptr(15.0), 0.1)},
				Timelines: []experiments.Timeline{replicas("autoscalers/hpa shop/web/replicas", map[string][][2]float64{
					"current": {{s, 3}, {s + 27, 5}, {s + 50, 3}},
					"desired": {{s, 3}, {s + 25, 5}, {s + 48, 3}},
				})}},
			{Recorder: "workloads", Recovered: true,
				Figures: []experiments.Figure{fig("workloads/deployment shop/web/timeToReady", "deployment shop/web", "timeToReady", "s", ptr(8.5), 0.1)},
				Timelines: []experiments.Timeline{{Key: "workloads/deployment shop/web/ready", Subject: "deployment shop/web", Type: "state",
					States: []experiments.StateChange{{At: at(start), State: "ready"}, {At: at(start + 20*time.Second), State: "not-ready"}, {At: at(start + 28*time.Second), State: "ready"}, {At: at(start + 30*time.Second), State: "not-ready"}, {At: at(start + 38*time.Second), State: "ready"}},
					Marks:  []experiments.TimelineMark{{At: at(start + 20*time.Second), Label: "pod shop/web-3 killed"}, {At: at(start + 30*time.Second), Label: "pod shop/web-1 killed"}}}}},
		}
		x.Figures = []experiments.Figure{fig("engine/experiment/timeToDetect", "experiment", "timeToDetect", "s", nil, 0)}
		x.Figures[0].Note = "no guardrail breached"
		x.Objectives = []experiments.ObjectiveResult{
			{Name: "breakers.closedWithin", Figure: "breakers/haproxy be_app/srv2/timeToClose", Limit: "30s", Value: "6s", Passed: true},
			{Name: "workloads.readyWithin", Figure: "workloads/deployment shop/web/timeToReady", Limit: "20s", Value: "8.5s", Passed: true},
		}
		res.Experiments = append(res.Experiments, x)
	}
	return res
}

// haltedResult: the first experiment passed, the second was halted by the latency guardrail (and
// missed its breaker objective), the third was not reached.
func haltedResult() *experiments.Result {
	res := passedResult()
	res.RunID = "f00dcafe01"
	res.ExperimentNames = append(res.ExperimentNames, "db-partition")
	res.Verdict, res.ExitCode = experiments.Halted, 2
	res.Reason = "guardrail checkout-latency breached: latency 0.612s > 0.250s"
	x := &res.Experiments[1]
	x.Verdict = experiments.Halted
	x.Reason = res.Reason
	lim := 0.25
	start := 70 * time.Second
	x.Guardrails[0].Breached = true
	x.Guardrails[0].Observations = observations(start, start+60*time.Second, 250*time.Millisecond, lim, func(d time.Duration) float64 {
		if d >= start+22*time.Second && d < start+24*time.Second {
			return 0.612
		}
		return 0.08
	})
	haltAt, lastRevert := at(start+23*time.Second), at(start+23*time.Second+180*time.Millisecond)
	res.Halt = &experiments.Halt{At: haltAt, Reason: res.Reason, Source: "guardrail", Guardrail: "checkout-latency", Value: ptr(0.612), LastRevertedAt: &lastRevert}
	x.Faults[0].RevertedAt = &lastRevert
	x.Faults[0].Events = x.Faults[0].Events[:1]
	x.Recordings[0].Figures[1] = fig("breakers/haproxy be_app/srv2/timeToClose", "breaker be_app/srv2", "timeToClose", "s", nil, 2)
	x.Recordings[0].Figures[1].Note = "the breaker never closed"
	x.Recordings[0].Timelines = []experiments.Timeline{breakerTimeline("be_app/srv2", start, "closed", start+13*time.Second, "open")}
	x.Objectives[0] = experiments.ObjectiveResult{Name: "breakers.closedWithin", Figure: "breakers/haproxy be_app/srv2/timeToClose", Limit: "30s", Value: "not reached", Passed: false,
		Reason: "breaker be_app/srv2 did not close within 30s of the last revert"}
	x.Figures[0] = fig("engine/experiment/timeToDetect", "experiment", "timeToDetect", "s", ptr(12.0), 0.25)
	x.Recovery = &experiments.RecoveryResult{Within: "20s", Recovered: true, HealthyAt: ptr(at(start + 25*time.Second)), TimeToRecover: "1.82s"}
	res.EndedAt = at(start + 60*time.Second)
	return res
}
