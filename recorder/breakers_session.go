package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// Breakers records circuit breakers from Prometheus (record: {breakers: [...]} in the runbook):
// a state timeline per breaker and the figures timeToOpen, opens, openTime, timeToClose and
// stillOpen. It implements experiments.Recorder.
type Breakers struct {
	Logger *slog.Logger
}

// Name implements experiments.Recorder.
func (b *Breakers) Name() string { return "breakers" }

// Start implements experiments.Recorder: it builds a Prometheus client per breaker entry and
// starts querying the states live. Nothing to record gives (nil, nil).
func (b *Breakers) Start(ctx context.Context, x *runbooks.Experiment, _ injectors.Env) (experiments.RecorderSession, error) {
	if x.Record == nil || len(x.Record.Breakers) == 0 {
		return nil, nil
	}
	log := b.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &breakerSession{log: log.With("recorder", "breakers", "experiment", x.Name), start: time.Now()}
	for i := range x.Record.Breakers {
		spec := &x.Record.Breakers[i]
		q, err := presetQueries(spec)
		if err != nil {
			return nil, err
		}
		api, err := guardrail.NewPrometheusAPI(spec.Connection())
		if err != nil {
			return nil, fmt.Errorf("breakers %s: %w", spec.GroupName(), err)
		}
		s.groups = append(s.groups, &breakerGroup{spec: spec, q: q, api: api})
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	for _, g := range s.groups {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.poll(pctx, g)
		}()
	}
	return s, nil
}

// breakerGroup is one record.breakers entry: its queries, client and what the live queries saw.
type breakerGroup struct {
	spec *runbooks.BreakerSpec
	q    breakerQueries
	api  promv1.API

	mu sync.Mutex
	// live is the state per breaker at the latest live query.
	live map[model.Fingerprint]string
	// queries and failures count the live queries; firstFail and lastFail bound the outage.
	queries, failures   int
	firstFail, lastFail time.Time
	lastErr             error
}

type breakerSession struct {
	log    *slog.Logger
	groups []*breakerGroup
	start  time.Time
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// FaultApplied implements experiments.RecorderSession. Breakers are found by their metrics, not
// by the faults' targets; the first fault's time comes with Finish.
func (s *breakerSession) FaultApplied(experiments.AppliedFault) {}

// FaultEvent implements experiments.RecorderSession.
func (s *breakerSession) FaultEvent(experiments.AppliedFault, injectors.Event) {}

func interval(spec *runbooks.BreakerSpec) time.Duration {
	return durOr(spec.Interval, runbooks.DefaultBreakerInterval)
}

func durOr(d runbooks.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return d.D()
	}
	return def
}

// poll queries the live state every interval until ctx ends. What it sees serves the wait for
// the breakers to close and proves Prometheus was reachable; the timeline comes from the backfill.
func (s *breakerSession) poll(ctx context.Context, g *breakerGroup) {
	t := time.NewTicker(interval(g.spec))
	defer t.Stop()
	for {
		s.liveQuery(ctx, g)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// liveQuery reads the current state of every breaker of g once and returns whether all are
// closed (none seen counts as closed).
func (s *breakerSession) liveQuery(ctx context.Context, g *breakerGroup) bool {
	q := g.q.level
	if q == "" {
		return true // transition counters alone say nothing about the current state at a glance
	}
	qctx, cancel := context.WithTimeout(ctx, durOr(g.spec.Timeout, runbooks.DefaultBreakerTimeout))
	defer cancel()
	v, _, _, err := g.api.Query(qctx, q, time.Time{})
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	g.queries++
	if err != nil {
		g.failures++
		if g.firstFail.IsZero() {
			g.firstFail = now
			s.log.Warn("prometheus unreachable; the breaker recording will be incomplete unless the read-back covers it", "breakers", g.spec.GroupName(), "error", err)
		}
		g.lastFail, g.lastErr = now, err
		return false
	}
	vec, _ := v.(model.Vector)
	live := map[model.Fingerprint]string{}
	for _, smp := range vec {
		id := g.q.identity(smp.Metric).Fingerprint()
		switch {
		case g.q.stateLabel == "":
			live[id] = g.q.numState(float64(smp.Value))
		case smp.Value > 0:
			if st := g.q.labelState(string(smp.Metric[model.LabelName(g.q.stateLabel)])); st != "" {
				live[id] = st
			}
		}
	}
	g.live = live
	for _, st := range live {
		if st != stateClosed {
			return false
		}
	}
	return true
}

// Finish implements experiments.RecorderSession.
func (s *breakerSession) Finish(ctx context.Context, end experiments.RecordingEnd) experiments.Recording {
	first, reverted := end.FirstFaultAt, end.RevertedAt
	if first.IsZero() {
		first = s.start
	}
	if reverted.IsZero() {
		reverted = time.Now()
	}
	return s.finish(ctx, first, reverted)
}

// finish waits (up to settle) for every breaker to close, then reads back the whole window and
// reconstructs the timelines and figures.
func (s *breakerSession) finish(ctx context.Context, firstFault, revertedAt time.Time) experiments.Recording {
	s.stop()
	s.wg.Wait()
	rec := experiments.Recording{Recorder: "breakers", Recovered: true}
	doc := &BreakersDocument{}
	var incomplete, notClosed []string
	for _, g := range s.groups {
		s.settle(ctx, g, revertedAt)
		end := time.Now()
		s.waitIngested(ctx, g, end)
		gd, figs, tls, why := s.backfill(ctx, g, firstFault, revertedAt, end)
		doc.Groups = append(doc.Groups, gd)
		rec.Figures = append(rec.Figures, figs...)
		rec.Timelines = append(rec.Timelines, tls...)
		incomplete = append(incomplete, why...)
		for _, b := range gd.Breakers {
			if b.Final != stateClosed {
				notClosed = append(notClosed, fmt.Sprintf("breaker %s is still %s", b.Subject, b.Final))
			}
		}
	}
	if len(notClosed) > 0 {
		rec.Recovered = false
		rec.Reason = strings.Join(notClosed, "; ")
	}
	if len(incomplete) > 0 {
		rec.Incomplete = true
		rec.Reason = strings.TrimPrefix(rec.Reason+"; "+strings.Join(incomplete, "; "), "; ")
	}
	rec.Data = doc
	return rec
}

// settle waits until every breaker of g is closed, settle after the revert at the latest.
func (s *breakerSession) settle(ctx context.Context, g *breakerGroup, revertedAt time.Time) {
	deadline := revertedAt.Add(durOr(g.spec.Settle, runbooks.DefaultBreakerSettle))
	t := time.NewTicker(min(interval(g.spec), time.Second))
	defer t.Stop()
	for time.Now().Before(deadline) {
		if s.liveQuery(ctx, g) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitIngested waits until Prometheus holds a sample scraped at or after end, so that the
// read-back sees the state the settle wait saw (bounded: a target that stopped being scraped
// must not hold the run).
func (s *breakerSession) waitIngested(ctx context.Context, g *breakerGroup, end time.Time) {
	q := g.q.level
	if q == "" {
		q = g.q.edge
	}
	if !isSelector(q) {
		return
	}
	// Bounded on its own: the engine's deadline may already have passed (a breaker kept open
	// until the end), and the read-back must still see the last scrape.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*interval(g.spec)+5*time.Second)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		v, _, _, err := g.api.Query(ctx, "max(timestamp("+q+"))", time.Time{})
		if vec, ok := v.(model.Vector); err == nil && ok && (len(vec) == 0 || float64(vec[0].Value) >= float64(end.UnixMilli())/1000) {
			return // ingested, or nothing to wait for (a blind preset)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// backfill reads the window back, reconstructs every breaker of g and returns its document,
// figures, timelines and what made the recording incomplete.
func (s *breakerSession) backfill(ctx context.Context, g *breakerGroup, firstFault, revertedAt, end time.Time) (BreakerGroupDoc, []experiments.Figure, []experiments.Timeline, []string) {
	name := g.spec.GroupName()
	gd := BreakerGroupDoc{Name: name, Preset: g.spec.Preset, Queries: g.q.all(), Resolution: g.q.resolution()}
	var why []string
	g.mu.Lock()
	if g.failures > 0 {
		why = append(why, fmt.Sprintf("breakers %s: Prometheus unreachable for %d of %d live queries between %s and %s (last error: %v)",
			name, g.failures, g.queries, g.firstFail.Format(time.TimeOnly), g.lastFail.Format(time.TimeOnly), g.lastErr))
	}
	g.mu.Unlock()
	from := s.start.Add(-durOr(g.spec.Lookback, runbooks.DefaultBreakerLookback))
	timeout := durOr(g.spec.Timeout, runbooks.DefaultBreakerTimeout)
	read := func(q string) (model.Matrix, error) {
		if q == "" {
			return nil, nil
		}
		return fetchWindow(context.WithoutCancel(ctx), g.api, q, from, end, timeout, readChunk)
	}
	level, errL := read(g.q.level)
	edge, errE := read(g.q.edge)
	stampQ := g.q.age + g.q.stamp
	stamp, errS := read(stampQ)
	if err := errors.Join(errL, errE, errS); err != nil {
		gd.Note = "the read-back failed: " + err.Error()
		why = append(why, fmt.Sprintf("breakers %s: %s", name, gd.Note))
		return gd, nil, nil, why
	}
	main, mainQ := level, g.q.level
	if mainQ == "" {
		main, mainQ = edge, g.q.edge
	}
	if len(main) == 0 {
		gd.Blind, gd.BlindQuery = true, mainQ
		gd.Note = fmt.Sprintf("blind: %s returned no series between %s and %s; the %s metrics are not there (wrong preset, selector or Prometheus?), so nothing is known about these breakers",
			mainQ, from.Format(time.TimeOnly), end.Format(time.TimeOnly), g.spec.Preset)
		why = append(why, fmt.Sprintf("breakers %s: %s", name, gd.Note))
		s.log.Warn("breaker preset is blind", "breakers", name, "query", mainQ)
		return gd, nil, nil, why
	}
	byID := g.q.groupSamples(level, edge, stamp, s.start)
	var ids []model.Fingerprint
	for fp := range byID {
		ids = append(ids, fp)
	}
	subjects := map[string]int{}
	for _, fp := range ids {
		subjects[g.q.subjectOf(byID[fp].id)]++
	}
	sort.Slice(ids, func(i, j int) bool { return byID[ids[i]].id.String() < byID[ids[j]].id.String() })
	var figs []experiments.Figure
	var tls []experiments.Timeline
	for _, fp := range ids {
		bs := byID[fp]
		subj := g.q.subjectOf(bs.id)
		if subjects[subj] > 1 {
			subj = labelsText(bs.id)
		}
		tr := reconstruct(bs.level, bs.edges, bs.stamps, s.start)
		bd := breakerDoc(subj, bs.id, tr)
		gd.Breakers = append(gd.Breakers, bd)
		key := "breakers/" + name + " " + subj
		figs = append(figs, breakerFigures(key, "breaker "+subj, tr, g.q.edge != "", s.start, firstFault, revertedAt, end)...)
		tls = append(tls, breakerTimeline(key, "breaker "+subj, tr, s.start, firstFault, revertedAt, gd.Resolution))
	}
	return gd, figs, tls, why
}

// BreakersDocument is the breaker recorder's own document (Recording.Data).
type BreakersDocument struct {
	Groups []BreakerGroupDoc `json:"groups"`
}

// BreakerGroupDoc is one record.breakers entry.
type BreakerGroupDoc struct {
	Name       string   `json:"name"`
	Preset     string   `json:"preset"`
	Queries    []string `json:"queries"`
	Resolution string   `json:"resolution"`
	// Blind is set when the preset's metrics do not exist: BlindQuery found nothing. A blind group
	// makes the recording incomplete; it never means "no transitions".
	Blind      bool         `json:"blind,omitempty"`
	BlindQuery string       `json:"blindQuery,omitempty"`
	Note       string       `json:"note,omitempty"`
	Breakers   []BreakerDoc `json:"breakers,omitempty"`
}

// BreakerDoc is one breaker's reconstructed timeline.
type BreakerDoc struct {
	Subject     string            `json:"subject"`
	Labels      map[string]string `json:"labels"`
	Initial     string            `json:"initial"`
	Final       string            `json:"final"`
	Transitions []BreakerChange   `json:"transitions,omitempty"`
	// ShortOpens counts the opens only the edge counter saw (shorter than a scrape gap).
	ShortOpens int `json:"shortOpens,omitempty"`
	// MaxScrapeGap is the longest gap between two samples, in seconds: the worst resolution.
	MaxScrapeGap float64 `json:"maxScrapeGap"`
}

// BreakerChange is one transition with the ± of its time and where the time comes from.
type BreakerChange struct {
	At          time.Time `json:"at"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Uncertainty float64   `json:"uncertainty"`
	Source      string    `json:"source"`
}

func breakerDoc(subject string, id model.Metric, tr track) BreakerDoc {
	d := BreakerDoc{Subject: subject, Labels: map[string]string{}, Initial: tr.initial, Final: tr.initial, ShortOpens: tr.shortOpens, MaxScrapeGap: tr.maxGap.Seconds()}
	for k, v := range id {
		d.Labels[string(k)] = string(v)
	}
	for _, t := range tr.transitions {
		d.Transitions = append(d.Transitions, BreakerChange{At: t.at, From: t.from, To: t.to, Uncertainty: round3(t.unc), Source: t.source})
		d.Final = t.to
	}
	return d
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func breakerTimeline(key, subject string, tr track, start, firstFault, revertedAt time.Time, resolution string) experiments.Timeline {
	tl := experiments.Timeline{Key: key + "/state", Subject: subject, Type: "state", Resolution: resolution,
		States: []experiments.StateChange{{At: start, State: tr.initial}},
		Marks:  []experiments.TimelineMark{{At: firstFault, Label: "first fault"}, {At: revertedAt, Label: "reverted"}}}
	for _, t := range tr.transitions {
		tl.States = append(tl.States, experiments.StateChange{At: t.at, State: t.to, Uncertainty: round3(t.unc)})
	}
	return tl
}

// breakerFigures computes timeToOpen, opens, openTime, timeToClose and stillOpen.
func breakerFigures(key, subject string, tr track, hasEdge bool, start, firstFault, revertedAt, end time.Time) []experiments.Figure {
	fig := func(metric, unit string) experiments.Figure {
		return experiments.Figure{Key: key + "/" + metric, Subject: subject, Metric: metric, Unit: unit}
	}
	val := func(f float64) *float64 { f = round3(f); return &f }

	toOpen := fig("timeToOpen", "s")
	opens := fig("opens", "count")
	openTime := fig("openTime", "s")
	toClose := fig("timeToClose", "s")
	still := fig("stillOpen", "count")

	cur, since := tr.initial, start
	var sinceUnc, total, totalUnc float64
	n := 0
	var lastClose *transition
	for i := range tr.transitions {
		t := &tr.transitions[i]
		if cur == stateOpen {
			total += t.at.Sub(since).Seconds()
			totalUnc += sinceUnc + t.unc
		}
		if t.to == stateOpen {
			n++
			if d, unc, ok := sinceRef(*t, firstFault); toOpen.Value == nil && ok {
				toOpen.Value, toOpen.Uncertainty = val(d), round3(unc)
			}
		}
		if t.to == stateClosed {
			lastClose = t
		}
		cur, since, sinceUnc = t.to, t.at, t.unc
	}
	if cur == stateOpen {
		total += end.Sub(since).Seconds()
		totalUnc += sinceUnc
	}
	if toOpen.Value == nil {
		toOpen.Note = "did not open after the first fault"
		if tr.initial == stateOpen {
			toOpen.Note = "was already open when the recording started"
		}
	}
	opens.Value = val(float64(n))
	if !hasEdge {
		opens.Note = "no edge counter: an open shorter than the scrape interval can be missed"
	} else if tr.shortOpens > 0 {
		opens.Note = fmt.Sprintf("%d of them shorter than a scrape, seen only by the edge counter", tr.shortOpens)
	}
	openTime.Value, openTime.Uncertainty = val(total), round3(totalUnc)

	switch {
	case cur != stateClosed:
		toClose.Note = fmt.Sprintf("still %s at the end of the recording, %s after the revert", cur, end.Sub(revertedAt).Round(100*time.Millisecond))
		still.Value = val(1)
		still.Note = "still " + cur
	case n == 0 && tr.initial == stateClosed:
		toClose.Value = val(0)
		toClose.Note = "never opened"
		still.Value = val(0)
	default:
		still.Value = val(0)
		d, unc, ok := 0.0, 0.0, false
		if lastClose != nil {
			d, unc, ok = sinceRef(*lastClose, revertedAt)
		}
		if !ok {
			toClose.Note = "closed before the revert"
		}
		toClose.Value, toClose.Uncertainty = val(d), round3(unc)
	}
	return []experiments.Figure{toOpen, opens, openTime, toClose, still}
}

// sinceRef is how long after ref transition t happened, with its ±. When t's interval straddles
// ref (the change and ref fell between the same two scrapes) only the part after ref counts: the
// breaker reacted to the fault (or the revert), so it changed after it. ok is false when t lies
// wholly before ref.
func sinceRef(t transition, ref time.Time) (d, unc float64, ok bool) {
	u := time.Duration(t.unc * float64(time.Second))
	lo, hi := t.at.Add(-u), t.at.Add(u)
	if hi.Before(ref) {
		return 0, 0, false
	}
	lo = later(lo, ref)
	m, unc := mid(lo, hi)
	return m.Sub(ref).Seconds(), unc, true
}
