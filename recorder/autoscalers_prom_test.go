package recorder_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

func promExperiment(srv *prom.Server, query string) *runbooks.Experiment {
	return &runbooks.Experiment{Name: "asg", Faults: []runbooks.Fault{{ProcessPause: &runbooks.ProcessPause{}}},
		Record: &runbooks.Record{Autoscalers: []runbooks.AutoscalerSpec{{Prometheus: &runbooks.AutoscalerPrometheus{
			Name: "asg", Address: srv.URL, Query: query,
			ScrapeInterval: runbooks.Duration(srv.ScrapeInterval), Interval: runbooks.Duration(250 * time.Millisecond),
		}}}}}
}

func figuresBySubject(rec experiments.Recording) map[string]map[string]experiments.Figure {
	out := map[string]map[string]experiments.Figure{}
	for _, f := range rec.Figures {
		if out[f.Subject] == nil {
			out[f.Subject] = map[string]experiments.Figure{}
		}
		out[f.Subject][f.Metric] = f
	}
	return out
}

func figValue(t *testing.T, figs map[string]experiments.Figure, metric string) float64 {
	t.Helper()
	f, ok := figs[metric]
	if !ok || f.Value == nil {
		t.Fatalf("%s: unset (%+v)", metric, f)
	}
	return *f.Value
}

// The real Prometheus scrapes a gauge the test moves on a schedule; the recorder's times must fall
// within the uncertainty it states (scrape + evaluation interval) of the test's own times.
func TestAutoscalersPrometheusSource(t *testing.T) {
	srv := prom.Start(t, prom.WithScrapeInterval(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	g := srv.Target.Value
	g.WithLabelValues("asg-a").Set(2)
	g.WithLabelValues("asg-b").Set(3)
	if _, err := srv.WaitIngested(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}

	s, err := (&recorder.Autoscalers{}).Start(ctx, promExperiment(srv, `max by (series) (test_value{series=~"asg-.*"})`), injectors.Env{})
	if err != nil || s == nil {
		t.Fatalf("Start = %v, %v", s, err)
	}
	fault := time.Now()
	s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: fault})
	out := time.Now()
	g.WithLabelValues("asg-a").Set(5)
	if _, err := srv.WaitIngested(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The fault lasts a few evaluations past the scrape that showed it, as a real one would.
	hold := time.NewTimer(2 * time.Second)
	select {
	case <-hold.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	revert := time.Now()
	g.WithLabelValues("asg-a").Set(2)
	fctx, fcancel := context.WithDeadline(ctx, revert.Add(30*time.Second))
	defer fcancel()
	rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: revert})

	if rec.Incomplete {
		t.Fatalf("recording incomplete: %s", rec.Reason)
	}
	figs := figuresBySubject(rec)
	a := figs[`prometheus asg{series="asg-a"}`]
	b := figs[`prometheus asg{series="asg-b"}`]
	if a == nil || b == nil {
		t.Fatalf("subjects %v, want one per series", keys(figs))
	}
	if v := figValue(t, a, "replicasBefore"); v != 2 {
		t.Errorf("asg-a replicasBefore = %g, want 2", v)
	}
	if v := figValue(t, a, "peakReplicas"); v != 5 {
		t.Errorf("asg-a peakReplicas = %g, want 5", v)
	}
	unc := (srv.ScrapeInterval + 250*time.Millisecond).Seconds()
	tso := a["timeToScaleOut"]
	if tso.Uncertainty != unc {
		t.Errorf("timeToScaleOut uncertainty = %g, want scrape + evaluation = %g", tso.Uncertainty, unc)
	}
	truth := out.Sub(fault).Seconds()
	// Never before the change; after it by the stated uncertainty, plus slack for a loaded machine.
	if got := figValue(t, a, "timeToScaleOut"); got < truth-0.01 || got > truth+unc+5 {
		t.Errorf("timeToScaleOut = %.3fs, the gauge changed %.3fs after the fault (uncertainty ±%gs)", got, truth, unc)
	}
	if v := figValue(t, a, "timeToBaseline"); v < 0 || v > 30 {
		t.Errorf("timeToBaseline = %g", v)
	}
	if f := a["hitMaxReplicas"]; f.Value != nil || !strings.Contains(f.Note, "maximum") {
		t.Errorf("hitMaxReplicas of a Prometheus source = %+v, want unknown", f)
	}
	if f := b["timeToScaleOut"]; f.Value != nil || f.Note != "did not scale out" {
		t.Errorf("asg-b timeToScaleOut = %+v, want unset: did not scale out", f)
	}
	for _, tl := range rec.Timelines {
		if !strings.Contains(tl.Resolution, "scrape 500ms") {
			t.Errorf("timeline %s resolution %q does not state the scrape interval", tl.Key, tl.Resolution)
		}
	}
}

// A query with no series is blind, not "no scaling"; a Prometheus that dies during the recording
// makes it incomplete. Neither passes silently.
func TestAutoscalersPrometheusBlindAndUnreachable(t *testing.T) {
	srv := prom.Start(t, prom.WithScrapeInterval(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv.Target.Value.WithLabelValues("asg-a").Set(2)
	if _, err := srv.WaitIngested(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}

	t.Run("blind", func(t *testing.T) {
		s, err := (&recorder.Autoscalers{}).Start(ctx, promExperiment(srv, `asg_desired_capacity{group="nope"}`), injectors.Env{})
		if err != nil || s == nil {
			t.Fatalf("Start = %v, %v", s, err)
		}
		s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: time.Now()})
		fctx, fcancel := context.WithTimeout(ctx, time.Second)
		defer fcancel()
		rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		if !rec.Incomplete || !strings.Contains(rec.Reason, "blind") || !strings.Contains(rec.Reason, "asg_desired_capacity") {
			t.Errorf("recording = incomplete %v, reason %q; want incomplete, blind, naming the query", rec.Incomplete, rec.Reason)
		}
		for _, f := range rec.Figures {
			if f.Value != nil || !strings.Contains(f.Note, "blind") {
				t.Errorf("figure %s = %+v, want unset and blind", f.Key, f)
			}
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		s, err := (&recorder.Autoscalers{}).Start(ctx, promExperiment(srv, `test_value{series="asg-a"}`), injectors.Env{})
		if err != nil || s == nil {
			t.Fatalf("Start = %v, %v", s, err)
		}
		s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: time.Now()})
		srv.Kill()
		// Wait for an evaluation against the dead server (every 250ms), then finish.
		deadline := time.Now().Add(time.Second)
		fctx, fcancel := context.WithDeadline(ctx, deadline)
		defer fcancel()
		<-fctx.Done()
		rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		if !rec.Incomplete || !strings.Contains(rec.Reason, "evaluations failed") {
			t.Errorf("recording = incomplete %v, reason %q; want incomplete with failed evaluations", rec.Incomplete, rec.Reason)
		}
		// And a server that is down from the start refuses the recording: nothing is injected blind.
		_, err = (&recorder.Autoscalers{}).Start(ctx, promExperiment(srv, `test_value`), injectors.Env{})
		if err == nil || !strings.Contains(err.Error(), "prometheus asg") {
			t.Errorf("Start against a dead server = %v, want an error naming the source", err)
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
