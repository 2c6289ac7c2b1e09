package promstore

import (
	"context"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier implements storage.Queryable: the engine asks for a querier over [mint, maxt].
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

type querier struct {
	s          *Store
	mint, maxt int64
}

// snapshot copies the matching series' samples in [mint, maxt] under the read lock, so that the
// engine iterates without holding it while scrapes append.
func (q *querier) snapshot(ms []*labels.Matcher) []*series {
	q.s.mu.RLock()
	defer q.s.mu.RUnlock()
	var out []*series
	for _, list := range q.s.series {
	next:
		for _, sr := range list {
			for _, m := range ms {
				if !m.Matches(sr.lset.Get(m.Name)) {
					continue next
				}
			}
			lo := sort.Search(len(sr.samples), func(i int) bool { return sr.samples[i].t >= q.mint })
			hi := sort.Search(len(sr.samples), func(i int) bool { return sr.samples[i].t > q.maxt })
			if lo >= hi {
				continue
			}
			out = append(out, &series{lset: sr.lset, samples: slices.Clone(sr.samples[lo:hi])})
		}
	}
	return out
}

func (q *querier) Select(_ context.Context, sortSeries bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	out := q.snapshot(ms)
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].lset, out[j].lset) < 0 })
	}
	return &seriesSet{list: out, i: -1}
}

func (q *querier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, sr := range q.snapshot(ms) {
		if v := sr.lset.Get(name); v != "" {
			seen[v] = struct{}{}
		}
	}
	return sortedKeys(seen), nil, nil
}

func (q *querier) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, sr := range q.snapshot(ms) {
		sr.lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
	}
	return sortedKeys(seen), nil, nil
}

func (*querier) Close() error { return nil }

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type seriesSet struct {
	list []*series
	i    int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i < len(s.list) }
func (s *seriesSet) At() storage.Series              { return s.list[s.i] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }
func (sr *series) Labels() labels.Labels             { return sr.lset }
func (sr *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return storage.NewListSeriesIterator(samplesOf(sr.samples))
}

// samplesOf lets storage's list iterator walk a series' float samples in place (a pointer into
// the slice, so no sample is copied or boxed).
type samplesOf []sample

func (s samplesOf) Get(i int) chunks.Sample { return &s[i] }
func (s samplesOf) Len() int                { return len(s) }

func (s *sample) T() int64                    { return s.t }
func (s *sample) F() float64                  { return s.v }
func (*sample) ST() int64                     { return 0 } // the store keeps no start timestamps
func (*sample) H() *histogram.Histogram       { return nil }
func (*sample) FH() *histogram.FloatHistogram { return nil }
func (*sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *sample) Copy() chunks.Sample         { c := *s; return &c }
