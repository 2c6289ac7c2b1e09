package recorder

import (
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

func figureMap(figs []experiments.Figure) map[string]experiments.Figure {
	m := map[string]experiments.Figure{}
	for _, f := range figs {
		m[f.Metric] = f
	}
	return m
}

func wantValue(t *testing.T, m map[string]experiments.Figure, metric string, want float64) {
	t.Helper()
	f, ok := m[metric]
	switch {
	case !ok:
		t.Errorf("%s: missing", metric)
	case f.Value == nil:
		t.Errorf("%s: unset (%s), want %g", metric, f.Note, want)
	case *f.Value != want:
		t.Errorf("%s = %g, want %g", metric, *f.Value, want)
	}
}

func wantUnset(t *testing.T, m map[string]experiments.Figure, metric, note string) {
	t.Helper()
	f := m[metric]
	if f.Value != nil {
		t.Errorf("%s = %g, want unset", metric, *f.Value)
	}
	if !strings.Contains(f.Note, note) {
		t.Errorf("%s note %q, want it to say %q", metric, f.Note, note)
	}
}

// The shape the real HPA controller produced in this package's HPA test: 1 → 3 → 5 (new pods
// count as idle until their first metrics), then back to 1 after the revert.
func TestScaleFiguresOutAndBack(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := scaleWindow{
		Samples: []scaleSample{
			{at(0), 1, 1},
			{at(12.5), 1, 3}, // the decision: the figures follow desired
			{at(12.6), 3, 3},
			{at(30), 3, 5},
			{at(30.2), 5, 5},
			{at(95), 5, 1},
			{at(95.1), 1, 1},
		},
		FirstFault: at(5), LastRevert: at(65), End: at(100), MaxReplicas: 5, Uncertainty: 0.1,
	}
	m := figureMap(scaleFigures("hpa shop/web", w))
	wantValue(t, m, figReplicasBefore, 1)
	wantValue(t, m, figTimeToScaleOut, 7.5)
	wantValue(t, m, figPeakReplicas, 5)
	wantValue(t, m, figTimeToPeak, 25)
	wantValue(t, m, figHitMaxReplicas, 1)
	wantValue(t, m, figDirectionChanges, 1)
	wantValue(t, m, figScaleEvents, 3)
	wantValue(t, m, figTimeToBaseline, 30)
	if f := m[figTimeToScaleOut]; f.Key != "autoscalers/hpa shop/web/timeToScaleOut" || f.Unit != "s" || f.Uncertainty != 0.1 {
		t.Errorf("timeToScaleOut = %+v", f)
	}
	if f := m[figScaleEvents]; f.Uncertainty != 0 || f.Unit != "count" {
		t.Errorf("a count carries no time uncertainty: %+v", f)
	}
	if len(m) != 8 {
		t.Errorf("%d figures, want 8", len(m))
	}
}

func TestScaleFiguresThrashAndNotBack(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := scaleWindow{
		Samples: []scaleSample{
			{at(0), 2, 2}, {at(10), 2, 4}, {at(20), 4, 2}, {at(30), 2, 4}, {at(40), 4, 3},
		},
		FirstFault: at(1), LastRevert: at(35), End: at(60), MaxReplicas: 10, Waited: 25 * time.Second,
	}
	m := figureMap(scaleFigures("hpa shop/web", w))
	wantValue(t, m, figReplicasBefore, 2)
	wantValue(t, m, figDirectionChanges, 3) // out, in, out, in
	wantValue(t, m, figScaleEvents, 4)
	wantValue(t, m, figHitMaxReplicas, 0)
	wantUnset(t, m, figTimeToBaseline, "not within 25s")
}

func TestScaleFiguresNoReaction(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	w := scaleWindow{Samples: []scaleSample{{t0, 3, -1}}, FirstFault: t0.Add(time.Second), LastRevert: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)}
	m := figureMap(scaleFigures("prometheus asg", w))
	wantValue(t, m, figReplicasBefore, 3)
	wantUnset(t, m, figTimeToScaleOut, "did not scale out")
	wantUnset(t, m, figTimeToPeak, "did not scale out")
	wantUnset(t, m, figHitMaxReplicas, "does not state a maximum")
	wantValue(t, m, figDirectionChanges, 0)
	wantValue(t, m, figTimeToBaseline, 0)
}

// A change before the first fault is part of the baseline, not a reaction.
func TestScaleFiguresBaselineIsAtFirstFault(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := scaleWindow{Samples: []scaleSample{{at(0), 1, 1}, {at(2), 2, 2}, {at(8), 3, 3}}, FirstFault: at(5), LastRevert: at(9), End: at(10), Waited: time.Second}
	m := figureMap(scaleFigures("hpa a/b", w))
	wantValue(t, m, figReplicasBefore, 2)
	wantValue(t, m, figTimeToScaleOut, 3)
	wantValue(t, m, figScaleEvents, 1)
	wantUnset(t, m, figTimeToBaseline, "not within 1s")
}

func TestScaleTimelineSeries(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	tl := scaleTimeline("hpa a/b", []scaleSample{{t0, 1, 1}, {t0.Add(time.Second), 1, 3}, {t0.Add(2 * time.Second), 3, 3}}, nil, hpaResolution)
	if tl.Type != "series" || len(tl.Series) != 2 || tl.Resolution != hpaResolution {
		t.Fatalf("timeline %+v", tl)
	}
	if n := len(tl.Series[0].Points); tl.Series[0].Name != "current" || n != 2 {
		t.Errorf("current has %d points, want 2 (1 then 3)", n)
	}
	if n := len(tl.Series[1].Points); tl.Series[1].Name != "desired" || n != 2 {
		t.Errorf("desired has %d points, want 2 (1 then 3)", n)
	}
	noDesired := scaleTimeline("prometheus x", []scaleSample{{t0, 1, -1}}, nil, "")
	if len(noDesired.Series) != 1 {
		t.Errorf("a source without desired has %d series, want 1", len(noDesired.Series))
	}
}
