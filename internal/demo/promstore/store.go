// Package promstore is the demo's embedded Prometheus: the promql engine of the Prometheus server
// over a small in-memory store of float samples, fed by scraping the demo's child processes, and
// the subset of the Prometheus HTTP API faultline's guardrails and recorders use. It exists so
// that the demo takes the same Prometheus code paths a user's run takes, without the full TSDB
// (its binary cost is in docs/benchmarks.md).
package promstore

import (
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
)

// sample is one float sample at a millisecond timestamp.
type sample struct {
	t int64
	v float64
}

// series is one labelled series; samples are in time order.
type series struct {
	lset    labels.Labels
	samples []sample
}

// Store holds float series in memory for a bounded retention. It is safe for concurrent use.
type Store struct {
	retention int64 // ms

	mu     sync.RWMutex
	series map[uint64][]*series // by label hash; a slice for the (rare) hash collision
}

// NewStore keeps samples for retentionMs milliseconds after the newest one appended.
func NewStore(retentionMs int64) *Store {
	return &Store{retention: retentionMs, series: map[uint64][]*series{}}
}

// Append adds one sample. A sample not newer than the series' last one is dropped, as Prometheus
// drops out-of-order samples.
func (s *Store) Append(lset labels.Labels, t int64, v float64) {
	h := lset.Hash()
	s.mu.Lock()
	defer s.mu.Unlock()
	var sr *series
	for _, c := range s.series[h] {
		if labels.Equal(c.lset, lset) {
			sr = c
			break
		}
	}
	if sr == nil {
		sr = &series{lset: lset}
		s.series[h] = append(s.series[h], sr)
	}
	if n := len(sr.samples); n > 0 && sr.samples[n-1].t >= t {
		return
	}
	sr.samples = append(sr.samples, sample{t, v})
}

// Truncate drops the samples older than now minus the retention, and series left empty.
func (s *Store) Truncate(nowMs int64) {
	minT := nowMs - s.retention
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, list := range s.series {
		kept := list[:0]
		for _, sr := range list {
			i := sort.Search(len(sr.samples), func(i int) bool { return sr.samples[i].t >= minT })
			if i > 0 {
				// A copy, so that the dropped prefix is freed rather than kept behind the slice.
				sr.samples = append([]sample(nil), sr.samples[i:]...)
			}
			if len(sr.samples) > 0 {
				kept = append(kept, sr)
			}
		}
		if len(kept) == 0 {
			delete(s.series, h)
		} else {
			s.series[h] = kept
		}
	}
}

// NumSeries is the number of series held.
func (s *Store) NumSeries() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, l := range s.series {
		n += len(l)
	}
	return n
}
