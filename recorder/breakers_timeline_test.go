package recorder

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/runbooks"
)

// The reconstruction on hand-made sample sequences: what each signal adds, and where the
// times land. (The recorder's real-part tests run it against real scrapes.)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func levels(states ...string) []stateSample {
	var out []stateSample
	for i, s := range states {
		out = append(out, stateSample{t: at(float64(i * 10)), state: s})
	}
	return out
}

func changes(tr track) string {
	var b []string
	for _, t := range tr.transitions {
		b = append(b, t.to+"@"+t.at.Sub(t0).String()+"±"+time.Duration(t.unc*float64(time.Second)).String())
	}
	return strings.Join(b, " ")
}

func TestReconstructLevelOnly(t *testing.T) {
	tr := reconstruct(levels("closed", "closed", "open", "open", "closed"), nil, nil, at(5))
	if got, want := changes(tr), "open@15s±5s closed@35s±5s"; got != want || tr.initial != "closed" {
		t.Errorf("got %s (initial %s), want %s", got, tr.initial, want)
	}
}

// An open between two scrapes that both saw closed exists only in the edge counter.
func TestReconstructShortOpenFromEdge(t *testing.T) {
	edges := []edgeEvent{{a: at(10), b: at(20), to: stateOpen, n: 2}}
	tr := reconstruct(levels("closed", "closed", "closed"), edges, nil, at(0))
	if got, want := changes(tr), "open@15s±5s closed@15s±5s open@15s±5s closed@15s±5s"; got != want || tr.shortOpens != 2 {
		t.Errorf("got %s (%d short), want %s", got, tr.shortOpens, want)
	}
	// The same counter beside an open the level saw adds nothing.
	tr = reconstruct(levels("closed", "open", "closed"), []edgeEvent{{a: at(0), b: at(10), to: stateOpen, n: 1}}, nil, at(0))
	if tr.shortOpens != 0 || len(tr.transitions) != 2 {
		t.Errorf("edge double-counted an open the level saw: %s", changes(tr))
	}
}

// Rejected calls prove one open at least, however many calls were rejected.
func TestReconstructEvidence(t *testing.T) {
	edges := []edgeEvent{{a: at(0), b: at(10), to: stateOpen, n: 57, evidence: true}}
	tr := reconstruct(levels("closed", "closed"), edges, nil, at(0))
	if tr.shortOpens != 1 {
		t.Errorf("evidence gave %d short opens, want 1: %s", tr.shortOpens, changes(tr))
	}
}

// Seconds-since-change samples, read at several scrapes, narrow the change to the second the
// exporter's clock puts it in, intersected with the scrape gap.
func TestReconstructNarrowedByAge(t *testing.T) {
	// True change at 13.3 s on the scraper's clock; the exporter's clock runs 0.4 s ahead, so its
	// seconds tick at x.6 on ours. Scrapes every 10 s read whole seconds since the change.
	var stamps []stampSample
	for _, ts := range []float64{20, 30} {
		v := math.Floor(ts+0.4) - math.Floor(13.3+0.4)
		c := at(ts).Add(-time.Duration(v * float64(time.Second)))
		stamps = append(stamps, stampSample{t: at(ts), lo: c.Add(-time.Second), hi: c, width: time.Second})
	}
	tr := reconstruct(levels("closed", "closed", "open", "open"), nil, stamps, at(0))
	got := tr.transitions[0]
	if got.source != sourceNarrowed || got.unc > 1.1 || got.at.Sub(at(13.3)).Abs() > time.Duration((got.unc+0.01)*float64(time.Second)) {
		t.Errorf("transition %s ±%.3f (%s), want 13.3s within its ±, at most ±1.1 s", got.at.Sub(t0), got.unc, got.source)
	}
}

// Transition counters alone (Polly) give the cycle in order.
func TestReconstructFromEdgesOnly(t *testing.T) {
	edges := []edgeEvent{
		{a: at(0), b: at(10), to: stateClosed, n: 1},
		{a: at(0), b: at(10), to: stateOpen, n: 1},
		{a: at(0), b: at(10), to: stateHalfOpen, n: 1},
		{a: at(10), b: at(20), to: stateOpen, n: 1},
	}
	tr := reconstruct(nil, edges, nil, at(0))
	if got, want := changes(tr), "open@5s±5s half-open@5s±5s closed@5s±5s open@15s±5s"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCounterEventsReset(t *testing.T) {
	ps := []model.SamplePair{{Timestamp: model.TimeFromUnixNano(at(0).UnixNano()), Value: 5}, {Timestamp: model.TimeFromUnixNano(at(10).UnixNano()), Value: 7}, {Timestamp: model.TimeFromUnixNano(at(20).UnixNano()), Value: 1}}
	ev := counterEvents(ps, stateOpen, false, at(5))
	if len(ev) != 2 || ev[0].n != 2 || ev[1].n != 1 {
		t.Errorf("events %+v, want +2 then +1 after the reset", ev)
	}
}

// Every preset the runbook accepts has queries, and (but custom) plain selectors, so that the
// read-back gets the exact scrape times.
func TestBreakerPresetsDefined(t *testing.T) {
	for _, p := range runbooks.BreakerPresets {
		spec := &runbooks.BreakerSpec{Preset: p, Selector: `job="x"`, Level: "my_breaker_open"}
		q, err := presetQueries(spec)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if q.level == "" && q.edge == "" {
			t.Errorf("%s: no level and no edge query", p)
		}
		for _, s := range q.all() {
			if !isSelector(s) {
				t.Errorf("%s: %s is not a plain selector", p, s)
			}
			if p != "custom" && !strings.Contains(s, `job="x"`) {
				t.Errorf("%s: %s lacks the selector", p, s)
			}
		}
	}
	if _, err := presetQueries(&runbooks.BreakerSpec{Preset: "hystrix"}); err == nil || !strings.Contains(err.Error(), "gobreaker") {
		t.Errorf("unknown preset: %v, want an error listing the presets", err)
	}
	for q, want := range map[string]bool{`up`: true, `up{job="a"}`: true, `{__name__=~"a|b",job="x"}`: true, `max(up)`: false, `up{a="b"}[5m]`: false, `time() - x`: false, `rate(x[1m])`: false} {
		if isSelector(q) != want {
			t.Errorf("isSelector(%s) = %v", q, !want)
		}
	}
}
