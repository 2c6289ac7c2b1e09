package recorder

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// promSource records autoscalers faultline cannot watch from a PromQL query giving capacity per
// group: every series is one autoscaler. A change is known only to within a scrape interval plus
// an evaluation interval, and every time figure says so.
type promSource struct {
	spec     *runbooks.AutoscalerPrometheus
	api      promv1.API
	log      *slog.Logger
	interval time.Duration
	scrape   time.Duration
	timeout  time.Duration
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	changed  chan struct{}

	mu       sync.Mutex
	series   map[string]*promSeries // by label set
	evals    int
	lastEval time.Time // of the last successful evaluation
	failures int
	firstErr string
}

type promSeries struct {
	labels  string
	samples []scaleSample
}

func newPromSource(spec *runbooks.AutoscalerPrometheus, log *slog.Logger) (*promSource, error) {
	api, err := guardrail.NewPrometheusAPI(spec.Connection())
	if err != nil {
		return nil, fmt.Errorf("record.autoscalers prometheus %s: %w", spec.Name, err)
	}
	p := &promSource{spec: spec, api: api, log: log, interval: spec.Interval.D(), scrape: spec.ScrapeInterval.D(),
		timeout: spec.Timeout.D(), changed: make(chan struct{}, 1), series: map[string]*promSeries{}}
	if p.interval <= 0 {
		p.interval = time.Second
	}
	if p.scrape <= 0 {
		p.scrape = runbooks.DefaultScrapeInterval
	}
	if p.timeout <= 0 {
		p.timeout = min(p.interval, 5*time.Second)
	}
	return p, nil
}

// start evaluates once (an unreachable server refuses to start the recording: nothing is
// injected blind), then on every interval until stop.
func (p *promSource) start(ctx context.Context) error {
	if err := p.evaluate(ctx); err != nil {
		return fmt.Errorf("record.autoscalers prometheus %s: %w", p.spec.Name, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if err := p.evaluate(sctx); err != nil && sctx.Err() == nil {
				p.log.Warn("autoscaler recorder: prometheus query failed", "source", p.spec.Name, "err", err)
			}
		}
	}()
	return nil
}

func (p *promSource) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
}

func (p *promSource) resolution() string {
	return fmt.Sprintf("Prometheus scrape %s + evaluation %s", p.scrape, p.interval)
}

func (p *promSource) uncertainty() float64 { return (p.scrape + p.interval).Seconds() }

// evaluate runs the queries once and records every series whose value changed.
func (p *promSource) evaluate(ctx context.Context) error {
	at := time.Now()
	cur, err := p.query(ctx, p.spec.Query, at)
	var des map[string]float64
	if err == nil && p.spec.DesiredQuery != "" {
		des, err = p.query(ctx, p.spec.DesiredQuery, at)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return nil // stopping: not the server's failure
	}
	p.evals++
	if err != nil {
		p.failures++
		if p.firstErr == "" {
			p.firstErr = fmt.Sprintf("%s: %v", at.Format(time.RFC3339), err)
		}
		return err
	}
	p.lastEval = at
	for key, v := range cur {
		d := -1.0
		if dv, ok := des[key]; ok {
			d = dv
		}
		s := p.series[key]
		if s == nil {
			s = &promSeries{labels: key}
			p.series[key] = s
		}
		if n := len(s.samples); n == 0 || s.samples[n-1].Current != v || s.samples[n-1].Desired != d {
			s.samples = append(s.samples, scaleSample{At: at, Current: v, Desired: d})
			select {
			case p.changed <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// query returns the value of every series by its label set (without the metric name).
func (p *promSource) query(ctx context.Context, q string, at time.Time) (map[string]float64, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	v, _, _, err := p.api.Query(qctx, q, at, promv1.WithTimeout(serverTimeout(p.timeout)))
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	out := map[string]float64{}
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			m := s.Metric.Clone()
			delete(m, model.MetricNameLabel)
			out[labelKey(m)] = float64(s.Value)
		}
	case *model.Scalar:
		out[""] = float64(v.Value)
	default:
		return nil, fmt.Errorf("query %q returned a %s, want an instant vector or a scalar", q, v.Type())
	}
	return out, nil
}

func labelKey(m model.Metric) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func (p *promSource) subject(labels string) string { return "prometheus " + p.spec.Name + labels }

// atBaseline reports whether every series is at the level it had at the first fault, as seen by
// an evaluation late enough to show everything up to revertedAt (a scrape interval after it).
func (p *promSource) atBaseline(firstFault, revertedAt time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastEval.Before(revertedAt.Add(p.scrape)) {
		return false
	}
	for _, s := range p.series {
		if levelAt(s.samples, firstFault) != s.samples[len(s.samples)-1].level() {
			return false
		}
	}
	return true
}

// records returns the document entries, figures and timelines, and what is missing (blind, or
// evaluations that failed).
func (p *promSource) records(win scaleWindow) (recs []AutoscalerRecord, figs []experiments.Figure, tls []experiments.Timeline, missing []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	win.Uncertainty, win.MaxReplicas = p.uncertainty(), 0
	if p.failures > 0 {
		missing = append(missing, fmt.Sprintf("prometheus %s: %d of %d evaluations failed (first at %s)", p.spec.Name, p.failures, p.evals, p.firstErr))
	}
	if len(p.series) == 0 {
		blind := fmt.Sprintf("blind: the query %s returned no series in %d evaluations", p.spec.Query, p.evals)
		missing = append(missing, fmt.Sprintf("prometheus %s: %s", p.spec.Name, blind))
		recs = append(recs, AutoscalerRecord{Subject: p.subject(""), Source: "prometheus", Why: "named in record.autoscalers",
			Query: p.spec.Query, DesiredQuery: p.spec.DesiredQuery, Changes: []ReplicaChange{}, Blind: blind})
		for _, f := range scaleFigures(p.subject(""), scaleWindow{}) {
			f.Note = blind
			figs = append(figs, f)
		}
		return recs, figs, tls, missing
	}
	keys := make([]string, 0, len(p.series))
	for k := range p.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := p.series[k]
		subj := p.subject(k)
		r := AutoscalerRecord{Subject: subj, Source: "prometheus", Why: "named in record.autoscalers",
			Query: p.spec.Query, DesiredQuery: p.spec.DesiredQuery, Changes: []ReplicaChange{}}
		for _, x := range s.samples {
			c := ReplicaChange{At: x.At, Current: x.Current}
			if x.Desired >= 0 {
				d := x.Desired
				c.Desired = &d
			}
			r.Changes = append(r.Changes, c)
		}
		recs = append(recs, r)
		w := win
		w.Samples = s.samples
		figs = append(figs, scaleFigures(subj, w)...)
		tls = append(tls, scaleTimeline(subj, s.samples, nil, p.resolution()))
	}
	return recs, figs, tls, missing
}

// serverTimeout is d in a form every Prometheus parses (whole seconds, else whole milliseconds).
func serverTimeout(d time.Duration) time.Duration {
	if t := d.Truncate(time.Second); t > 0 {
		return t
	}
	return d.Truncate(time.Millisecond)
}
