package load

import (
	"slices"
	"sync"
	"time"
)

// bucketWidth is the resolution of the sliding window: guardrails evaluate at 250 ms at the
// fastest, so a finer bucket would buy nothing.
const bucketWidth = 250 * time.Millisecond

// bucket holds the requests that completed within one bucketWidth.
type bucket struct {
	start   time.Time
	n, errs int
	codes   map[uint16]int
	lat     []time.Duration
}

// window keeps the last span of completed requests in buckets, oldest first.
type window struct {
	mu      sync.Mutex
	span    time.Duration
	buckets []*bucket
}

func newWindow(span time.Duration) *window { return &window{span: span} }

// add records one completed request; done is when it completed.
func (w *window) add(done time.Time, lat time.Duration, code uint16, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	start := done.Truncate(bucketWidth)
	var b *bucket
	if k := len(w.buckets); k > 0 && !w.buckets[k-1].start.Before(start) {
		// Completions arrive almost in order; one that belongs to an earlier bucket is rare and
		// is searched for from the end.
		for i := k - 1; i >= 0; i-- {
			if w.buckets[i].start.Equal(start) {
				b = w.buckets[i]
				break
			}
			if w.buckets[i].start.Before(start) {
				break
			}
		}
	}
	if b == nil {
		b = &bucket{start: start, codes: map[uint16]int{}}
		w.buckets = append(w.buckets, b)
		slices.SortFunc(w.buckets, func(a, c *bucket) int { return a.start.Compare(c.start) })
	}
	b.n++
	if failed {
		b.errs++
	}
	b.codes[code]++
	b.lat = append(b.lat, lat)
	w.trim(done)
}

// trim drops buckets older than the span; called with mu held.
func (w *window) trim(now time.Time) {
	cut := now.Add(-w.span - bucketWidth)
	i := 0
	for i < len(w.buckets) && w.buckets[i].start.Before(cut) {
		i++
	}
	if i > 0 {
		w.buckets = slices.Delete(w.buckets, 0, i)
	}
}

// Stats are the figures of the requests that completed within a window.
type Stats struct {
	// Window is the span the figures cover; shorter than asked while the load is young.
	Window     time.Duration `json:"window"`
	Requests   int           `json:"requests"`
	Errors     int           `json:"errors"`
	ErrorRatio float64       `json:"errorRatio"`
	Throughput float64       `json:"throughput"` // completed requests per second
	P50        time.Duration `json:"p50"`
	P95        time.Duration `json:"p95"`
	P99        time.Duration `json:"p99"`
	Max        time.Duration `json:"max"`
	// InFlight requests were sent and not yet answered; they are in the quantiles at their age.
	InFlight int            `json:"inFlight,omitempty"`
	Codes    map[uint16]int `json:"codes,omitempty"` // 0 is a transport error or timeout
}

// stats computes the figures over the last d before now, not reaching back before since (when
// the load started), so that a young load is not judged over time it did not run. The ages of
// requests in flight join the latencies.
func (w *window) stats(now time.Time, d time.Duration, since time.Time, inflight ...time.Duration) Stats {
	from := now.Add(-d)
	if from.Before(since) {
		from = since
	}
	s := Stats{Window: now.Sub(from), Codes: map[uint16]int{}}
	var lat []time.Duration
	w.mu.Lock()
	for _, b := range w.buckets {
		// A bucket counts when it ends inside the window: the window is aligned to buckets,
		// which is what 250 ms evaluations can tell apart anyway.
		if !b.start.Add(bucketWidth).After(from) || b.start.After(now) {
			continue
		}
		s.Requests += b.n
		s.Errors += b.errs
		for c, n := range b.codes {
			s.Codes[c] += n
		}
		lat = append(lat, b.lat...)
	}
	w.mu.Unlock()
	s.InFlight = len(inflight)
	lat = append(lat, inflight...)
	if s.Requests > 0 {
		s.ErrorRatio = float64(s.Errors) / float64(s.Requests)
	}
	if s.Window > 0 {
		s.Throughput = float64(s.Requests) / s.Window.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50, s.P95, s.P99, s.Max = quantile(lat, 0.50), quantile(lat, 0.95), quantile(lat, 0.99), lat[len(lat)-1]
	}
	return s
}

// quantile is the nearest-rank quantile of sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
