package experiments

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// objectiveHorizon is the longest time after the last revert an objective can be met in.
func objectiveHorizon(o *runbooks.Objectives) time.Duration {
	if o == nil {
		return 0
	}
	var d time.Duration
	if o.Breakers != nil {
		d = max(d, o.Breakers.ClosedWithin.D())
	}
	if o.Autoscaling != nil {
		d = max(d, o.Autoscaling.BaselineWithin.D())
	}
	if o.Workloads != nil {
		d = max(d, o.Workloads.ReadyWithin.D())
	}
	return d
}

// engineRecorder names the engine's own figures (time to detect, error budget) in keys and in
// the objective mapping.
const engineRecorder = "engine"

// objective is one limit of the runbook's objectives, and the figures it is judged against: every
// figure with Metric metric in the recording of recorder (docs/recovery.md has the table).
type objective struct {
	name     string // as the runbook spells it: "breakers.closedWithin"
	recorder string
	metric   string
	limit    float64 // in the figure's unit: seconds or a count
	text     string  // the limit as the runbook wrote it
}

// objectivesOf lists the limits o sets, in a stable order.
func objectivesOf(o *runbooks.Objectives) []objective {
	if o == nil {
		return nil
	}
	var out []objective
	dur := func(name, recorder, metric string, d runbooks.Duration) {
		if d > 0 {
			out = append(out, objective{name, recorder, metric, d.D().Seconds(), d.String()})
		}
	}
	count := func(name, recorder, metric string, n *int) {
		if n != nil {
			out = append(out, objective{name, recorder, metric, float64(*n), strconv.Itoa(*n)})
		}
	}
	if w := o.Workloads; w != nil {
		dur("workloads.readyWithin", "workloads", "timeToReady", w.ReadyWithin)
	}
	if a := o.Autoscaling; a != nil {
		dur("autoscaling.scaleOutWithin", "autoscalers", "timeToScaleOut", a.ScaleOutWithin)
		count("autoscaling.maxDirectionChanges", "autoscalers", "directionChanges", a.MaxDirectionChanges)
		dur("autoscaling.baselineWithin", "autoscalers", "timeToBaseline", a.BaselineWithin)
	}
	if b := o.Breakers; b != nil {
		dur("breakers.closedWithin", "breakers", "timeToClose", b.ClosedWithin)
		count("breakers.maxOpens", "breakers", "opens", b.MaxOpens)
	}
	if d := o.Detection; d != nil {
		dur("detection.within", engineRecorder, "timeToDetect", d.Within)
	}
	return out
}

// judgeObjectives judges every objective against its figures into er.Objectives; a missed one
// turns a passed experiment into failed, and the reason names the objective, the figure, the
// limit and the value. An objective is never passed for want of data: a figure not reached, a
// figure from an incomplete recording, or no figure at all fails it.
func judgeObjectives(o *runbooks.Objectives, er *ExperimentResult) {
	var missed []string
	for _, ob := range objectivesOf(o) {
		for _, r := range judge(ob, er) {
			er.Objectives = append(er.Objectives, r)
			if !r.Passed {
				what := r.Figure
				if what == "" {
					what = ob.recorder + " " + ob.metric
				}
				missed = append(missed, fmt.Sprintf("objective %s (%s, limit %s) missed: %s", r.Name, what, r.Limit, r.Reason))
			}
		}
	}
	if len(missed) == 0 {
		return
	}
	msg := strings.Join(missed, "; ")
	switch er.Verdict {
	case Passed:
		er.Verdict, er.Reason = Failed, msg
	case Failed:
		er.Reason += "; " + msg
	}
}

// judge returns one result per figure the objective applies to, or one failed result when there
// is none.
func judge(ob objective, er *ExperimentResult) []ObjectiveResult {
	type source struct {
		figs       []Figure
		incomplete string
	}
	var sources []source
	if ob.recorder == engineRecorder {
		sources = append(sources, source{figs: er.Figures})
	}
	for _, rec := range er.Recordings {
		if rec.Recorder != ob.recorder {
			continue
		}
		s := source{figs: rec.Figures}
		if rec.Incomplete {
			s.incomplete = rec.Reason
			if s.incomplete == "" {
				s.incomplete = "its source was not visible for part of the recording"
			}
		}
		sources = append(sources, s)
	}
	base := ObjectiveResult{Name: ob.name, Limit: ob.text}
	var out []ObjectiveResult
	for _, s := range sources {
		for _, f := range s.figs {
			if f.Metric != ob.metric {
				continue
			}
			r := base
			r.Figure = f.Key
			r.Value = figureText(f)
			switch {
			case s.incomplete != "":
				r.Reason = "the " + ob.recorder + " recording is incomplete (" + s.incomplete + "), so its figure is not judged"
			case f.Value == nil:
				r.Value = "not reached"
				r.Reason = "not reached"
				if f.Note != "" {
					r.Reason += ": " + f.Note
				}
			case *f.Value > ob.limit:
				r.Reason = fmt.Sprintf("%s is above the limit %s", r.Value, ob.text)
			default:
				r.Passed = true
			}
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		r := base
		r.Value = "nothing recorded"
		r.Reason = "nothing recorded for it"
		if len(sources) == 0 {
			r.Reason += fmt.Sprintf(": no %s recording in this experiment", ob.recorder)
		} else {
			r.Reason += fmt.Sprintf(": no %s figure", ob.metric)
		}
		out = append(out, r)
	}
	return out
}

// figureText renders a figure's value for people: a duration for seconds, a number otherwise,
// with its uncertainty.
func figureText(f Figure) string {
	if f.Value == nil {
		return "not reached"
	}
	v := formatValue(*f.Value, f.Unit)
	if f.Uncertainty > 0 {
		v += " ±" + formatValue(f.Uncertainty, f.Unit)
	}
	return v
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
	case "ratio":
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
