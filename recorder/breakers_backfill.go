package recorder

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Backfill: after the experiment the recorder reads back everything Prometheus kept for the
// recording window, so that no transition between two live evaluations is lost. A plain selector
// is read as raw samples (the exact scrape times); any other expression with a range query.

// readChunk bounds one raw read-back query: a long recording of many breakers is read in pieces,
// so that faultline never holds more than one piece's decoded response at once.
const readChunk = 2 * time.Minute

// fetchWindow returns the series of q between from and to.
func fetchWindow(ctx context.Context, api promv1.API, q string, from, to time.Time, timeout, chunk time.Duration) (model.Matrix, error) {
	query := func(q string, at time.Time) (model.Value, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		v, _, _, err := api.Query(ctx, q, at)
		return v, err
	}
	if isSelector(q) {
		// Consecutive pieces (t-d, t] neither overlap nor miss — provided every boundary is a
		// whole millisecond: Prometheus rounds an evaluation time to
		// the millisecond, and a boundary rounded one way in one piece and the other way in the
		// next would read a sample twice or not at all.
		from, to = from.Truncate(time.Millisecond), to.Truncate(time.Millisecond)
		chunk = max(chunk.Truncate(time.Millisecond), time.Millisecond)
		var out model.Matrix
		idx := map[model.Fingerprint]*model.SampleStream{}
		for start := from; start.Before(to); start = start.Add(chunk) {
			end := earlier(start.Add(chunk), to)
			v, err := query(fmt.Sprintf("%s[%dms]", q, end.Sub(start).Round(time.Millisecond).Milliseconds()), end)
			if err != nil {
				return nil, fmt.Errorf("read back %s: %w", q, err)
			}
			m, ok := v.(model.Matrix)
			if !ok {
				return nil, fmt.Errorf("read back %s: got a %s, want a range vector", q, v.Type())
			}
			for _, ss := range m {
				fp := ss.Metric.Fingerprint()
				if cur := idx[fp]; cur != nil {
					// Prometheus 2 reads a range selector as [t-d, t], closed at both ends (3 made
					// it left-open): a sample exactly on a seam comes back in both pieces.
					for _, v := range ss.Values {
						if n := len(cur.Values); n == 0 || v.Timestamp > cur.Values[n-1].Timestamp {
							cur.Values = append(cur.Values, v)
						}
					}
					continue
				}
				idx[fp] = ss
				out = append(out, ss)
			}
		}
		return out, nil
	}
	// A range query returns at most 11,000 points per series.
	step := max(time.Second, to.Sub(from)/10000).Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, _, _, err := api.QueryRange(ctx, q, promv1.Range{Start: from, End: to, Step: step})
	if err != nil {
		return nil, fmt.Errorf("range query %s: %w", q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query %s: got a %s, want a matrix", q, v.Type())
	}
	return m, nil
}

// breakerSamples is what the backfill read for one breaker (one identity).
type breakerSamples struct {
	id     model.Metric
	level  []stateSample
	edges  []edgeEvent
	stamps []stampSample
}

// identity is m without __name__, the state labels and q's dropped labels.
func (q breakerQueries) identity(m model.Metric) model.Metric {
	id := model.Metric{}
	for k, v := range m {
		switch {
		case k == model.MetricNameLabel, q.stateLabel != "" && string(k) == q.stateLabel, q.toLabel != "" && string(k) == q.toLabel:
			continue
		}
		skip := false
		for _, d := range q.drop {
			skip = skip || string(k) == d
		}
		if !skip {
			id[k] = v
		}
	}
	return id
}

// groupSamples sorts the level, edge and stamp series by breaker. Edge and stamp series of an
// identity the level never showed are kept only when there is no level query (Polly).
func (q breakerQueries) groupSamples(level, edge, stamp model.Matrix, start time.Time) map[model.Fingerprint]*breakerSamples {
	out := map[model.Fingerprint]*breakerSamples{}
	get := func(m model.Metric, create bool) *breakerSamples {
		id := q.identity(m)
		fp := id.Fingerprint()
		b := out[fp]
		if b == nil && create {
			b = &breakerSamples{id: id}
			out[fp] = b
		}
		return b
	}
	for _, s := range level {
		st := ""
		if q.stateLabel != "" {
			if st = q.labelState(string(s.Metric[model.LabelName(q.stateLabel)])); st == "" {
				continue
			}
		}
		b := get(s.Metric, true)
		for _, p := range s.Values {
			switch {
			case q.stateLabel == "" && !math.IsNaN(float64(p.Value)):
				b.level = append(b.level, stateSample{t: p.Timestamp.Time(), state: q.numState(float64(p.Value))})
			case q.stateLabel != "" && p.Value > 0:
				b.level = append(b.level, stateSample{t: p.Timestamp.Time(), state: st})
			}
		}
	}
	for _, s := range edge {
		to := stateOpen
		if q.toLabel != "" {
			if to = q.toState(string(s.Metric[model.LabelName(q.toLabel)])); to == "" {
				continue
			}
		}
		b := get(s.Metric, q.level == "")
		if b == nil {
			continue
		}
		b.edges = append(b.edges, counterEvents(s.Values, to, q.evidence, start)...)
	}
	for _, s := range stamp {
		b := get(s.Metric, false)
		if b == nil {
			continue
		}
		for _, p := range s.Values {
			v := float64(p.Value)
			if math.IsNaN(v) || v < 0 {
				continue
			}
			t := p.Timestamp.Time()
			if q.age != "" {
				c := t.Add(-time.Duration(v * float64(time.Second)))
				b.stamps = append(b.stamps, stampSample{t: t, lo: c.Add(-time.Second), hi: c, width: time.Second})
			} else {
				at := time.Unix(0, int64(v*1e9))
				b.stamps = append(b.stamps, stampSample{t: t, lo: at, hi: at})
			}
		}
	}
	for _, b := range out {
		sort.Slice(b.stamps, func(i, j int) bool { return b.stamps[i].t.Before(b.stamps[j].t) })
	}
	return out
}

// counterEvents turns a counter's samples into growth events; a drop is a counter reset (the
// value after it is all growth). A series born after start grew from zero since the scrape
// before its first one.
func counterEvents(ps []model.SamplePair, to string, evidence bool, start time.Time) []edgeEvent {
	var out []edgeEvent
	for i, p := range ps {
		v := float64(p.Value)
		if i == 0 {
			if v > 0 && p.Timestamp.Time().After(start) && len(ps) > 1 {
				gap := ps[1].Timestamp.Sub(p.Timestamp)
				out = append(out, edgeEvent{a: p.Timestamp.Time().Add(-gap), b: p.Timestamp.Time(), to: to, n: int(math.Round(v)), evidence: evidence})
			}
			continue
		}
		inc := v - float64(ps[i-1].Value)
		if inc < 0 {
			inc = v
		}
		if n := int(math.Round(inc)); n > 0 {
			out = append(out, edgeEvent{a: ps[i-1].Timestamp.Time(), b: p.Timestamp.Time(), to: to, n: n, evidence: evidence})
		}
	}
	return out
}

// subjectOf names a breaker by q's key labels ("be_app/srv2"), or by all its labels when a key
// is missing.
func (q breakerQueries) subjectOf(id model.Metric) string {
	var vals []string
	for _, k := range q.keys {
		v, ok := id[model.LabelName(k)]
		if !ok {
			return labelsText(id)
		}
		vals = append(vals, string(v))
	}
	if len(vals) == 0 {
		return labelsText(id)
	}
	return strings.Join(vals, "/")
}

func labelsText(id model.Metric) string {
	var keys []string
	for k := range id {
		if k != "job" && k != "instance" || len(id) == 1 {
			keys = append(keys, string(k))
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+string(id[model.LabelName(k)]))
	}
	return strings.Join(parts, ",")
}
