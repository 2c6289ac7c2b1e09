package recorder

import (
	"fmt"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// Figures and timelines of the workload recorder, in the engine's vocabulary (docs/recovery.md
// lists them). The objective workloads.readyWithin is judged against timeToReady.

// recording turns the session's state into the engine's Recording; s.mu is held.
func (s *workloadSession) recording(end experiments.RecordingEnd) experiments.Recording {
	doc, recovered, reason := s.document(end.RevertedAt)
	rec := experiments.Recording{Recorder: "workloads", Recovered: recovered, Reason: reason, Data: doc}
	replacements := s.matchReplacements()
	for _, w := range s.workloads {
		rec.Figures = append(rec.Figures, s.figures(w, end, replacements)...)
		rec.Timelines = append(rec.Timelines, s.timeline(w, end))
	}
	return rec
}

func (s *workloadSession) figures(w *workload, end experiments.RecordingEnd, replacements map[*pod]*pod) []experiments.Figure {
	fig := func(metric, unit string) experiments.Figure {
		return experiments.Figure{Key: "workloads/" + w.key + "/" + metric, Subject: w.key, Metric: metric, Unit: unit}
	}
	secs := func(f *experiments.Figure, from, to time.Time, late bool) {
		v := max(to.Sub(from), 0).Seconds()
		f.Value = &v
		if late {
			f.Uncertainty = 1 // the API server's timestamps are whole seconds
		}
	}
	ok := w.fullyAvailable() && (w.disruptedAt == nil || w.recoveredAt != nil)
	notReady := func(f *experiments.Figure) {
		f.Note = "not fully available by the end of the recording: " + s.notRecoveredReason(w, replacements)
	}

	// timeToReady: from the workload's last disruption to fully Ready again. The last disruption
	// is its last pod deletion, or the revert when a shard-outage held it down until then.
	ready := fig("timeToReady", "s")
	switch {
	case w.disruptedAt == nil && ok:
		v := 0.0
		ready.Value, ready.Note = &v, "not disrupted: fully available throughout"
	case !ok:
		notReady(&ready)
	default:
		from, late := w.disruptedAt.Best(), w.disruptedAt.Late
		if w.lastKillAt != nil && w.lastKillAt.Best().After(from) {
			from, late = w.lastKillAt.Best(), w.lastKillAt.Late
		}
		what := "its last pod deletion"
		if s.held[w.key] && end.RevertedAt.After(from) {
			from, late, what = end.RevertedAt, false, "the revert (a shard-outage held it down until then)"
		}
		secs(&ready, from, w.recoveredAt.Best(), late || w.recoveredAt.Late)
		ready.Note = "from " + what + " to fully Ready and available again"
	}
	out := []experiments.Figure{ready}

	if w.disruptedAt != nil {
		rec := fig("timeToRecover", "s")
		if ok {
			secs(&rec, w.disruptedAt.Best(), w.recoveredAt.Best(), w.disruptedAt.Late || w.recoveredAt.Late)
			rec.Note = "from its first disruption to fully available again"
		} else {
			notReady(&rec)
		}
		out = append(out, rec)
	}
	if ok && w.recoveredAt != nil && !end.RevertedAt.IsZero() && !w.recoveredAt.Best().Before(end.RevertedAt) {
		f := fig("afterRevert", "s")
		secs(&f, end.RevertedAt, w.recoveredAt.Best(), w.recoveredAt.Late)
		out = append(out, f)
	}

	killed := fig("podsKilled", "count")
	n := float64(len(w.kills))
	killed.Value = &n
	minReady := fig("minReady", "replicas")
	m := float64(max(w.minReady, 0))
	minReady.Value = &m
	out = append(out, killed, minReady)

	if len(w.kills) > 0 {
		slow := fig("maxPodTimeToReady", "s")
		var worst time.Duration
		var late bool
		missing := 0
		for _, k := range w.kills {
			r := replacements[k]
			if r == nil || r.ready == nil {
				missing++
				continue
			}
			if d := r.ready.Best().Sub(k.killed.Best()); d > worst {
				worst, late = d, k.killed.Late || r.ready.Late
			}
		}
		if missing > 0 {
			slow.Note = fmt.Sprintf("%d of %d killed pod(s) without a Ready replacement", missing, len(w.kills))
		} else {
			v := worst.Seconds()
			slow.Value = &v
			if late {
				slow.Uncertainty = 1
			}
			slow.Note = "the slowest killed pod: deleted → its replacement Ready"
		}
		out = append(out, slow)
	}
	return out
}

// timeline is a workload's ready and available replicas over the recording, with a mark for
// every pod deletion and for the faults.
func (s *workloadSession) timeline(w *workload, end experiments.RecordingEnd) experiments.Timeline {
	tl := experiments.Timeline{
		Key: "workloads/" + w.key + "/replicas", Subject: w.key, Type: "series", Unit: "replicas",
		Series: []experiments.Series{
			{Name: "ready", Points: append([]experiments.Point{}, w.readySeries...)},
			{Name: "available", Points: append([]experiments.Point{}, w.availSeries...)},
		},
		Resolution: "watch events: every change as the API server sent it (typically within 100 ms)",
	}
	for _, f := range s.faults {
		tl.Marks = append(tl.Marks, experiments.TimelineMark{At: f.AppliedAt, Label: "fault " + f.Name + " applied"})
	}
	for _, k := range w.kills {
		label := "pod " + k.name + " deleted"
		if !s.targeted[k.uid] && !s.targeted[k.namespace+"/"+k.name] {
			label += " (by its controller)"
		}
		tl.Marks = append(tl.Marks, experiments.TimelineMark{At: k.killed.Best(), Label: label})
	}
	if !end.RevertedAt.IsZero() {
		tl.Marks = append(tl.Marks, experiments.TimelineMark{At: end.RevertedAt, Label: "faults reverted"})
	}
	return tl
}
