package recorder

import (
	"fmt"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// scaleSample is one observed state of an autoscaler: its current and desired capacity from At
// on. Desired is negative when the source does not know it.
type scaleSample struct {
	At      time.Time
	Current float64
	Desired float64
}

// level is the capacity the figures are computed from: what the autoscaler decided (desired)
// when the source knows it, because that is the moment it reacted; current follows once the
// workload controller has acted on it.
func (s scaleSample) level() float64 {
	if s.Desired >= 0 {
		return s.Desired
	}
	return s.Current
}

// scaleWindow is what the figures of one autoscaler are computed over.
type scaleWindow struct {
	Samples     []scaleSample // in time order; the first is the state when recording began
	FirstFault  time.Time     // zero: no fault was applied
	LastRevert  time.Time
	End         time.Time // when the recording stopped
	MaxReplicas float64   // 0: unknown (a Prometheus source)
	// Uncertainty is the ± bound of every time figure, in seconds.
	Uncertainty float64
	// Waited is how long after the revert the recorder waited for the baseline ("not within N").
	Waited time.Duration
}

// The figure names; docs/recovery.md describes each and the engine judges objectives by them.
const (
	figReplicasBefore   = "replicasBefore"
	figTimeToScaleOut   = "timeToScaleOut"
	figPeakReplicas     = "peakReplicas"
	figTimeToPeak       = "timeToPeak"
	figHitMaxReplicas   = "hitMaxReplicas"
	figDirectionChanges = "directionChanges"
	figScaleEvents      = "scaleEvents"
	figTimeToBaseline   = "timeToBaseline"
)

// scaleFigures computes the recovery figures of one autoscaler (subject "hpa shop/web").
func scaleFigures(subject string, w scaleWindow) []experiments.Figure {
	fig := func(metric, unit string, v *float64, note string) experiments.Figure {
		f := experiments.Figure{Key: "autoscalers/" + subject + "/" + metric, Subject: subject, Metric: metric, Unit: unit, Value: v, Note: note}
		if unit == "s" && v != nil {
			f.Uncertainty = w.Uncertainty
		}
		return f
	}
	num := func(v float64) *float64 { return &v }
	secs := func(d time.Duration) *float64 { return num(max(d, 0).Seconds()) }

	if len(w.Samples) == 0 {
		note := "nothing was observed"
		return []experiments.Figure{
			fig(figReplicasBefore, "replicas", nil, note), fig(figTimeToScaleOut, "s", nil, note),
			fig(figPeakReplicas, "replicas", nil, note), fig(figTimeToPeak, "s", nil, note),
			fig(figHitMaxReplicas, "count", nil, note), fig(figDirectionChanges, "count", nil, note),
			fig(figScaleEvents, "count", nil, note), fig(figTimeToBaseline, "s", nil, note),
		}
	}
	from := w.FirstFault
	if from.IsZero() {
		from = w.Samples[0].At
	}
	// The baseline is the level in force when the first fault was applied.
	before := w.Samples[0].level()
	i0 := 0
	for i, s := range w.Samples {
		if s.At.After(from) {
			break
		}
		before, i0 = s.level(), i
	}
	after := w.Samples[i0:] // after[0] is the state at the first fault

	var out []experiments.Figure
	out = append(out, fig(figReplicasBefore, "replicas", num(before), ""))

	var scaleOut *float64
	peak, peakAt := before, time.Time{}
	hitMax := false
	changes, turns, lastDir := 0, 0, 0
	prev := before
	for _, s := range after {
		l := s.level()
		if w.MaxReplicas > 0 && l >= w.MaxReplicas {
			hitMax = true
		}
		if l == prev {
			continue
		}
		dir := 1
		if l < prev {
			dir = -1
		}
		changes++
		if lastDir != 0 && dir != lastDir {
			turns++
		}
		lastDir, prev = dir, l
		if dir > 0 && scaleOut == nil && l > before {
			scaleOut = secs(s.At.Sub(from))
		}
		if l > peak {
			peak, peakAt = l, s.At
		}
	}
	if scaleOut != nil {
		out = append(out, fig(figTimeToScaleOut, "s", scaleOut, ""))
	} else {
		out = append(out, fig(figTimeToScaleOut, "s", nil, "did not scale out"))
	}
	out = append(out, fig(figPeakReplicas, "replicas", num(peak), ""))
	if peakAt.IsZero() {
		out = append(out, fig(figTimeToPeak, "s", nil, "did not scale out"))
	} else {
		out = append(out, fig(figTimeToPeak, "s", secs(peakAt.Sub(from)), ""))
	}
	switch {
	case w.MaxReplicas <= 0:
		out = append(out, fig(figHitMaxReplicas, "count", nil, "the source does not state a maximum"))
	case hitMax:
		out = append(out, fig(figHitMaxReplicas, "count", num(1), fmt.Sprintf("reached maxReplicas %g", w.MaxReplicas)))
	default:
		out = append(out, fig(figHitMaxReplicas, "count", num(0), ""))
	}
	out = append(out, fig(figDirectionChanges, "count", num(float64(turns)), ""))
	out = append(out, fig(figScaleEvents, "count", num(float64(changes)), ""))
	out = append(out, baselineFigure(fig, w, before))
	return out
}

// baselineFigure is the time from the last revert until the level was back at the baseline for
// good (to the end of the recording); 0 when it never left it or was back before the revert.
func baselineFigure(fig func(metric, unit string, v *float64, note string) experiments.Figure, w scaleWindow, before float64) experiments.Figure {
	if w.LastRevert.IsZero() {
		return fig(figTimeToBaseline, "s", nil, "no fault was reverted")
	}
	last := w.Samples[len(w.Samples)-1]
	if last.level() != before {
		return fig(figTimeToBaseline, "s", nil, fmt.Sprintf("not within %s: still at %g replicas, baseline %g", w.Waited.Round(time.Second), last.level(), before))
	}
	// The level has been at the baseline since the last change that made it so.
	back := w.Samples[0].At
	for i := len(w.Samples) - 1; i > 0; i-- {
		if w.Samples[i].level() != w.Samples[i-1].level() {
			back = w.Samples[i].At
			break
		}
	}
	v := max(back.Sub(w.LastRevert), 0).Seconds()
	return fig(figTimeToBaseline, "s", &v, "")
}

// scaleTimeline is the chartable lane of one autoscaler: current and desired capacity as step
// series, with marks.
func scaleTimeline(subject string, samples []scaleSample, marks []experiments.TimelineMark, resolution string) experiments.Timeline {
	cur := experiments.Series{Name: "current"}
	des := experiments.Series{Name: "desired"}
	for i, s := range samples {
		if i == 0 || s.Current != samples[i-1].Current {
			cur.Points = append(cur.Points, experiments.Point{T: s.At, V: s.Current})
		}
		if s.Desired >= 0 && (i == 0 || s.Desired != samples[i-1].Desired) {
			des.Points = append(des.Points, experiments.Point{T: s.At, V: s.Desired})
		}
	}
	tl := experiments.Timeline{Key: "autoscalers/" + subject + "/replicas", Subject: subject, Type: "series", Unit: "replicas",
		Series: []experiments.Series{cur}, Marks: marks, Resolution: resolution}
	if len(des.Points) > 0 {
		tl.Series = append(tl.Series, des)
	}
	return tl
}
