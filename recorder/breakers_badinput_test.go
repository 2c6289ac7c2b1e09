package recorder_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/breakersvc"
	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

func breakerExperiment(specs ...runbooks.BreakerSpec) *runbooks.Experiment {
	return &runbooks.Experiment{Name: "bad", Record: &runbooks.Record{Breakers: specs}}
}

// A preset whose metrics Prometheus does not have is blind, with the query that found nothing;
// the recording is incomplete, never "no transitions". The gobreaker entry beside it, whose
// metrics exist, is recorded as usual.
func TestBreakersBlindPreset(t *testing.T) {
	srv := prom.Start(t)
	if _, err := breakersvc.New(srv.Target.Registry, breakersvc.Config{Names: []string{"pay"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.WaitVector(ctx, `gobreaker_state`, func(v model.Vector) bool { return len(v) == 3 }); err != nil {
		t.Fatal(err)
	}
	x := breakerExperiment(
		runbooks.BreakerSpec{Preset: "resilience4j", Address: srv.URL, Selector: `job="target"`, Interval: runbooks.Duration(250 * time.Millisecond)},
		runbooks.BreakerSpec{Preset: "gobreaker", Address: srv.URL, Interval: runbooks.Duration(250 * time.Millisecond)},
	)
	sess, err := (&recorder.Breakers{}).Start(ctx, x, injectors.Env{})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	sess.FaultApplied(experiments.AppliedFault{Name: "test", Kind: "test", At: first})
	rec := sess.Finish(ctx, experiments.RecordingEnd{FirstFaultAt: first, RevertedAt: time.Now()})
	if !rec.Incomplete {
		t.Fatalf("a blind preset must make the recording incomplete: %+v", rec)
	}
	want := `resilience4j_circuitbreaker_state{job="target"}`
	if !strings.Contains(rec.Reason, "blind") || !strings.Contains(rec.Reason, want) {
		t.Errorf("reason %q does not say blind with the query %s", rec.Reason, want)
	}
	doc := rec.Data.(*recorder.BreakersDocument)
	if g := doc.Groups[0]; !g.Blind || g.BlindQuery != want || len(g.Breakers) != 0 {
		t.Errorf("resilience4j group: %+v, want blind with query %s", g, want)
	}
	if g := doc.Groups[1]; g.Blind || len(g.Breakers) != 1 || g.Breakers[0].Final != "closed" {
		t.Errorf("gobreaker group: %+v, want one closed breaker", g)
	}
	for _, f := range rec.Figures {
		if strings.Contains(f.Key, "resilience4j") {
			t.Errorf("a blind preset has figures: %+v", f)
		}
	}
}

// Prometheus going away during the recording makes it incomplete, saying what failed.
func TestBreakersPrometheusUnreachable(t *testing.T) {
	srv := prom.Start(t)
	if _, err := breakersvc.New(srv.Target.Registry, breakersvc.Config{Names: []string{"pay"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.WaitVector(ctx, `gobreaker_state`, func(v model.Vector) bool { return len(v) == 3 }); err != nil {
		t.Fatal(err)
	}
	x := breakerExperiment(runbooks.BreakerSpec{Preset: "gobreaker", Address: srv.URL,
		Interval: runbooks.Duration(250 * time.Millisecond), Settle: runbooks.Duration(2 * time.Second), Timeout: runbooks.Duration(time.Second)})
	sess, err := (&recorder.Breakers{}).Start(ctx, x, injectors.Env{})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	sess.FaultApplied(experiments.AppliedFault{Name: "test", Kind: "test", At: first})
	srv.Kill()
	rec := sess.Finish(ctx, experiments.RecordingEnd{FirstFaultAt: first, RevertedAt: time.Now()})
	if !rec.Incomplete {
		t.Fatalf("recording with Prometheus gone is not incomplete: %+v", rec)
	}
	if !strings.Contains(rec.Reason, "read-back failed") {
		t.Errorf("reason %q does not say the read-back failed", rec.Reason)
	}
	if len(rec.Figures) != 0 {
		t.Errorf("figures without data: %+v", rec.Figures)
	}
}
