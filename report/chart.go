package report

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// Plot geometry, in SVG user units. Every chart of an experiment shares the time axis: x runs
// from 0 (the experiment's first moment) to plotWidth (its last).
const (
	plotWidth   = 1000.0
	buckets     = 1000 // downsampling buckets across the full width (two per pixel on a laptop)
	seriesH     = 90.0
	stateH      = 22.0
	faultRowH   = 16.0
	marginLeft  = 92.0
	marginRight = 12.0
)

// chart is one lane of an experiment's stack.
type chart struct {
	ID    string
	Kind  string // faults, guardrail, series, state
	Title string
	Sub   string
	H     float64
	// YMin and YMax are the value range of series charts (y is inverted: YMax at the top).
	YMin, YMax float64
	Unit       string
	Lines      []line
	Threshold  *float64
	Spans      []span
	Marks      []mark
	Legend     []legendItem
	// Hover is what the read-out shows, per line or lane, in milliseconds from the start.
	Hover hoverData
}

type line struct {
	Name  string
	Class string
	Step  bool
	Pts   []pt
}

type span struct {
	X, W, Y, H float64
	Class      string
	Label      string
}

type mark struct {
	X, Y  float64
	Class string // breach, halt, error, event
	Label string
}

type legendItem struct{ Class, Label string }

type hoverData struct {
	Unit   string        `json:"unit,omitempty"`
	Series []hoverSeries `json:"series,omitempty"`
	States []hoverStates `json:"states,omitempty"`
}

type hoverSeries struct {
	Name string    `json:"name"`
	T    []int64   `json:"t"`
	V    []float64 `json:"v"`
}

type hoverStates struct {
	Name string   `json:"name"`
	T    []int64  `json:"t"`
	S    []string `json:"s"`
}

// axis maps times to x.
type axis struct {
	t0   time.Time
	span time.Duration
}

func (a axis) x(t time.Time) float64 {
	if a.span <= 0 {
		return 0
	}
	return math.Max(0, math.Min(plotWidth, float64(t.Sub(a.t0))/float64(a.span)*plotWidth))
}

func (a axis) ms(t time.Time) int64 { return t.Sub(a.t0).Milliseconds() }

// experimentAxis spans everything the experiment recorded: its own start and end, every
// observation (the steady-state check starts before StartedAt) and every timeline point.
func experimentAxis(x *experiments.ExperimentResult) axis {
	lo, hi := x.StartedAt, x.EndedAt
	see := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	for _, gs := range [][]experiments.GuardrailResult{x.Guardrails, x.Hypothesis} {
		for _, g := range gs {
			if n := len(g.Observations); n > 0 {
				see(g.Observations[0].Time)
				see(g.Observations[n-1].Time)
			}
		}
	}
	for _, r := range x.Recordings {
		for _, tl := range r.Timelines {
			for _, s := range tl.Series {
				if n := len(s.Points); n > 0 {
					see(s.Points[0].T)
					see(s.Points[n-1].T)
				}
			}
			for _, s := range tl.States {
				see(s.At)
			}
		}
	}
	if !hi.After(lo) {
		hi = lo.Add(time.Second)
	}
	return axis{t0: lo, span: hi.Sub(lo)}
}

// faultWindows are the shaded spans: each fault from applied to reverted (or to the end).
func faultWindows(x *experiments.ExperimentResult, a axis) []span {
	var out []span
	for _, f := range x.Faults {
		if f.AppliedAt == nil {
			continue
		}
		end := x.EndedAt
		if f.RevertedAt != nil {
			end = *f.RevertedAt
		}
		x0, x1 := a.x(*f.AppliedAt), a.x(end)
		out = append(out, span{X: x0, W: math.Max(x1-x0, 0.5), Label: f.Name + " (" + f.Kind + ")"})
	}
	return out
}

func faultChart(x *experiments.ExperimentResult, a axis, halt *experiments.Halt) chart {
	c := chart{Kind: "faults", Title: "Faults", Sub: "applied → reverted; each repeated action (a kill, a pause) is a tick"}
	c.H = math.Max(float64(len(x.Faults)), 1) * faultRowH
	for i, f := range x.Faults {
		y := float64(i) * faultRowH
		if f.AppliedAt != nil {
			end := x.EndedAt
			state := "not reverted"
			if f.RevertedAt != nil {
				end, state = *f.RevertedAt, "reverted"
			}
			x0, x1 := a.x(*f.AppliedAt), a.x(end)
			c.Spans = append(c.Spans, span{X: x0, W: math.Max(x1-x0, 0.5), Y: y + 2, H: faultRowH - 4, Class: "fault", Label: fmt.Sprintf("%s (%s) on %s: applied %s, %s %s", f.Name, f.Kind, strings.Join(f.Targets, ", "), clock(*f.AppliedAt), state, clock(end))})
		}
		for _, ev := range f.Events {
			c.Marks = append(c.Marks, mark{X: a.x(ev.Time), Y: y + faultRowH/2, Class: "event", Label: clock(ev.Time) + " " + ev.Message})
		}
		if f.Error != "" {
			c.Marks = append(c.Marks, mark{X: 0, Y: y + faultRowH/2, Class: "error", Label: f.Name + ": " + f.Error})
		}
	}
	if halt != nil {
		c.Marks = append(c.Marks, mark{X: a.x(halt.At), Y: c.H / 2, Class: "halt", Label: "halt " + clock(halt.At) + ": " + halt.Reason})
	}
	return c
}

func guardrailChart(g *experiments.GuardrailResult, role string, a axis, halt *experiments.Halt) chart {
	c := chart{Kind: "guardrail", Title: role + " " + g.Name, Sub: g.Describe, H: seriesH, Threshold: g.Threshold}
	if g.Kind == "http" {
		c.Unit, c.Hover.Unit = "s", "s" // an HTTP check's value is its latency
	}
	if g.Truncated > 0 {
		c.Sub += fmt.Sprintf(" (%d observations beyond the result's limit were not kept)", g.Truncated)
	}
	var pts []pt
	var failX []float64
	var fails []experiments.PhasedSample
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, o := range g.Observations {
		if o.Value != nil && !math.IsNaN(*o.Value) && !math.IsInf(*o.Value, 0) {
			pts = append(pts, pt{X: a.x(o.Time), V: *o.Value, T: a.ms(o.Time)})
			lo, hi = math.Min(lo, *o.Value), math.Max(hi, *o.Value)
		}
		if !o.Pass && !o.Ignored {
			failX = append(failX, a.x(o.Time))
			fails = append(fails, o)
		}
	}
	if g.Threshold != nil {
		lo, hi = math.Min(lo, *g.Threshold), math.Max(hi, *g.Threshold)
	}
	c.YMin, c.YMax = yRange(lo, hi)
	pts = downsample(pts, plotWidth/buckets)
	c.Lines = []line{{Name: "value", Class: "s0", Pts: pts}}
	c.Hover.Series = []hoverSeries{hover("value", pts)}
	for _, i := range thinMarks(failX, plotWidth/buckets) {
		o := fails[i]
		y := c.H - 4 // a failure without a value (an error, a wrong status) sits on the floor
		if o.Value != nil {
			y = c.y(*o.Value)
		}
		cls, why := "breach", o.Detail
		if o.Error != "" {
			cls, why = "error", o.Error
		}
		c.Marks = append(c.Marks, mark{X: failX[i], Y: y, Class: cls, Label: clock(o.Time) + " failed: " + why})
	}
	if halt != nil && halt.Guardrail == g.Name {
		c.Marks = append(c.Marks, mark{X: a.x(halt.At), Y: 4, Class: "halt", Label: "halt " + clock(halt.At) + ": " + halt.Reason})
	}
	c.Legend = []legendItem{{"s0", "value"}}
	if g.Threshold != nil {
		c.Legend = append(c.Legend, legendItem{"threshold", "limit " + g.ThresholdOp + " " + trimFloat(*g.Threshold)})
	}
	if len(c.Marks) > 0 {
		c.Legend = append(c.Legend, legendItem{"breach", "failed evaluation"})
	}
	return c
}

func (c *chart) y(v float64) float64 {
	if c.YMax == c.YMin {
		return c.H / 2
	}
	return c.H - (v-c.YMin)/(c.YMax-c.YMin)*c.H
}

func yRange(lo, hi float64) (float64, float64) {
	if math.IsInf(lo, 1) {
		return 0, 1
	}
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi + (hi-lo)*0.1
}

func hover(name string, pts []pt) hoverSeries {
	h := hoverSeries{Name: name, T: make([]int64, len(pts)), V: make([]float64, len(pts))}
	for i, p := range pts {
		h.T[i], h.V[i] = p.T, round4(p.V)
	}
	return h
}

// round4 keeps four significant digits: the read-out never needs more, and the file stays small.
func round4(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

func timelineChart(r *experiments.Recording, tl *experiments.Timeline, a axis) chart {
	c := chart{Kind: tl.Type, Title: tl.Subject, Sub: r.Recorder + " · " + tl.Key, Unit: tl.Unit}
	if tl.Resolution != "" {
		c.Sub += " · " + tl.Resolution
	}
	switch tl.Type {
	case "state":
		c.H = stateH
		hs := hoverStates{Name: tl.Subject}
		// Recorders append in time order; a merged or hand-made lane may not be.
		states := slices.Clone(tl.States)
		slices.SortStableFunc(states, func(a, b experiments.StateChange) int { return a.At.Compare(b.At) })
		for i, s := range states {
			end := a.t0.Add(a.span)
			if i+1 < len(states) {
				end = states[i+1].At
			}
			x0, x1 := a.x(s.At), a.x(end)
			label := fmt.Sprintf("%s from %s", s.State, clock(s.At))
			if s.Uncertainty > 0 {
				label += fmt.Sprintf(" (±%s)", FormatValue(s.Uncertainty, "s"))
			}
			// A state that lasted less than a pixel still gets one, so a flap is never hidden.
			c.Spans = append(c.Spans, span{X: x0, W: math.Max(x1-x0, 0.6), Y: 0, H: c.H, Class: stateClass(s.State), Label: label})
			hs.T = append(hs.T, a.ms(s.At))
			hs.S = append(hs.S, s.State)
		}
		c.Hover.States = []hoverStates{hs}
		seen := map[string]bool{}
		for _, s := range states {
			if !seen[s.State] {
				seen[s.State] = true
				c.Legend = append(c.Legend, legendItem{stateClass(s.State), s.State})
			}
		}
	default:
		c.Kind = "series"
		c.H = seriesH
		lo, hi := math.Inf(1), math.Inf(-1)
		for i, s := range tl.Series {
			var pts []pt
			for _, p := range s.Points {
				pts = append(pts, pt{X: a.x(p.T), V: p.V, T: a.ms(p.T)})
				lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
			}
			slices.SortStableFunc(pts, func(a, b pt) int { return cmp.Compare(a.T, b.T) })
			pts = downsample(pts, plotWidth/buckets)
			cls := fmt.Sprintf("s%d", i%6)
			c.Lines = append(c.Lines, line{Name: s.Name, Class: cls, Step: true, Pts: pts})
			c.Hover.Series = append(c.Hover.Series, hover(s.Name, pts))
			c.Legend = append(c.Legend, legendItem{cls, s.Name})
		}
		c.YMin, c.YMax = yRange(lo, hi)
	}
	c.Hover.Unit = tl.Unit
	for _, m := range tl.Marks {
		y := c.H / 2
		c.Marks = append(c.Marks, mark{X: a.x(m.At), Y: y, Class: "event", Label: clock(m.At) + " " + m.Label})
	}
	return c
}

// stateClass colours a state by what it means for the service, whatever the recorder calls it.
func stateClass(s string) string {
	switch strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, "_", "-"), " ", "-")) {
	case "closed", "ready", "healthy", "up", "available", "ok", "passing", "stable":
		return "st-ok"
	case "half-open", "halfopen", "degraded", "progressing", "scaling", "pending", "recovering", "partial":
		return "st-warn"
	case "open", "down", "not-ready", "notready", "unready", "unavailable", "failed", "failing", "killed", "deleted":
		return "st-bad"
	case "unknown", "":
		return "st-unknown"
	}
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("st-o%d", h.Sum32()%4)
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }

func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", v), "0"), ".")
}

// experimentCharts builds the stack of one experiment, faults first.
func experimentCharts(res *experiments.Result, x *experiments.ExperimentResult, id string) ([]chart, axis, []span) {
	a := experimentAxis(x)
	var halt *experiments.Halt
	if res.Halt != nil && x.Verdict == experiments.Halted {
		halt = res.Halt
	}
	charts := []chart{faultChart(x, a, halt)}
	for i := range x.Guardrails {
		charts = append(charts, guardrailChart(&x.Guardrails[i], "guardrail", a, halt))
	}
	for i := range x.Hypothesis {
		charts = append(charts, guardrailChart(&x.Hypothesis[i], "hypothesis", a, nil))
	}
	for i := range x.Recordings {
		r := &x.Recordings[i]
		tls := slices.Clone(r.Timelines)
		for j := range tls {
			charts = append(charts, timelineChart(r, &tls[j], a))
		}
	}
	for i := range charts {
		charts[i].ID = fmt.Sprintf("%s-c%d", id, i)
	}
	return charts, a, faultWindows(x, a)
}
