package recorder_test

import (
	"context"
	"fmt"
	"math"
	"sort"
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

// gobreakerScenario drives real gobreaker breakers through cycles of opens, some shorter than the
// scrape interval, while the breaker recorder records them from the real Prometheus; it returns
// the recording and the ground truth from OnStateChange.
type gobreakerRun struct {
	scrape time.Duration
	rec    experiments.Recording
	doc    *recorder.BreakersDocument
	truth  []breakersvc.Transition
	first  time.Time
	revert time.Time
}

func runGobreakerScenario(t testing.TB, names []string, cycles int, scrape time.Duration) gobreakerRun {
	t.Helper()
	srv := prom.Start(t, prom.WithScrapeInterval(scrape))
	svc, err := breakersvc.New(srv.Target.Registry, breakersvc.Config{Names: names, OpenFor: scrape / 5})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := srv.WaitVector(ctx, `gobreaker_state{state="closed"} == 1`, func(v model.Vector) bool { return len(v) == len(names) }); err != nil {
		t.Fatalf("wait for the breakers' metrics: %v", err)
	}
	x := &runbooks.Experiment{Name: "gobreaker", Record: &runbooks.Record{Breakers: []runbooks.BreakerSpec{{
		Preset: "gobreaker", Address: srv.URL,
		Interval: runbooks.Duration(scrape), Settle: runbooks.Duration(20 * time.Second), Lookback: runbooks.Duration(10 * scrape),
	}}}}
	sess, err := (&recorder.Breakers{}).Start(ctx, x, injectors.Env{})
	if err != nil || sess == nil {
		t.Fatalf("start: %v, %v", sess, err)
	}
	run := gobreakerRun{scrape: scrape, first: time.Now()}
	sess.FaultApplied(experiments.AppliedFault{Name: "test", Kind: "test", At: run.first})

	// Each breaker alternates short opens (a third of a scrape) and long ones (two and a half
	// scrapes), with closed spells of one and a half scrapes; the breakers run out of phase.
	done := make(chan error, len(names))
	for i, name := range names {
		go func() {
			done <- drive(ctx, svc, name, cycles, scrape, time.Duration(i)*scrape/3)
		}()
	}
	for range names {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run.revert = time.Now()
	run.rec = sess.Finish(ctx, experiments.RecordingEnd{FirstFaultAt: run.first, RevertedAt: run.revert})
	run.truth = svc.Transitions()
	doc, ok := run.rec.Data.(*recorder.BreakersDocument)
	if !ok {
		t.Fatalf("recording data is %T", run.rec.Data)
	}
	run.doc = doc
	return run
}

func drive(ctx context.Context, svc *breakersvc.Service, name string, cycles int, scrape, offset time.Duration) error {
	pause := func(d time.Duration) error {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tm.C:
			return nil
		}
	}
	if err := pause(offset); err != nil {
		return err
	}
	for c := 0; c < cycles; c++ {
		for k := 0; k < 3; k++ {
			_ = svc.Call(name, false) // the third failure opens it
		}
		if st := svc.State(name); st != "open" {
			return fmt.Errorf("%s: %s after three failures, want open", name, st)
		}
		open := scrape / 3
		if c%2 == 1 {
			open = scrape * 5 / 2
		}
		if err := pause(open); err != nil {
			return err
		}
		// OpenFor has passed: this call finds it half-open and its success closes it.
		if err := svc.Call(name, true); err != nil {
			return fmt.Errorf("%s: closing call: %w", name, err)
		}
		if err := pause(scrape * 3 / 2); err != nil {
			return err
		}
	}
	return nil
}

// transitionErrors pairs the i-th true transition into open (and into closed) of every breaker
// with the i-th recorded one and returns the time errors in seconds and each pair's ±.
func transitionErrors(t testing.TB, run gobreakerRun) (errs, uncs []float64) {
	t.Helper()
	for _, b := range run.doc.Groups[0].Breakers {
		name := b.Labels["name"]
		for _, to := range []string{"open", "closed"} {
			var truth []time.Time
			for _, tr := range run.truth {
				if tr.Name == name && tr.To == to {
					truth = append(truth, tr.At)
				}
			}
			var got []recorder.BreakerChange
			for _, c := range b.Transitions {
				if c.To == to {
					got = append(got, c)
				}
			}
			if len(got) != len(truth) {
				t.Errorf("breaker %s: %d transitions into %s recorded, %d happened", name, len(got), to, len(truth))
				continue
			}
			for i := range got {
				errs = append(errs, math.Abs(got[i].At.Sub(truth[i]).Seconds()))
				uncs = append(uncs, got[i].Uncertainty)
			}
		}
	}
	return errs, uncs
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

func TestBreakersGobreakerShortOpens(t *testing.T) {
	scrape := time.Second
	run := runGobreakerScenario(t, []string{"pay", "ship"}, 8, scrape)
	if run.rec.Incomplete || !run.rec.Recovered {
		t.Fatalf("recording incomplete=%v recovered=%v: %s", run.rec.Incomplete, run.rec.Recovered, run.rec.Reason)
	}
	g := run.doc.Groups[0]
	if g.Blind || len(g.Breakers) != 2 {
		t.Fatalf("group: blind=%v, %d breakers, want 2: %+v", g.Blind, len(g.Breakers), g)
	}
	// Opens shorter than a scrape happened (the driver makes them a third of one), and every
	// one of them is in the timeline: the edge counter saw what the level missed.
	short := 0
	var openedAt = map[string]time.Time{}
	for _, tr := range run.truth {
		switch tr.To {
		case "open":
			openedAt[tr.Name] = tr.At
		case "half-open":
			if tr.At.Sub(openedAt[tr.Name]) < scrape {
				short++
			}
		}
	}
	if short == 0 {
		t.Fatal("the driver made no open shorter than the scrape interval")
	}
	shortSeen := 0
	for _, b := range g.Breakers {
		shortSeen += b.ShortOpens
	}
	t.Logf("%d opens shorter than the %s scrape; %d of them seen only through the edge counter", short, scrape, shortSeen)

	errs, uncs := transitionErrors(t, run)
	if len(errs) < 30 {
		t.Fatalf("%d transitions compared, want at least 30", len(errs))
	}
	for i, e := range errs {
		// A scrape's timestamp is taken just before the target answers, so a change in that
		// instant lands a little outside the stated ±; 250 ms covers a loaded machine.
		if e > uncs[i]+0.25 {
			t.Errorf("transition %d: error %.3fs beyond its stated ±%.3fs", i, e, uncs[i])
		}
	}
	p50, p99 := quantile(errs, 0.5), quantile(errs, 0.99)
	t.Logf("transition time error over %d transitions: p50 %.3fs, p99 %.3fs (scrape %s)", len(errs), p50, p99, scrape)
	if p99 > 2*scrape.Seconds() {
		t.Errorf("p99 error %.3fs above scrape + evaluation interval (%s)", p99, 2*scrape)
	}

	// The figures agree with the ground truth.
	figs := map[string]experiments.Figure{}
	for _, f := range run.rec.Figures {
		figs[f.Key] = f
	}
	for _, b := range g.Breakers {
		key := "breakers/gobreaker " + b.Subject
		opens := 0
		for _, tr := range run.truth {
			if tr.Name == b.Labels["name"] && tr.To == "open" {
				opens++
			}
		}
		if f := figs[key+"/opens"]; f.Value == nil || int(*f.Value) != opens || f.Metric != "opens" {
			t.Errorf("%s/opens = %+v, want %d", key, f, opens)
		}
		if f := figs[key+"/stillOpen"]; f.Value == nil || *f.Value != 0 {
			t.Errorf("%s/stillOpen = %+v, want 0", key, f)
		}
		if f := figs[key+"/timeToOpen"]; f.Value == nil || *f.Value < 0 || *f.Value > 2*scrape.Seconds()+1 {
			t.Errorf("%s/timeToOpen = %+v, want the first open, within seconds of the start", key, f)
		}
		if f := figs[key+"/timeToClose"]; f.Value == nil || *f.Value != 0 || f.Note != "closed before the revert" {
			t.Errorf("%s/timeToClose = %+v, want 0 (closed before the revert)", key, f)
		}
		if f := figs[key+"/openTime"]; f.Value == nil || *f.Value <= 0 {
			t.Errorf("%s/openTime = %+v, want positive", key, f)
		}
	}
	if len(run.rec.Timelines) != 2 || run.rec.Timelines[0].Type != "state" {
		t.Errorf("timelines: %+v", run.rec.Timelines)
	}
}
